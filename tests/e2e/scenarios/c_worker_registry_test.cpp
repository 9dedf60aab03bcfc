// spec/test-001.md section C, worker registry and pool preflight on `localhost`: scenarios
// 16-20 (21, an unreachable hive, needs a remote node: c_worker_registry_ssh_test.cpp).
#include <gtest/gtest.h>

#include <future>
#include <thread>

#include "harness/scenario_fixture.h"

namespace rbee::e2e::scenario {
namespace {

using nlohmann::json;

std::string cli_version(const std::string& binary) {
  auto r = run_cli(binary, {"--version"});
  std::string v = r.out.substr(r.out.find_last_of(' ') + 1);
  while (!v.empty() && (v.back() == '\n' || v.back() == '\r')) v.pop_back();
  return v;
}

class Scenarios_C : public local_node_test {};

TEST_F(Scenarios_C, S16_worker_list_empty) {
  q.start();
  auto r = q.cli({"workers", "list", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out), json::parse(R"({"workers":[]})")) << r.out;
  auto http = q.client().get("/v2/workers/list");
  ASSERT_EQ(http.status, 200);
  EXPECT_EQ(http.json_body()["workers"], json::array());
}

TEST_F(Scenarios_C, S17_idle_worker_reused) {
  q.start();
  auto first = q.run_task(stories_task(6));
  ASSERT_EQ(first.status, 200) << first.error.body << q.logs();
  ASSERT_TRUE(first.first("end")) << q.logs();
  auto ws = q.workers();
  ASSERT_EQ(ws.size(), 1u);
  std::string id = ws[0]["worker_id"];
  EXPECT_EQ(ws[0]["state"], "idle");

  auto second = q.run_task(stories_task(6));
  ASSERT_EQ(second.status, 200);
  EXPECT_EQ(second.count("narration", "worker_spawn"), 0);
  EXPECT_EQ(second.count("narration", "cold_start"), 0);
  ASSERT_EQ(second.count("narration", "worker_selected"), 1);
  for (const auto& e : second.events) {
    if (e.value("action", "") == "worker_selected") {
      EXPECT_EQ(e["worker_id"], id);
    }
  }
  EXPECT_EQ(second.text, first.text);
  auto after = q.workers();
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(after[0]["worker_id"], id);
}

TEST_F(Scenarios_C, S18_busy_worker_queues) {
  q.start({"--slots-per-worker", "1", "--max-workers-per-model", "1"});
  // Task 1 holds the only slot (from its cold start on); task 2 must wait for it.
  std::promise<void> first_started;
  bool signalled = false;
  auto t1 = std::async(std::launch::async, [&] {
    return q.run_task(stories_task(24), [&](const json& e) {
      if (!signalled && e.value("action", "") == "cold_start") {
        signalled = true;
        first_started.set_value();
      }
      return true;
    });
  });
  ASSERT_EQ(first_started.get_future().wait_for(60s), std::future_status::ready) << q.logs();
  auto t2 = q.run_task(stories_task(8));
  auto s1 = t1.get();
  ASSERT_EQ(s1.status, 200);
  ASSERT_EQ(t2.status, 200) << t2.error.body;
  EXPECT_GE(t2.count("narration", "queued"), 1) << "task 2 was not queued";
  EXPECT_TRUE(t2.first("end")) << (t2.first("error") ? t2.first("error")->dump() : "");
  EXPECT_EQ(t2.count("token"), 8);
  EXPECT_TRUE(s1.first("end"));
  // Served by the same worker once its slot freed: still one worker.
  EXPECT_EQ(q.workers().size(), 1u);
}

TEST_F(Scenarios_C, S19_hive_health) {
  q.start();
  auto r = q.cli({"hive", "start", "--node", "localhost"});
  ASSERT_EQ(r.exit_code, 0) << r.err << q.logs();
  auto h = q.hive_client().get("/v1/health");
  ASSERT_EQ(h.status, 200);
  auto body = h.json_body();
  EXPECT_EQ(body["status"], "alive");
  EXPECT_EQ(body["version"], cli_version("rbee-hive"));
  EXPECT_EQ(body["version"], cli_version("queen-rbee"));
  auto status = q.cli({"hive", "status", "--node", "localhost", "--json"});
  EXPECT_EQ(status.exit_code, 0) << status.err;
  EXPECT_EQ(json::parse(status.out).value("running", false), true) << status.out;
}

TEST_F(Scenarios_C, S20_version_mismatch) {
  // A real hive of another release (its reported version overridden) already runs on the node.
  auto& old_hive = q.start_own_hive({}, {{"RBEE_VERSION_OVERRIDE", "0.0.1"}});
  q.start();
  auto r = q.infer(stories_ref(), {"--max-tokens", "4"});
  EXPECT_TRUE(old_hive.running()) << "the queen must not touch a hive it cannot use";
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  std::string queen_version = cli_version("queen-rbee");
  EXPECT_TRUE(contains(r.err, "Version mismatch: queen " + queen_version + ", hive 0.0.1"))
      << r.err;
  EXPECT_TRUE(contains(r.err, "rbee setup install")) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
  EXPECT_TRUE(q.workers().empty());
}

}  // namespace
}  // namespace rbee::e2e::scenario
