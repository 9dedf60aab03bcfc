// spec/test-001.md section G, edge cases EC2-EC10 on `localhost`: scenarios 40-48 (39, EC1,
// needs a remote node: g_edge_cases_ssh_test.cpp).
#include <gtest/gtest.h>

#include <future>
#include <thread>

#include "harness/hub_server.h"
#include "harness/scenario_fixture.h"

namespace rbee::e2e::scenario {
namespace {

using nlohmann::json;

class Scenarios_G : public local_node_test {};

TEST_F(Scenarios_G, S40_ec2_download_retry) {
  const std::string repo = "rbee-test/stories260K-GGUF", file = "stories260K.gguf";
  hub_server hub;
  hub.add_file(repo, file, stories_path());
  auto size = std::filesystem::file_size(stories_path());
  // Two drops, at ~40% and again: the third attempt finishes, each resuming where it stopped.
  hub.set_fault(repo, file, {.drop_at_byte = size * 4 / 10, .drop_attempts = 2});
  hub.start();
  q.set_env("HF_ENDPOINT", hub.url());
  q.start();
  auto r = q.infer("hf:" + repo + ":" + file, {"--max-tokens", "6", "--temperature", "0"});
  ASSERT_EQ(r.exit_code, 0) << r.err << q.logs();
  EXPECT_EQ(golden_continuation("Once upon a time").rfind(r.text(), 0), 0u) << r.out;
  auto gets = hub.downloads(repo, file);
  ASSERT_EQ(gets.size(), 3u);
  EXPECT_TRUE(contains(gets[1].range, "bytes=")) << gets[1].range;
  EXPECT_TRUE(contains(gets[2].range, "bytes=")) << gets[2].range;
  auto models = q.cli({"models", "list", "--node", "localhost", "--json"});
  EXPECT_TRUE(contains(models.out, hub.sha256(repo, file))) << models.out;
  hub.stop();
}

TEST_F(Scenarios_G, S41_ec3_insufficient_vram) {
  give_hive_a_nearly_full_gpu(q);
  q.start();
  auto r = q.infer(stories_ref(), {"--backend", "cuda", "--device", "0", "--max-tokens", "2"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.err, "VRAM")) << r.err;
  EXPECT_TRUE(q.workers().empty());
}

// Failover exists (docs/failover.md): the stream continues on another worker, a cold start
// here, with no token lost or repeated.
TEST_F(Scenarios_G, S42_ec4_worker_crash_mid_stream) {
  q.start();
  const auto uninterrupted = q.run_task(stories_task(300));
  ASSERT_TRUE(uninterrupted.first("end")) << q.logs();
  auto pids = worker_pids(q);
  ASSERT_EQ(pids.size(), 1u);
  const std::string crashed = q.workers()[0].value("worker_id", "");
  bool killed = false;
  auto s = q.run_task(stories_task(300), [&](const json& e) {
    if (!killed && e.value("type", "") == "token") {
      killed = true;
      ::kill(pids[0], SIGKILL);
    }
    return true;
  });
  ASSERT_TRUE(killed);
  EXPECT_FALSE(s.first("error")) << s.first("error")->dump() << q.logs();
  ASSERT_TRUE(s.first("end")) << "the answer ends as the uninterrupted one does";
  EXPECT_EQ(s.text, uninterrupted.text);
  EXPECT_EQ((*s.first("end"))["tokens_out"], (*uninterrupted.first("end"))["tokens_out"]);
  EXPECT_EQ(s.count("narration", "failover"), 1);
  // The hive removes the dead worker; the next request works.
  EXPECT_TRUE(eventually(
      [&] {
        for (const auto& w : q.workers())
          if (w.value("worker_id", "") == crashed) return false;
        return true;
      },
      10s))
      << q.workers().dump();
  auto next = q.infer(stories_ref(), {"--max-tokens", "4", "--temperature", "0"});
  EXPECT_EQ(next.exit_code, 0) << next.err;
  EXPECT_EQ(golden_continuation("Once upon a time").rfind(next.text(), 0), 0u) << next.out;
}

TEST_F(Scenarios_G, S43_ec5_ctrl_c) {
  q.start();
  ASSERT_EQ(q.infer(stories_ref(), {"--max-tokens", "2"}).exit_code, 0) << q.logs();
  auto cli = q.cli_background({"infer", "--node", "localhost", "--model", stories_ref(), "--prompt",
                               "Once upon a time", "--max-tokens", "2000", "--temperature", "0"},
                              "ctrl-c.log");
  // Wait for the first tokens (the story starts with ", there was").
  ASSERT_TRUE(eventually([&] { return contains(cli->output(), "there"); }, 30s, 5ms))
      << cli->output();
  auto at = std::chrono::steady_clock::now();
  cli->signal(SIGINT);
  auto status = cli->wait(5s);
  ASSERT_TRUE(status) << "the CLI did not exit after Ctrl+C: " << cli->output();
  EXPECT_EQ(*status, 130) << cli->output();
  EXPECT_TRUE(contains(cli->output(), "Canceled.")) << cli->output();
  // The worker freed its slot within 1 s of the interrupt.
  bool freed = eventually(
      [&] {
        auto ws = q.workers();
        return ws.size() == 1 && ws[0].value("slots_busy", -1) == 0;
      },
      1s, 20ms);
  EXPECT_TRUE(freed) << q.workers().dump();
  EXPECT_LT(std::chrono::steady_clock::now() - at, 3s);
  // Generation stopped: far fewer than 2000 tokens were produced.
  EXPECT_FALSE(contains(cli->output(), "2000 tokens")) << cli->output();
  EXPECT_TRUE(q.infer(stories_ref(), {"--max-tokens", "2"}).exit_code == 0);
}

TEST_F(Scenarios_G, S44_ec6_queue_full) {
  // One slot, one queue place: a slow-loading worker holds the slot, a second task waits.
  q.start({"--slots-per-worker", "1", "--queue-size", "1"});
  q.start_own_hive({"--worker-arg=--debug-load-delay-ms=20000"});
  auto t1 = std::async(std::launch::async, [&] { return q.run_task(stories_task(2)); });
  ASSERT_TRUE(eventually([&] { return !q.workers().empty(); }, 10s));
  std::promise<void> queued;
  bool said = false;
  auto t2 = std::async(std::launch::async, [&] {
    return q.run_task(stories_task(2), [&](const json& e) {
      if (!said && e.value("action", "") == "queued") {
        said = true;
        queued.set_value();
      }
      return true;
    });
  });
  ASSERT_EQ(queued.get_future().wait_for(10s), std::future_status::ready);

  // The API: 503 QUEUE_FULL with Retry-After.
  auto direct = q.run_task(stories_task(2));
  EXPECT_EQ(direct.status, 503);
  EXPECT_EQ(direct.error.json_body()["error"]["code"], "QUEUE_FULL") << direct.error.body;
  EXPECT_FALSE(direct.error.header("Retry-After").empty());

  // The CLI retries after 1, 2 and 4 s, then gives up with a hint.
  auto started = std::chrono::steady_clock::now();
  auto r = q.infer(stories_ref(), {"--max-tokens", "2"}, "localhost", 60s);
  auto took = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_TRUE(contains(r.err, "retrying in 1 s")) << r.err;
  EXPECT_TRUE(contains(r.err, "retrying in 2 s")) << r.err;
  EXPECT_TRUE(contains(r.err, "retrying in 4 s")) << r.err;
  EXPECT_TRUE(contains(r.err, "Hint:")) << r.err;
  EXPECT_GE(took, 7s);
  q.stop_all();
  t1.wait();
  t2.wait();
}

TEST_F(Scenarios_G, S45_ec7_loading_timeout) {
  // The queen's own loading timeout (1 s) fires while the worker is still loading.
  q.set_env("RBEE_LOADING_TIMEOUT", "1");
  q.start();
  q.start_own_hive({"--worker-arg=--debug-load-delay-ms=30000"});
  auto s = q.run_task(stories_task(2));
  auto err = s.first("error");
  ASSERT_TRUE(err) << s.status << s.error.body;
  EXPECT_EQ((*err)["code"], "LOADING_TIMEOUT") << err->dump();
  auto r = q.infer(stories_ref(), {"--max-tokens", "2"}, "localhost", 60s);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.err, "did not finish loading")) << r.err;
  // Killed, resources freed.
  EXPECT_TRUE(eventually([&] { return worker_pids(q).empty(); }, 10s));
  EXPECT_TRUE(eventually([&] { return q.workers().empty(); }, 5s)) << q.workers().dump();
}

TEST_F(Scenarios_G, S46_ec8_version_mismatch) {
  // A real hive of a newer major release (its reported version overridden) runs on the node.
  q.start_own_hive({}, {{"RBEE_VERSION_OVERRIDE", "9.0.0"}});
  q.start();
  auto s = q.run_task(stories_task(2));
  auto r = q.infer(stories_ref(), {"--max-tokens", "2"});
  json err = s.first("error") ? *s.first("error")
                              : json::parse(s.error.body, nullptr, false).value("error", json());
  EXPECT_EQ(err.value("code", ""), "VERSION_MISMATCH") << err.dump();
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.err, "Version mismatch")) << r.err;
  EXPECT_TRUE(contains(r.err, "hive 9.0.0")) << r.err;
  EXPECT_TRUE(contains(r.err, "rbee setup install")) << r.err;
}

TEST_F(Scenarios_G, S47_ec9_invalid_api_key) {
  q.set_api_key("the-right-key");
  q.start();
  auto env = q.env();
  env["RBEE_API_KEY"] = "a-wrong-key";
  auto wrong = run_cli("rbee", {"workers", "list"}, env);
  EXPECT_EQ(wrong.exit_code, 1);
  EXPECT_TRUE(contains(wrong.err, "Authentication failed")) << wrong.err;
  EXPECT_TRUE(contains(wrong.err, "RBEE_API_KEY")) << "hint where the key is set: " << wrong.err;
  env.erase("RBEE_API_KEY");
  auto missing = run_cli("rbee", {"workers", "list"}, env);
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_TRUE(contains(missing.err, "Authentication failed")) << missing.err;

  common::client_options o;
  o.bearer_token = "a-wrong-key";
  auto r = common::http_client(q.url(), o).get("/v2/workers/list");
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(r.json_body()["error"]["code"], "INVALID_API_KEY") << r.body;
  auto none = common::http_client(q.url()).get("/v2/workers/list");
  EXPECT_EQ(none.status, 401);
  EXPECT_EQ(none.json_body()["error"]["code"], "MISSING_API_KEY") << none.body;
  // The right key works.
  EXPECT_EQ(q.cli({"workers", "list"}).exit_code, 0);
}

TEST_F(Scenarios_G, S48_ec10_idle_timeout) {
  q.set_env("RBEE_WORKER_IDLE_TIMEOUT", "1");
  q.start();
  auto first = q.infer(stories_ref(), {"--max-tokens", "2"});
  ASSERT_EQ(first.exit_code, 0) << first.err << q.logs();
  // After the idle period the worker is shut down and its memory freed (the process is gone).
  EXPECT_TRUE(eventually([&] { return worker_pids(q).empty(); }, 15s));
  EXPECT_TRUE(eventually([&] { return q.workers().empty(); }, 5s)) << q.workers().dump();
  auto next = q.infer(stories_ref(), {"--max-tokens", "2", "--json"});
  ASSERT_EQ(next.exit_code, 0) << next.err;
  EXPECT_TRUE(next.took_step("cold_start")) << next.out;
  EXPECT_TRUE(next.took_step("worker_spawn")) << next.out;
}

}  // namespace
}  // namespace rbee::e2e::scenario
