// Failover's worker half (issue 20) over real HTTP: a resumable stream reports its prompt
// tokens and, on each token event, a resume mark (SSE id); a request resumed from any mark
// continues exactly as the uninterrupted stream did, sampled or greedy, stop strings included.
// Resume requests that could not come from a real stream are refused.
#include "api/stream_events.h"
#include "common/text.h"
#include "worker_fixture.h"

namespace rbee::e2e::worker_test {
namespace {

struct marked_event {
  json event;
  std::optional<api::resume_mark> mark;
};

struct marked_stream {
  int status = 0;
  common::http_response error;
  json started;
  std::vector<marked_event> tokens;
  json end;  // the end or error event
  std::string text() const {
    std::string all;
    for (const auto& t : tokens) all += t.event.value("t", "");
    return all;
  }
  std::string text_after(size_t event) const {
    std::string rest;
    for (size_t i = event + 1; i < tokens.size(); ++i) rest += tokens[i].event.value("t", "");
    return rest;
  }
};

marked_stream run(common::http_client& client, const json& body) {
  marked_stream r;
  r.status = client.post_sse(
      "/v1/inference", body,
      [&](const common::sse_event& e) {
        if (e.is_done()) return false;
        json event = e.json();
        const std::string type = event.value("type", "");
        if (type == "started") r.started = event;
        if (type == "token") r.tokens.push_back({event, api::parse_resume_mark(e.id)});
        if (type == "end" || type == "error") r.end = event;
        return true;
      },
      &r.error);
  return r;
}

// The resume point after token event `event` of a resumable stream.
json resume_after(const marked_stream& s, size_t event) {
  std::vector<int32_t> generated;
  for (size_t i = 0; i <= event; ++i) {
    const auto& tokens = s.tokens[i].mark->tokens;
    generated.insert(generated.end(), tokens.begin(), tokens.end());
  }
  return {{"prompt_tokens", s.started["prompt_tokens"]},
          {"generated", generated},
          {"rng_state", common::hex_u64(s.tokens[event].mark->rng_state)}};
}

json sampled(int max_tokens) {
  return {{"prompt", "Once upon a time"},
          {"max_tokens", max_tokens},
          {"temperature", 0.9},
          {"top_k", 40},
          {"seed", 42},
          {"repeat_penalty", 1.1},
          {"frequency_penalty", 0.3},
          {"resumable", true}};
}

class WorkerResume : public ::testing::Test {
 protected:
  void SetUp() override {
    ignore_sigpipe();
    start(stories);
  }
  void start(const std::string& model) {
    worker_.reset();
    worker_ = std::make_unique<worker_process>(home_, std::vector<std::string>{"--model", model});
    worker_->wait_ready();
  }
  // Resumes `whole` after each of the given events and checks the continuation.
  void expect_continuations(const json& body, const marked_stream& whole,
                            const std::vector<size_t>& cuts) {
    auto client = worker_->client();
    for (size_t cut : cuts) {
      ASSERT_LT(cut + 1, whole.tokens.size());
      json resumed_body = body;
      resumed_body["resume"] = resume_after(whole, cut);
      marked_stream resumed = run(client, resumed_body);
      ASSERT_EQ(resumed.status, 200) << resumed.error.body;
      EXPECT_EQ(resumed.text(), whole.text_after(cut)) << "cut after event " << cut;
      ASSERT_FALSE(resumed.tokens.empty());
      EXPECT_EQ(resumed.tokens.front().event["i"], whole.tokens[cut + 1].event["i"])
          << "token indices continue";
      EXPECT_EQ(resumed.end.value("type", ""), "end") << resumed.end.dump();
      EXPECT_EQ(resumed.end["tokens_out"], whole.end["tokens_out"]);
      EXPECT_EQ(resumed.end["stop_reason"], whole.end["stop_reason"]);
      EXPECT_EQ(resumed.end["tokens_in"], whole.end["tokens_in"]);
    }
  }

  temp_home home_;
  std::unique_ptr<worker_process> worker_;
};

TEST_F(WorkerResume, ASampledStreamResumedFromAnyMarkContinuesByteForByte) {
  auto client = worker_->client();
  const json body = sampled(200);
  marked_stream whole = run(client, body);
  ASSERT_EQ(whole.status, 200) << whole.error.body;
  ASSERT_EQ(whole.end.value("type", ""), "end") << whole.end.dump();
  ASSERT_GT(whole.tokens.size(), 60u);
  ASSERT_TRUE(whole.started["prompt_tokens"].is_array());
  size_t marked_tokens = 0;
  for (const auto& t : whole.tokens) {
    ASSERT_TRUE(t.mark) << "every token event of a resumable stream has a resume mark";
    marked_tokens += t.mark->tokens.size();
  }
  EXPECT_EQ(marked_tokens, whole.end["tokens_out"].get<size_t>());
  // The same request again is the same stream: the resumed runs below compare against it.
  EXPECT_EQ(run(client, body).text(), whole.text());
  expect_continuations(body, whole, {0, 49, whole.tokens.size() - 2});

  // The sampler's saved position matters: from the seed's start the answer differs.
  json unrestored = body;
  unrestored["resume"] = resume_after(whole, 49);
  unrestored["resume"]["rng_state"] = common::hex_u64(42);
  EXPECT_NE(run(client, unrestored).text(), whole.text_after(49));
}

// Random weights: near-uniform distributions make any difference between the resumed worker's
// prefill and the first worker's one-token decode steps change a draw. Every weight type's CPU
// kernel must give a token the same result whatever else shares its batch.
TEST_F(WorkerResume, EveryWeightTypeResumesByteForByte) {
  for (const char* type :
       {"f16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K_M", "Q5_K_M", "Q6_K"}) {
    SCOPED_TRACE(type);
    start(shared_model(std::string("synth-tiny-") + type + ".gguf"));
    auto client = worker_->client();
    json body = sampled(300);
    body["logit_bias"] = {{"2", -100}};
    marked_stream whole = run(client, body);
    ASSERT_EQ(whole.status, 200) << whole.error.body;
    ASSERT_GT(whole.tokens.size(), 60u);
    expect_continuations(body, whole, {0, 49, whole.tokens.size() - 2});
  }
}

TEST_F(WorkerResume, AGreedyChatResumesToo) {
  auto client = worker_->client();
  json body = {{"messages", {{{"role", "user"}, {"content", "Tell me a story about a cat"}}}},
               {"chat_template", "chatml"},
               {"max_tokens", 120},
               {"temperature", 0},
               {"logit_bias", {{"2", -100}}},  // no EOS: the full length
               {"resumable", true}};
  marked_stream whole = run(client, body);
  ASSERT_EQ(whole.status, 200) << whole.error.body;
  ASSERT_GT(whole.tokens.size(), 30u);
  expect_continuations(body, whole, {20});
}

// The stop string starts right after the resume point: the resumed worker generates its
// tokens again (the first worker held them back) and stops there.
TEST_F(WorkerResume, AStopStringSpanningTheSwitchStillStops) {
  auto client = worker_->client();
  json body = sampled(200);
  marked_stream free_run = run(client, body);
  ASSERT_EQ(free_run.status, 200);
  const std::string text = free_run.text();
  ASSERT_GT(text.size(), 200u);
  // A stop string of a few tokens' text, found once, well inside the answer.
  std::string stop;
  for (size_t at = 120; at + 12 < text.size() && stop.empty(); ++at) {
    std::string candidate = text.substr(at, 12);
    if (text.find(candidate) == at) stop = candidate;
  }
  ASSERT_FALSE(stop.empty());
  body["stop"] = {stop};
  marked_stream stopped = run(client, body);
  ASSERT_EQ(stopped.end.value("stop_reason", ""), "stop_sequence") << stopped.end.dump();
  EXPECT_EQ(stopped.text(), text.substr(0, text.find(stop)));
  // The last event before the stop: what follows it was held back, then stopped.
  expect_continuations(body, stopped, {stopped.tokens.size() - 2});
  json resumed_body = body;
  resumed_body["resume"] = resume_after(stopped, stopped.tokens.size() - 1);
  marked_stream resumed = run(client, resumed_body);
  EXPECT_EQ(resumed.text(), "");
  EXPECT_EQ(resumed.end.value("stop_reason", ""), "stop_sequence") << resumed.end.dump();
}

TEST_F(WorkerResume, ResumePointsNoStreamCouldHaveMadeAreRefused) {
  auto client = worker_->client();
  marked_stream whole = run(client, sampled(40));
  ASSERT_EQ(whole.status, 200);
  const json good = resume_after(whole, 5);
  auto refused = [&](json body, const std::string& field) {
    marked_stream r = run(client, body);
    EXPECT_EQ(r.status, 400) << body.dump();
    json error = r.error.json_body()["error"];
    EXPECT_EQ(error["code"], "INVALID_REQUEST") << error.dump();
    EXPECT_EQ(error["details"]["field"], field) << error.dump();
  };
  json body = sampled(40);
  body["resume"] = good;
  body["resume"]["generated"].push_back(1'000'000);
  refused(body, "resume");
  body["resume"] = good;
  body["resume"]["rng_state"] = "not hex";
  refused(body, "resume.rng_state");
  body["resume"] = good;
  body["resume"]["prompt_tokens"] = json::array();
  refused(body, "resume.prompt_tokens");
  body["resume"] = good;
  body["resume"]["generated"] = {-3};
  refused(body, "resume.generated");
  body = sampled(6);  // fewer tokens to generate than were already generated
  body["resume"] = good;
  refused(body, "resume.generated");
  body = sampled(40);
  body["n"] = 2;
  refused(body, "resumable");

  // Tokens that end in a stop string: the first worker would have stopped there.
  body = sampled(40);
  body["resume"] = good;
  body["stop"] = {whole.text().substr(0, 3)};
  marked_stream stopped_before = run(client, body);
  ASSERT_EQ(stopped_before.status, 200);
  EXPECT_EQ(stopped_before.end.value("code", ""), "INVALID_REQUEST") << stopped_before.end.dump();
  EXPECT_TRUE(stopped_before.tokens.empty());
  // The worker goes on serving.
  EXPECT_EQ(run(client, sampled(40)).text(), whole.text());
}

}  // namespace
}  // namespace rbee::e2e::worker_test
