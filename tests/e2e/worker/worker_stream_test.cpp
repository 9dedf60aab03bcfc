// llm-worker-rbee token streams over real HTTP: equal to `rbee-engine generate`, batched
// slots streaming at once, ALL_SLOTS_BUSY, and cancel by DELETE or by disconnect.
#include <algorithm>
#include <atomic>
#include <sstream>
#include <thread>

#include "worker_fixture.h"

namespace rbee::e2e::worker_test {
namespace {

class WorkerStream : public ::testing::Test {
 protected:
  void SetUp() override { ignore_sigpipe(); }
  temp_home home_;
};

TEST_F(WorkerStream, GreedyStreamMatchesRbeeEngineGenerate) {
  worker_process worker(home_, {"--model", stories, "--slots", "1"});
  worker.wait_ready();
  auto client = worker.client();
  for (const std::string prompt : {"Once upon a time", "The cat"}) {
    constexpr int n = 48;
    stream_result r = infer(client, greedy(prompt, n));
    ASSERT_EQ(r.status, 200) << r.error.body;
    ASSERT_TRUE(r.done);
    ASSERT_FALSE(r.events.empty());
    EXPECT_EQ(r.events.front().value("type", ""), "started");
    EXPECT_FALSE(r.events.front().value("job_id", "").empty());
    EXPECT_EQ(r.events.front().value("model", ""), "file:" + stories);
    ASSERT_EQ(r.end.value("type", ""), "end") << r.end.dump();

    cli_result reference = run_cli("rbee-engine", {"generate", "-m", stories, "-p", prompt, "-n",
                                                   std::to_string(n), "--temp", "0", "-t", "1"});
    ASSERT_EQ(reference.exit_code, 0) << reference.err;
    EXPECT_EQ(r.text, reference.out) << "prompt: " << prompt;
    // rbee-engine prints "generated N tokens" on stderr.
    std::string count = "generated " + std::to_string(r.end.value("tokens_out", -1)) + " tokens";
    EXPECT_NE(reference.err.find(count), std::string::npos) << reference.err;
    EXPECT_EQ(r.end.value("stop_reason", ""), "max_tokens");
    EXPECT_EQ(r.end.value("tokens_out", 0), n);
    cli_result ids = run_cli("rbee-engine", {"tokenize", "-m", stories, "-p", prompt});
    ASSERT_EQ(ids.exit_code, 0) << ids.err;
    std::istringstream id_stream(ids.out);
    int n_ids = 0;
    for (std::string id; id_stream >> id;) ++n_ids;
    EXPECT_EQ(r.end.value("tokens_in", 0), n_ids);
    EXPECT_GT(r.end.value("tokens_per_sec", 0.0), 0.0);
  }
  // Token events carry increasing indices.
  stream_result r = infer(client, greedy("Once upon a time", 10));
  int last = -1;
  for (const auto& e : r.events) {
    if (e.value("type", "") != "token") continue;
    EXPECT_GT(e.at("i").get<int>(), last);
    last = e.at("i").get<int>();
  }
}

// Chat messages go through the chat template (here the chatml override: stories260K has none of
// its own); the prompt the worker counts is exactly the rendered conversation.
TEST_F(WorkerStream, ChatMessagesAreRenderedWithTheTemplate) {
  worker_process worker(home_, {"--model", stories, "--slots", "1"});
  worker.wait_ready();
  auto client = worker.client();
  json body = greedy("", 12);
  body.erase("prompt");
  body["messages"] = {{{"role", "system"}, {"content", "You tell stories."}},
                      {{"role", "user"}, {"content", "Once upon a time"}}};
  body["chat_template"] = "chatml";
  stream_result r = infer(client, body);
  ASSERT_EQ(r.status, 200) << r.error.body;
  ASSERT_TRUE(r.done);
  ASSERT_EQ(r.end.value("type", ""), "end") << r.end.dump();
  EXPECT_EQ(r.end.value("tokens_out", 0), 12);
  EXPECT_EQ(std::count_if(r.events.begin(), r.events.end(),
                          [](const json& e) { return e.value("type", "") == "token"; }),
            12);
  EXPECT_FALSE(r.text.empty());

  const std::string rendered =
      "<|im_start|>system\nYou tell stories.<|im_end|>\n"
      "<|im_start|>user\nOnce upon a time<|im_end|>\n"
      "<|im_start|>assistant\n";
  cli_result ids =
      run_cli("rbee-engine", {"tokenize", "-m", stories, "-p", rendered, "--parse-special"});
  ASSERT_EQ(ids.exit_code, 0) << ids.err;
  std::istringstream id_stream(ids.out);
  int n_ids = 0;
  for (std::string id; id_stream >> id;) ++n_ids;
  EXPECT_GT(n_ids, 10);
  EXPECT_EQ(r.end.value("tokens_in", 0), n_ids);

  // The same conversation sent as that rendered prompt generates the same text.
  stream_result same = infer(client, greedy(rendered, 12));
  ASSERT_EQ(same.status, 200) << same.error.body;
  EXPECT_EQ(same.text, r.text);
}

TEST_F(WorkerStream, StopStringIsNotEmitted) {
  worker_process worker(home_, {"--model", stories});
  worker.wait_ready();
  auto client = worker.client();
  stream_result full = infer(client, greedy("Once upon a time", 40));
  ASSERT_EQ(full.status, 200);
  // Known from models/README.md: ", there was a little girl named Lily. She loved ..."
  size_t at = full.text.find("Lily");
  ASSERT_NE(at, std::string::npos) << full.text;
  json body = greedy("Once upon a time", 40);
  body["stop"] = {"Lily"};
  stream_result cut = infer(client, body);
  ASSERT_EQ(cut.status, 200);
  EXPECT_EQ(cut.text, full.text.substr(0, at));
  EXPECT_EQ(cut.end.value("stop_reason", ""), "stop_sequence");
  EXPECT_TRUE(cut.done);
}

TEST_F(WorkerStream, FourSlotsStreamTogetherAndAFifthIsRefused) {
  worker_process worker(home_, {"--model", synth_tiny, "--slots", "4", "--ctx", "512"});
  worker.wait_ready();
  const std::vector<std::string> prompts = {"Once upon a time", "The cat", "Lily and Tom",
                                            "One day a big dog"};
  constexpr int n = 200;
  std::vector<stream_result> alone;
  for (const auto& p : prompts) {
    auto c = worker.client();
    alone.push_back(infer(c, greedy(p, n)));
    ASSERT_EQ(alone.back().status, 200) << alone.back().error.body;
    ASSERT_EQ(alone.back().end.value("tokens_out", 0), n) << alone.back().end.dump();
  }

  std::vector<stream_result> together(prompts.size());
  std::atomic<int> streaming{0};
  std::vector<std::thread> threads;
  for (size_t i = 0; i < prompts.size(); ++i) {
    threads.emplace_back([&, i] {
      auto c = worker.client();
      bool counted = false;
      together[i] = infer(c, greedy(prompts[i], n), [&](const json& e) {
        if (!counted && e.value("type", "") == "token") {
          counted = true;
          ++streaming;
        }
        return true;
      });
    });
  }
  // While all four are generating, a fifth request finds no slot.
  auto deadline = steady::now() + std::chrono::seconds(30);
  while (streaming.load() < 4 && steady::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  auto c = worker.client();
  stream_result fifth = infer(c, greedy("Too many", 4));
  for (auto& t : threads) t.join();

  ASSERT_EQ(streaming.load(), 4);
  EXPECT_EQ(fifth.status, 503);
  EXPECT_NE(fifth.error.header("Retry-After"), "");
  EXPECT_EQ(fifth.error.json_body()["error"]["code"], "ALL_SLOTS_BUSY") << fifth.error.body;

  steady::time_point last_first = steady::time_point::min();
  steady::time_point first_last = steady::time_point::max();
  for (size_t i = 0; i < prompts.size(); ++i) {
    ASSERT_EQ(together[i].status, 200);
    ASSERT_TRUE(together[i].done);
    EXPECT_EQ(together[i].text, alone[i].text) << "prompt " << i;
    EXPECT_EQ(together[i].end.value("tokens_out", 0), n);
    ASSERT_FALSE(together[i].token_times.empty());
    last_first = std::max(last_first, together[i].token_times.front());
    first_last = std::min(first_last, together[i].token_times.back());
  }
  // Every stream got its first token before any stream got its last: they ran at once.
  EXPECT_LT(last_first, first_last);
}

TEST_F(WorkerStream, CancelByDeleteFreesTheSlot) {
  worker_process worker(home_, {"--model", synth_tiny, "--slots", "1", "--ctx", "1024"});
  worker.wait_ready();
  json body = greedy("Once upon a time", 1000);
  body["job_id"] = "job-to-cancel";
  std::thread canceller;
  auto client = worker.client();
  auto started = steady::now();
  stream_result r = infer(client, body, [&](const json& e) {
    if (e.value("type", "") == "token" && !canceller.joinable()) {
      canceller = std::thread([&] {
        auto c = worker.client();
        EXPECT_EQ(c.del("/v1/inference/job-to-cancel").status, 204);
      });
    }
    return true;
  });
  canceller.join();
  ASSERT_EQ(r.status, 200);
  EXPECT_TRUE(r.done);
  EXPECT_EQ(r.end.value("stop_reason", ""), "cancelled") << r.end.dump();
  EXPECT_LT(r.end.value("tokens_out", 1000), 1000);
  EXPECT_LT(steady::now() - started, std::chrono::seconds(10));
  // The slot is free at once; DELETE is idempotent, unknown ids included.
  stream_result next = infer(client, greedy("The cat", 4));
  EXPECT_EQ(next.status, 200) << next.error.body;
  EXPECT_EQ(client.del("/v1/inference/job-to-cancel").status, 204);
  EXPECT_EQ(client.del("/v1/inference/no-such-job").status, 204);
}

TEST_F(WorkerStream, ClientDisconnectFreesTheSlot) {
  worker_process worker(home_, {"--model", synth_tiny, "--slots", "1", "--ctx", "1024"});
  worker.wait_ready();
  {
    auto client = worker.client();
    stream_result r = infer(client, greedy("Once upon a time", 1000),
                            [](const json& e) { return e.value("type", "") != "token"; });
    ASSERT_EQ(r.status, 200);
    EXPECT_FALSE(r.done);
  }
  // The worker notices at its next write, within a decode step or two.
  auto client = worker.client();
  auto deadline = steady::now() + std::chrono::seconds(2);
  stream_result next;
  do {
    next = infer(client, greedy("The cat", 4));
    if (next.status == 200) break;
    EXPECT_EQ(next.status, 503) << next.error.body;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  } while (steady::now() < deadline);
  EXPECT_EQ(next.status, 200) << next.error.body;
  EXPECT_EQ(next.end.value("stop_reason", ""), "max_tokens");

  auto metrics = client.get("/metrics");
  ASSERT_EQ(metrics.status, 200);
  for (const char* name :
       {"rbee_worker_requests_total", "rbee_worker_tokens_generated_total",
        "rbee_worker_slots_total", "rbee_worker_slots_busy", "rbee_worker_queue_length",
        "rbee_worker_model_load_seconds", "rbee_worker_resident_memory_bytes",
        "rbee_worker_last_stream_tokens_per_second"}) {
    EXPECT_NE(metrics.body.find(name), std::string::npos) << name;
  }
}

// The value of a metric's series in Prometheus text (the line that starts with `series `), or
// -1 when absent.
double metric_value(const std::string& text, const std::string& series) {
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);)
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  return -1;
}

// /metrics says where the inference thread's time goes: steps, and seconds per phase.
TEST_F(WorkerStream, MetricsSplitTheDecodeStepsIntoPhases) {
  worker_process worker(home_, {"--model", stories, "--slots", "2"});
  worker.wait_ready();
  auto client = worker.client();
  stream_result r = infer(client, greedy("Once upon a time", 12));
  ASSERT_EQ(r.status, 200) << r.error.body;
  ASSERT_EQ(r.end.value("tokens_out", 0), 12) << r.end.dump();
  auto metrics = client.get("/metrics");
  ASSERT_EQ(metrics.status, 200);
  // Each token after the first needs a step of its own; the first comes with the prompt's.
  EXPECT_GE(metric_value(metrics.body, "rbee_worker_decode_steps_total"), 12) << metrics.body;
  for (const char* phase : {"plan", "forward", "sample", "emit"}) {
    const double seconds = metric_value(
        metrics.body, std::string("rbee_worker_step_seconds_total{phase=\"") + phase + "\"}");
    EXPECT_GT(seconds, 0) << phase << "\n" << metrics.body;
  }
  // Counters only grow: a second scrape after another answer reads more steps.
  const double steps = metric_value(metrics.body, "rbee_worker_decode_steps_total");
  ASSERT_EQ(infer(client, greedy("The cat", 4)).status, 200);
  EXPECT_GE(metric_value(client.get("/metrics").body, "rbee_worker_decode_steps_total"), steps + 4);
}

// n choices, log-probabilities and logit_bias over HTTP (docs/sampling.md): every token event
// names its choice and carries its log-probability; one end event lists each choice.
TEST_F(WorkerStream, ChoicesAndLogprobsTravelOnTheStream) {
  worker_process worker(home_, {"--model", stories, "--slots", "2"});
  worker.wait_ready();
  auto client = worker.client();
  json body = {{"prompt", "Once upon a time"},
               {"max_tokens", 10},
               {"temperature", 1.0},
               {"top_k", 0},
               {"top_p", 1.0},
               {"min_p", 0.0},
               {"seed", 5},
               {"n", 2},
               {"logprobs", 2}};
  auto texts_of = [](const stream_result& r) {
    std::vector<std::string> bytes(2);
    for (const auto& e : r.events) {
      if (e.value("type", "") != "token") continue;
      EXPECT_TRUE(e.contains("logprob") && e.contains("top_logprobs")) << e.dump();
      EXPECT_EQ(e["top_logprobs"].size(), 2u);
      for (const auto& b : e["bytes"])
        bytes.at(e.at("index").get<size_t>()) += static_cast<char>(b.get<int>());
    }
    return bytes;
  };
  stream_result r = infer(client, body);
  ASSERT_EQ(r.status, 200) << r.error.body;
  ASSERT_EQ(r.end.value("type", ""), "end") << r.end.dump();
  ASSERT_EQ(r.end["choices"].size(), 2u);
  EXPECT_EQ(r.end["choices"][1]["index"], 1);
  EXPECT_EQ(r.end.value("tokens_out", 0), r.end["choices"][0].value("tokens_out", 0) +
                                              r.end["choices"][1].value("tokens_out", 0));
  const auto first = texts_of(r);
  EXPECT_NE(first[0], first[1]);
  EXPECT_EQ(texts_of(infer(client, body)), first);  // seeded: the same again

  // logprobs 0: the token's own log-probability, no alternatives.
  json greedy_lp = greedy("Once upon a time", 4);
  greedy_lp["logprobs"] = 0;
  stream_result with_lp = infer(client, greedy_lp);
  ASSERT_EQ(with_lp.status, 200) << with_lp.error.body;
  for (const auto& e : with_lp.events) {
    if (e.value("type", "") != "token") continue;
    EXPECT_LE(e.at("logprob").get<double>(), 0.0);
    EXPECT_TRUE(e.at("top_logprobs").empty());
  }

  // What this worker cannot serve is a 400 naming the field.
  json too_many = greedy("Once", 2);
  too_many["n"] = 3;
  stream_result refused = infer(client, too_many);
  EXPECT_EQ(refused.status, 400);
  EXPECT_NE(refused.error.body.find("\"n\""), std::string::npos) << refused.error.body;
  json outside = greedy("Once", 2);
  outside["logit_bias"] = {{"512", 1}};
  refused = infer(client, outside);
  EXPECT_EQ(refused.status, 400);
  EXPECT_NE(refused.error.body.find("logit_bias"), std::string::npos) << refused.error.body;
}

}  // namespace
}  // namespace rbee::e2e::worker_test
