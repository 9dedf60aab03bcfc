// The slot scheduler without HTTP, on the real stories260K model: batched sequences must
// produce exactly what each produces alone; cancel, stop strings, busy and drain behave.
#include "worker/scheduler.h"

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace rbee::worker {
namespace {

const std::string model_path = std::string(RBEE_SHARED_MODELS_DIR) + "/stories260K.gguf";

struct outcome {
  std::string text;
  std::vector<int> indices;
  std::vector<std::string> choice_texts;  // by choice index
  std::vector<token_event> tokens;
  std::optional<end_event> end;
  std::optional<error_event> error;
};

outcome collect(job& j, std::chrono::seconds timeout = std::chrono::seconds(60)) {
  outcome out;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    auto event = j.next_event(std::chrono::milliseconds(100));
    if (!event) continue;
    if (auto* t = std::get_if<token_event>(&*event)) {
      out.text += t->text;
      out.indices.push_back(t->index);
      if (out.choice_texts.size() <= static_cast<size_t>(t->choice))
        out.choice_texts.resize(static_cast<size_t>(t->choice) + 1);
      out.choice_texts[static_cast<size_t>(t->choice)] += t->text;
      out.tokens.push_back(*t);
    } else if (auto* e = std::get_if<end_event>(&*event)) {
      out.end = *e;
      return out;
    } else {
      out.error = std::get<error_event>(*event);
      return out;
    }
  }
  ADD_FAILURE() << "job " << j.id() << " did not end within the timeout";
  return out;
}

class SchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(std::filesystem::exists(model_path)) << model_path;
    engine::model_params mp = engine::model_default_params();
    mp.n_threads = 1;  // shared test machines: one thread keeps decode times steady
    model_ = engine::model_load(model_path, mp);
  }

  void make_scheduler(int n_slots, int prefill_budget = 128) {
    engine::context_params cp = engine::context_default_params();
    cp.n_ctx = 256;
    cp.n_seq = n_slots;
    cp.n_threads = 1;
    ctx_ = engine::context_create(*model_, cp);
    sched_ = std::make_unique<scheduler>(
        *model_, *ctx_,
        scheduler_options{
            .n_slots = n_slots, .n_batch = cp.n_batch, .prefill_budget = prefill_budget});
    sched_->start();
  }

  std::shared_ptr<job> make_job(const std::string& id, const std::string& prompt, int max_tokens,
                                std::vector<std::string> stop = {}) {
    engine::sampling_params sp = engine::sampling_default_params();
    sp.temperature = 0;  // greedy: comparable across runs
    sp.repeat_penalty = 1;
    return std::make_shared<job>(id, engine::tokenize(*model_, prompt, true), max_tokens, sp,
                                 std::move(stop));
  }

  outcome run_alone(const std::string& prompt, int max_tokens) {
    auto j = make_job("alone", prompt, max_tokens);
    EXPECT_EQ(sched_->submit(j), submit_result::accepted);
    return collect(*j);
  }

  void TearDown() override {
    sched_.reset();
    ctx_.reset();
  }

  engine::model_ptr model_;
  engine::context_ptr ctx_;
  std::unique_ptr<scheduler> sched_;
};

TEST_F(SchedulerTest, SingleJobStreamsTokensAndEnds) {
  make_scheduler(1);
  outcome out = run_alone("Once upon a time", 20);
  ASSERT_TRUE(out.end) << (out.error ? out.error->message : "no end");
  EXPECT_FALSE(out.text.empty());
  EXPECT_EQ(out.end->tokens_in, 5);  // BOS + 4, see models/README.md
  EXPECT_EQ(out.end->tokens_out, 20);
  EXPECT_EQ(out.end->reason, stop_reason::max_tokens);
  // Indices increase: each event is emitted as its token is sampled.
  for (size_t i = 1; i < out.indices.size(); ++i) EXPECT_GT(out.indices[i], out.indices[i - 1]);
  EXPECT_EQ(sched_->stats().tokens_generated, 20u);
  EXPECT_TRUE(sched_->idle());
}

TEST_F(SchedulerTest, BatchedJobsMatchTheirSoloRuns) {
  // A small prefill budget forces prompts to be chunked across steps while others decode.
  make_scheduler(3, 4);
  std::vector<std::string> prompts = {"Once upon a time", "The little dog",
                                      "Lily and Tom went to the park. They saw"};
  std::vector<outcome> solo;
  for (const auto& p : prompts) solo.push_back(run_alone(p, 30));

  std::vector<std::shared_ptr<job>> jobs;
  for (size_t i = 0; i < prompts.size(); ++i) {
    jobs.push_back(make_job("batched-" + std::to_string(i), prompts[i], 30));
    ASSERT_EQ(sched_->submit(jobs.back()), submit_result::accepted);
  }
  for (size_t i = 0; i < prompts.size(); ++i) {
    outcome out = collect(*jobs[i]);
    ASSERT_TRUE(out.end);
    EXPECT_EQ(out.text, solo[i].text) << "prompt " << i;
    EXPECT_EQ(out.end->tokens_out, solo[i].end->tokens_out);
  }
}

TEST_F(SchedulerTest, FullSchedulerRefusesAndDuplicateIdsAreRejected) {
  make_scheduler(2);
  auto a = make_job("a", "Once upon a time", 200);
  auto b = make_job("b", "Once upon a time", 200);
  ASSERT_EQ(sched_->submit(a), submit_result::accepted);
  EXPECT_EQ(sched_->submit(make_job("a", "Once", 5)), submit_result::duplicate_job_id);
  ASSERT_EQ(sched_->submit(b), submit_result::accepted);
  EXPECT_EQ(sched_->submit(make_job("c", "Once", 5)), submit_result::all_slots_busy);
  EXPECT_EQ(sched_->stats().slots_busy + sched_->stats().queue_length, 2);
  sched_->cancel("a");
  sched_->cancel("b");
  EXPECT_EQ(collect(*a).end->reason, stop_reason::cancelled);
  EXPECT_EQ(collect(*b).end->reason, stop_reason::cancelled);
  // The slots are free again.
  auto c = make_job("c", "Once", 5);
  EXPECT_EQ(sched_->submit(c), submit_result::accepted);
  EXPECT_TRUE(collect(*c).end);
}

TEST_F(SchedulerTest, CancelStopsARunningJob) {
  make_scheduler(1);
  auto j = make_job("long", "Once upon a time", 200);
  ASSERT_EQ(sched_->submit(j), submit_result::accepted);
  // Wait for the first token, then cancel.
  auto first = j->next_event(std::chrono::seconds(30));
  ASSERT_TRUE(first && std::holds_alternative<token_event>(*first));
  EXPECT_TRUE(sched_->cancel("long"));
  outcome rest = collect(*j);
  ASSERT_TRUE(rest.end);
  EXPECT_EQ(rest.end->reason, stop_reason::cancelled);
  EXPECT_LT(rest.end->tokens_out, 200);
  EXPECT_FALSE(sched_->cancel("long"));  // no longer live
}

TEST_F(SchedulerTest, IdleTimeCountsFromTheLastJobEndAndIsZeroWhileBusy) {
  make_scheduler(1);
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  EXPECT_GE(sched_->stats().idle_ms, 50);  // idle since start
  auto j = make_job("busy", "Once upon a time", 200);
  auto submitted = std::chrono::steady_clock::now();
  ASSERT_EQ(sched_->submit(j), submit_result::accepted);
  auto first = j->next_event(std::chrono::seconds(30));
  ASSERT_TRUE(first && std::holds_alternative<token_event>(*first));
  auto busy = sched_->stats();
  EXPECT_EQ(busy.slots_busy, 1);
  EXPECT_EQ(busy.slots_total, 1);
  EXPECT_EQ(busy.idle_ms, 0);
  sched_->cancel("busy");
  ASSERT_TRUE(collect(*j).end);
  // The clock restarted when the job ended, after it was submitted.
  auto after = sched_->stats();
  auto since_submit = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - submitted);
  EXPECT_EQ(after.slots_busy, 0);
  EXPECT_LE(after.idle_ms, since_submit.count());
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  EXPECT_GE(sched_->stats().idle_ms, 50);
}

TEST_F(SchedulerTest, StopStringEndsTheStreamWithoutEmittingIt) {
  make_scheduler(1);
  outcome full = run_alone("Once upon a time", 40);
  ASSERT_TRUE(full.end);
  ASSERT_GT(full.text.size(), 20u);
  // Stop at a word in the middle of the known continuation.
  size_t cut = full.text.find(' ', full.text.size() / 2);
  ASSERT_NE(cut, std::string::npos);
  std::string stop = full.text.substr(cut, 4);
  size_t first_match = full.text.find(stop);

  auto j = make_job("stopped", "Once upon a time", 40, {stop});
  ASSERT_EQ(sched_->submit(j), submit_result::accepted);
  outcome out = collect(*j);
  ASSERT_TRUE(out.end);
  EXPECT_EQ(out.end->reason, stop_reason::stop_sequence);
  EXPECT_EQ(out.text, full.text.substr(0, first_match));
}

// A drain is not the client's cancel: the cut answer ends with an error, never a short
// success (issue 13, finding 4).
TEST_F(SchedulerTest, DrainEndsLiveJobsWithAnErrorAndRefusesNewJobs) {
  make_scheduler(2);
  auto a = make_job("a", "Once upon a time", 200);
  ASSERT_EQ(sched_->submit(a), submit_result::accepted);
  sched_->drain();
  EXPECT_EQ(sched_->submit(make_job("b", "Once", 5)), submit_result::stopping);
  outcome out = collect(*a);
  EXPECT_FALSE(out.end);
  ASSERT_TRUE(out.error);
  EXPECT_EQ(out.error->code, "SHUTTING_DOWN");
  sched_->stop();
}

TEST_F(SchedulerTest, ClientCancelStillEndsWithCancelled) {
  make_scheduler(1);
  auto a = make_job("a", "Once upon a time", 200);
  ASSERT_EQ(sched_->submit(a), submit_result::accepted);
  a->cancel();
  outcome out = collect(*a);
  ASSERT_TRUE(out.end);
  EXPECT_EQ(out.end->reason, stop_reason::cancelled);
  sched_->stop();
}

// n > 1: one prefill, n choices. Greedy choices all equal the single answer; seeded ones
// repeat run after run, differ from each other, and choice 0 is the n = 1 answer.
TEST_F(SchedulerTest, ChoicesShareOnePrefillAndSeedsRepeat) {
  make_scheduler(3);
  const auto prompt = engine::tokenize(*model_, "Once upon a time", true);
  const outcome single = run_alone("Once upon a time", 16);
  auto greedy = std::make_shared<job>("greedy", prompt, 16, make_job("x", "x", 1)->sampling,
                                      std::vector<std::string>{}, 3);
  ASSERT_EQ(sched_->submit(greedy), submit_result::accepted);
  const outcome all = collect(*greedy);
  ASSERT_TRUE(all.end) << (all.error ? all.error->message : "no end");
  ASSERT_EQ(all.choice_texts.size(), 3u);
  for (const auto& text : all.choice_texts) EXPECT_EQ(text, single.text);
  ASSERT_EQ(all.end->choices.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(all.end->choices[static_cast<size_t>(i)].index, i);
    EXPECT_EQ(all.end->choices[static_cast<size_t>(i)].tokens_out, 16);
    EXPECT_EQ(all.end->choices[static_cast<size_t>(i)].reason, stop_reason::max_tokens);
  }
  EXPECT_EQ(all.end->tokens_out, 48);
  EXPECT_TRUE(sched_->idle());

  engine::sampling_params seeded = engine::sampling_default_params();
  seeded.temperature = 1.0f;
  seeded.top_k = 0;
  seeded.top_p = 1.0f;
  seeded.min_p = 0.0f;
  seeded.seed = 42;
  auto run_seeded = [&](const std::string& id, int n) {
    auto j = std::make_shared<job>(id, prompt, 24, seeded, std::vector<std::string>{}, n);
    EXPECT_EQ(sched_->submit(j), submit_result::accepted);
    return collect(*j);
  };
  const outcome first = run_seeded("seeded-1", 2), again = run_seeded("seeded-2", 2);
  const outcome one = run_seeded("seeded-one", 1);
  ASSERT_EQ(first.choice_texts.size(), 2u);
  EXPECT_EQ(first.choice_texts, again.choice_texts);
  EXPECT_NE(first.choice_texts[0], first.choice_texts[1]);
  EXPECT_EQ(first.choice_texts[0], one.choice_texts[0]);
}

TEST_F(SchedulerTest, ChoicesNeedASlotEach) {
  make_scheduler(2);
  const auto prompt = engine::tokenize(*model_, "Once upon a time", true);
  auto busy = make_job("busy", "Once upon a time", 200);
  ASSERT_EQ(sched_->submit(busy), submit_result::accepted);
  auto two = std::make_shared<job>("two", prompt, 4, busy->sampling, std::vector<std::string>{}, 2);
  EXPECT_EQ(sched_->submit(two), submit_result::all_slots_busy);
  EXPECT_EQ(sched_->stats().slots_busy + sched_->stats().queue_length, 1);
  sched_->cancel("busy");
  collect(*busy);
  EXPECT_EQ(sched_->submit(two), submit_result::accepted);
  const outcome out = collect(*two);
  ASSERT_TRUE(out.end);
  EXPECT_EQ(out.end->choices.size(), 2u);
}

// Log-probabilities: one event per token, each with its own log-probability, the best
// alternative first; greedy picks the most likely token.
TEST_F(SchedulerTest, LogprobsComeWithEveryToken) {
  make_scheduler(1);
  auto j = std::make_shared<job>("lp", engine::tokenize(*model_, "Once upon a time", true), 12,
                                 make_job("x", "x", 1)->sampling, std::vector<std::string>{}, 1, 3);
  ASSERT_EQ(sched_->submit(j), submit_result::accepted);
  const outcome out = collect(*j);
  ASSERT_TRUE(out.end);
  ASSERT_EQ(out.tokens.size(), 12u);
  std::string bytes;
  for (size_t i = 0; i < out.tokens.size(); ++i) {
    const token_event& t = out.tokens[i];
    EXPECT_EQ(t.index, static_cast<int>(i));
    ASSERT_TRUE(t.logprobs);
    ASSERT_EQ(t.logprobs->top.size(), 3u);
    EXPECT_LE(t.logprobs->sampled.logprob, 0.0);
    EXPECT_EQ(t.logprobs->top[0].bytes, t.logprobs->sampled.bytes);
    EXPECT_EQ(t.logprobs->top[0].logprob, t.logprobs->sampled.logprob);
    EXPECT_GE(t.logprobs->top[0].logprob, t.logprobs->top[1].logprob);
    bytes += t.logprobs->sampled.bytes;
  }
  EXPECT_EQ(bytes, out.text);
}

}  // namespace
}  // namespace rbee::worker
