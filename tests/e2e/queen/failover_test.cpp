// Issue 20 on real binaries, on the built-in node: two workers of stories260K; the one serving a
// 200-token answer is killed (SIGKILL), or stopped past the stall deadline (SIGSTOP), after
// ~50 tokens. The client gets exactly the answer of an uninterrupted run with the same seed, on
// /v2/tasks, on the OpenAI stream and through `rbee infer`; a stop string whose tokens were
// held back at the switch still stops. Workers step slowly (--debug-step-delay-ms) so the test
// acts mid-answer.
#include <signal.h>

#include <gtest/gtest.h>

#include <thread>

#include "harness/scenario_fixture.h"

namespace rbee::e2e::scenario {
namespace {

using nlohmann::json;
using steady = std::chrono::steady_clock;

constexpr int answer_tokens = 200;
constexpr int cut_after = 50;

// A seeded, sampled answer that never ends early (EOS banned).
json seeded_task(int max_tokens = answer_tokens) {
  return {{"node", "localhost"},      {"model", stories_ref()},     {"prompt", "Once upon a time"},
          {"max_tokens", max_tokens}, {"temperature", 0.9},         {"seed", 7},
          {"repeat_penalty", 1.1},    {"logit_bias", {{"2", -100}}}};
}

// The worker process of a worker id (its command line names it).
pid_t pid_of_worker(const std::string& worker_id) {
  auto pids = pids_with_cmdline("--worker-id " + worker_id + " ");
  return pids.empty() ? -1 : pids.front();
}

// The worker a task's stream said it is using (the last one named).
std::string serving_worker(const std::vector<json>& events) {
  std::string id;
  for (const auto& e : events) {
    const std::string action = e.value("action", "");
    if (action == "worker_selected" || action == "worker_ready" || action == "failover_resume")
      id = e.value("worker_id", "");
  }
  return id;
}

class Failover : public local_node_test {
 protected:
  void SetUp() override {
    q.set_env("RBEE_REPLICA_QUEUE_THRESHOLD", "1");
    q.set_env("RBEE_STALL_TIMEOUT", "3");
    q.start({"--max-workers-per-model", "2", "--slots-per-worker", "1"});
    q.start_own_hive({"--worker-arg=--debug-step-delay-ms=20"});
  }
  void TearDown() override {
    for (pid_t p : stopped_) ::kill(p, SIGKILL);
    local_node_test::TearDown();
  }

  // Two ready workers of the model: the second starts as a replica while the first is busy.
  void start_two_workers() {
    std::thread first([&] { q.run_task(stories_task(60)); });
    ASSERT_TRUE(eventually([&] { return busy_workers() == 1; }, 60s)) << q.logs();
    auto second = q.run_task(stories_task(4));
    first.join();
    ASSERT_EQ(second.count("token"), 4) << q.logs();
    ASSERT_TRUE(eventually([&] { return ready_workers() == 2; }, 30s)) << q.workers().dump();
  }
  int busy_workers() {
    int n = 0;
    for (const auto& w : q.workers()) n += w.value("slots_busy", 0) > 0;
    return n;
  }
  int ready_workers() {
    int n = 0;
    for (const auto& w : q.workers()) {
      const std::string state = w.value("state", "");
      n += state == "ready" || state == "idle";
    }
    return n;
  }
  // Runs the task and, at its cut_after-th token, does `strike` to the worker serving it.
  sse_result run_and_strike(const json& task, int signal) {
    bool struck = false;
    return q.run_task(task, [&](const json& e) {
      if (!struck && e.value("type", "") == "token" && e.value("i", 0) >= cut_after - 1) {
        struck = true;
        pid_t pid = pid_of_worker(serving_worker(events_so_far_));
        EXPECT_GT(pid, 0) << "no process for the serving worker";
        if (pid > 0) ::kill(pid, signal);
        if (signal == SIGSTOP) stopped_.push_back(pid);
      }
      events_so_far_.push_back(e);
      return true;
    });
  }
  void expect_moved_once(const sse_result& s, const std::string& reason) {
    EXPECT_EQ(s.count("narration", "failover"), 1) << q.logs();
    for (const auto& e : s.events) {
      if (e.value("action", "") == "failover") {
        EXPECT_EQ(e["reason"], reason) << e.dump();
      }
    }
    EXPECT_EQ(s.count("narration", "failover_resume"), 1);
    EXPECT_EQ(s.count("started"), 1) << "one started event, whatever the workers";
    EXPECT_FALSE(s.first("error")) << s.first("error")->dump();
    auto end = s.first("end");
    ASSERT_TRUE(end) << q.logs();
    EXPECT_EQ((*end)["tokens_out"], answer_tokens);
  }
  // Token indices 0..n-1, each once: nothing skipped or repeated at the switch.
  static void expect_contiguous_indices(const sse_result& s) {
    int next = 0;
    for (const auto& e : s.events) {
      if (e.value("type", "") != "token") continue;
      EXPECT_GE(e.value("i", -1), next) << "token " << e.dump() << " repeats an index";
      next = e.value("i", -1) + 1;
    }
  }

  std::vector<json> events_so_far_;
  std::vector<pid_t> stopped_;
};

TEST_F(Failover, AKilledWorkersAnswerContinuesOnTheOtherByteForByte) {
  start_two_workers();
  auto uninterrupted = q.run_task(seeded_task());
  ASSERT_EQ(uninterrupted.count("token") > 0, true) << q.logs();
  ASSERT_EQ((*uninterrupted.first("end"))["tokens_out"], answer_tokens);

  auto moved = run_and_strike(seeded_task(), SIGKILL);
  expect_moved_once(moved, "connection_lost");
  EXPECT_EQ(moved.text, uninterrupted.text);
  expect_contiguous_indices(moved);
  // The failover is counted, by model and node, and its latency observed.
  auto metrics = q.client().get("/metrics").body;
  EXPECT_TRUE(contains(metrics, "rbee_queen_failovers_total{model=\"" + stories_ref() +
                                    "\",node=\"localhost\",reason=\"connection_lost\"} 1"))
      << metrics;
  EXPECT_TRUE(
      contains(metrics, "rbee_queen_failover_seconds_count{model=\"" + stories_ref() + "\"} 1"))
      << metrics;
}

// The only worker drains (SIGTERM): the queen starts another, narrated, and the answer goes on.
TEST_F(Failover, ADrainedOnlyWorkerIsReplacedByAColdStart) {
  auto uninterrupted = q.run_task(seeded_task());
  ASSERT_EQ(ready_workers(), 1) << q.workers().dump();
  auto moved = run_and_strike(seeded_task(), SIGTERM);
  expect_moved_once(moved, "shutting_down");
  EXPECT_EQ(moved.text, uninterrupted.text);
  bool cold_start_after_failover = false, failed_over = false;
  for (const auto& e : moved.events) {
    failed_over = failed_over || e.value("action", "") == "failover";
    cold_start_after_failover =
        cold_start_after_failover || (failed_over && e.value("action", "") == "cold_start");
  }
  EXPECT_TRUE(cold_start_after_failover) << "the replacement's cold start is narrated";
}

TEST_F(Failover, AStoppedWorkerIsLeftAfterTheStallDeadline) {
  start_two_workers();
  auto uninterrupted = q.run_task(seeded_task());
  auto started = steady::now();
  auto moved = run_and_strike(seeded_task(), SIGSTOP);
  expect_moved_once(moved, "connection_lost");  // the read deadline: not a byte for 3 s
  EXPECT_EQ(moved.text, uninterrupted.text);
  EXPECT_LT(steady::now() - started, 60s);
}

TEST_F(Failover, GreedyOpenAiStreamContinuesWithNothingExtra) {
  start_two_workers();
  json body = {{"model", stories_ref()},
               {"messages", {{{"role", "user"}, {"content", "Tell me a story"}}}},
               {"max_tokens", answer_tokens},
               {"temperature", 0},
               {"logit_bias", {{"2", -100}}},
               {"stream", true}};
  auto stream = [&](bool strike) {
    std::string content;
    std::vector<json> chunks;
    int tokens_seen = 0;
    auto status =
        q.client().post_sse("/v1/chat/completions", body, [&](const common::sse_event& ev) {
          if (ev.is_done()) return false;
          json chunk = json::parse(ev.data);
          chunks.push_back(chunk);
          if (chunk.contains("choices") && !chunk["choices"].empty()) {
            content += chunk["choices"][0]["delta"].value("content", "");
            if (!chunk["choices"][0]["delta"].value("content", "").empty()) ++tokens_seen;
          }
          if (strike && tokens_seen == cut_after) {
            strike = false;
            // The only busy worker is the one serving this stream.
            for (const auto& w : q.workers()) {
              if (w.value("slots_busy", 0) > 0)
                ::kill(pid_of_worker(w.value("worker_id", "")), SIGKILL);
            }
          }
          return true;
        });
    EXPECT_EQ(status, 200);
    return std::make_pair(content, chunks);
  };
  auto [reference, reference_chunks] = stream(false);
  auto [moved, moved_chunks] = stream(true);
  EXPECT_EQ(moved, reference);
  for (const auto& chunk : moved_chunks) {
    EXPECT_FALSE(chunk.contains("error")) << chunk.dump();
    EXPECT_EQ(chunk.value("object", ""), "chat.completion.chunk") << chunk.dump();
  }
  EXPECT_EQ(moved_chunks.back()["choices"][0].value("finish_reason", ""), "length")
      << moved_chunks.back().dump();
  EXPECT_TRUE(contains(q.logs(), "failing over")) << "the queen's log names the failover";
}

TEST_F(Failover, RbeeInferExitsZeroWithTheWholeAnswer) {
  start_two_workers();
  std::vector<std::string> args = {
      "infer",    "--node",           "localhost",    "--model", stories_ref(),
      "--prompt", "Once upon a time", "--max-tokens", "200",     "--temperature",
      "0.9",      "--seed",           "11",           "--json"};
  auto reference = q.cli(args);
  ASSERT_EQ(reference.exit_code, 0) << reference.err;
  const std::string expected = json::parse(reference.out)["text"];
  auto cli = q.cli_background(args, "infer.log");
  ASSERT_TRUE(eventually([&] { return busy_workers() == 1; }, 30s)) << q.logs();
  std::this_thread::sleep_for(800ms);  // some 40 tokens at 20 ms a step
  for (const auto& w : q.workers()) {
    if (w.value("slots_busy", 0) > 0) ::kill(pid_of_worker(w.value("worker_id", "")), SIGKILL);
  }
  auto code = cli->wait(60s);
  ASSERT_TRUE(code);
  EXPECT_EQ(*code, 0) << cli->output();
  // Its --json summary (stdout) among the narration (stderr) in one log.
  const std::string output = cli->output();
  const size_t summary = output.find("\n{");
  ASSERT_NE(summary, std::string::npos) << output;
  EXPECT_EQ(json::parse(output.substr(summary))["text"], expected) << output;
  EXPECT_TRUE(contains(output, "lost after")) << "the CLI narrates the failover";
}

// The stop string begins right after the last token event before the switch: its tokens were
// held back by the first worker and are generated again by the second, which stops on them.
TEST_F(Failover, AStopStringSpanningTheSwitchStillStops) {
  start_two_workers();
  const std::string text = q.run_task(seeded_task()).text;
  ASSERT_GT(text.size(), 400u);
  std::string stop;
  for (size_t at = 250; at + 16 < text.size() && stop.empty(); ++at) {
    std::string candidate = text.substr(at, 16);
    if (text.find(candidate) == at && candidate.front() == ' ') stop = candidate;
  }
  ASSERT_FALSE(stop.empty());
  json task = seeded_task();
  task["stop"] = {stop};
  const std::string expected = text.substr(0, text.find(stop));
  std::string got;
  bool struck = false;
  auto s = q.run_task(task, [&](const json& e) {
    if (e.value("type", "") == "token") got += e.value("t", "");
    // Everything before the stop string has arrived: the worker is generating the held part.
    if (!struck && e.value("type", "") == "token" && got.size() >= expected.size()) {
      struck = true;
      ::kill(pid_of_worker(serving_worker(events_so_far_)), SIGKILL);
    }
    events_so_far_.push_back(e);
    return true;
  });
  ASSERT_TRUE(struck);
  EXPECT_EQ(s.text, expected);
  EXPECT_EQ(s.count("narration", "failover"), 1) << q.logs();
  auto end = s.first("end");
  ASSERT_TRUE(end) << q.logs();
  EXPECT_EQ((*end)["stop_reason"], "stop_sequence");
}

TEST_F(Failover, WithFailoverOffTheLostWorkerIsAnError) {
  q.stop_all();
  q.set_env("RBEE_MAX_FAILOVERS", "0");
  SetUp();
  start_two_workers();
  auto s = run_and_strike(seeded_task(), SIGKILL);
  EXPECT_EQ(s.count("narration", "failover"), 0);
  auto err = s.first("error");
  ASSERT_TRUE(err) << q.logs();
  EXPECT_EQ((*err)["code"], "INTERNAL") << err->dump();
  EXPECT_FALSE(s.first("end"));
}

}  // namespace
}  // namespace rbee::e2e::scenario
