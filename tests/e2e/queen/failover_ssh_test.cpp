// Issue 20 across two SSH test hosts: an answer survives losing its node's hive (its worker
// drains when the hive dies) by moving to the worker on the other host, and survives losing its
// only worker's whole node (hive and worker killed, SSH refused) by a cold start on the other
// host. Each time the client gets the answer of an uninterrupted run with the same seed.
#include <signal.h>

#include <gtest/gtest.h>

#include "harness/scenario_fixture.h"

namespace rbee::e2e::scenario {
namespace {

using nlohmann::json;

const std::string model = "file:" + models_dir() + "/synth-tiny-Q8_0.gguf";
constexpr int answer_tokens = 1500;  // long enough to still run when the strike lands
constexpr int cut_after = 50;

json seeded_task() {
  return {{"model", model},
          {"prompt", "Once upon a time"},
          {"max_tokens", answer_tokens},
          {"temperature", 0.8},
          {"seed", 5},
          {"logit_bias", {{"2", -100}}}};
}

class RemoteFailover : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = scenario_hosts::unavailable_reason(); !why.empty()) GTEST_SKIP() << why;
    hosts = std::make_unique<scenario_hosts>(std::vector<std::string>{"workstation", "mac"});
    auto& q = hosts->queen();
    q.set_env("RBEE_RAM_LIMIT", "1000");  // the built-in node is too small: the hosts serve
    q.start({"--hive-connect-timeout", "3"});
    for (const char* n : {"workstation", "mac"}) {
      auto r = hosts->add_and_install(n);
      ASSERT_EQ(r.exit_code, 0) << n << ": " << r.err << q.queen_log();
    }
  }
  void TearDown() override {
    if (hosts) hosts->stop_all();
  }

  void warm_worker_on(const std::string& node) {
    auto r = hosts->queen().infer(model, {"--max-tokens", "2"}, node);
    ASSERT_EQ(r.exit_code, 0) << r.err << hosts->queen().logs();
  }
  // The processes of rbee on a host whose command line also holds `part`.
  std::vector<pid_t> processes_on(const std::string& node, const std::string& part) {
    std::vector<pid_t> out;
    for (pid_t p : pids_with_cmdline(hosts->install_path(node).string())) {
      if (contains(slurp("/proc/" + std::to_string(p) + "/cmdline"), part)) out.push_back(p);
    }
    return out;
  }
  // Runs the task; at its cut_after-th token, strike(node serving it).
  sse_result run_and_strike(const std::function<void(const std::string& node)>& strike) {
    std::string serving_node;
    bool struck = false;
    return hosts->queen().run_task(seeded_task(), [&](const json& e) {
      if (e.value("action", "") == "worker_selected") serving_node = e.value("node", "");
      if (!struck && e.value("type", "") == "token" && e.value("i", 0) >= cut_after - 1) {
        struck = true;
        EXPECT_FALSE(serving_node.empty());
        strike(serving_node);
      }
      return true;
    });
  }
  static void expect_whole_answer(const sse_result& moved, const sse_result& uninterrupted) {
    EXPECT_EQ(moved.count("narration", "failover"), 1);
    EXPECT_FALSE(moved.first("error")) << moved.first("error")->dump();
    ASSERT_TRUE(moved.first("end"));
    EXPECT_EQ((*moved.first("end"))["tokens_out"], answer_tokens);
    EXPECT_EQ(moved.text, uninterrupted.text);
  }

  std::unique_ptr<scenario_hosts> hosts;
};

TEST_F(RemoteFailover, AKilledHiveDrainsItsWorkerAndTheAnswerMovesToTheOtherHost) {
  warm_worker_on("workstation");
  warm_worker_on("mac");
  auto uninterrupted = hosts->queen().run_task(seeded_task());
  ASSERT_EQ(uninterrupted.count("token") > cut_after, true) << hosts->queen().logs();
  std::string lost_node;
  auto moved = run_and_strike([&](const std::string& node) {
    lost_node = node;
    for (pid_t p : processes_on(node, "rbee-hive")) ::kill(p, SIGKILL);
  });
  expect_whole_answer(moved, uninterrupted);
  std::string resumed_on;
  for (const auto& e : moved.events) {
    if (e.value("action", "") == "failover_resume") resumed_on = e.value("node", "");
  }
  EXPECT_FALSE(resumed_on.empty());
  EXPECT_NE(resumed_on, lost_node) << hosts->queen().logs();
}

TEST_F(RemoteFailover, TheOnlyWorkersNodeGoneMeansAColdStartElsewhere) {
  warm_worker_on("workstation");
  auto uninterrupted = hosts->queen().run_task(seeded_task());
  auto moved = run_and_strike([&](const std::string& node) {
    ASSERT_EQ(node, "workstation");
    // The node goes away: its rbee processes die, and nothing can start there again (sshd
    // stops, and the queen's open SSH connections to it end with it).
    for (pid_t p : processes_on(node, "rbee")) ::kill(p, SIGKILL);
    hosts->host(node).stop_sshd();
    for (pid_t p : pids_with_cmdline(hosts->host(node).address())) {
      if (contains(slurp("/proc/" + std::to_string(p) + "/cmdline"), "ssh")) ::kill(p, SIGKILL);
    }
  });
  expect_whole_answer(moved, uninterrupted);
  bool cold_start_on_mac = false, failed_over = false;
  for (const auto& e : moved.events) {
    failed_over = failed_over || e.value("action", "") == "failover";
    if (failed_over && e.value("action", "") == "worker_ready") {
      cold_start_on_mac = e.value("node", "") == "mac";
    }
  }
  std::string narrated;
  for (const auto& e : moved.events) {
    if (e.value("type", "") == "narration") narrated += e.value("human", "") + "\n";
  }
  EXPECT_TRUE(cold_start_on_mac) << narrated;
}

}  // namespace
}  // namespace rbee::e2e::scenario
