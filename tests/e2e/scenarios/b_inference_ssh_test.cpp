// spec/test-001.md section B, inference on remote nodes over real OpenSSH: scenarios 9 (cold
// start on a remote node, its model downloaded from the stand-in hub) and 13 (two nodes,
// `workstation` and `mac`, at the same time).
#include <gtest/gtest.h>

#include <functional>

#include "harness/hub_server.h"
#include "harness/scenario_fixture.h"

namespace rbee::e2e::scenario {
namespace {

using nlohmann::json;

const std::string synth_ref = "file:" + models_dir() + "/synth-tiny-Q8_0.gguf";

class Scenarios_B_Remote : public ::testing::Test {
 protected:
  // before_queen runs once the hosts exist, before the queen starts (its environment).
  void start(const std::vector<std::string>& names,
             const std::function<void()>& before_queen = {}) {
    hosts = std::make_unique<scenario_hosts>(names);
    if (before_queen) before_queen();
    hosts->queen().start();
    for (const auto& n : names) {
      auto r = hosts->add_and_install(n);
      ASSERT_EQ(r.exit_code, 0) << n << ": " << r.err << hosts->queen().queen_log();
    }
  }
  void SetUp() override {
    if (auto why = scenario_hosts::unavailable_reason(); !why.empty()) GTEST_SKIP() << why;
  }
  void TearDown() override {
    if (hosts) {
      EXPECT_TRUE(hosts->stop_all()) << "processes left after the queen stopped";
    }
    hosts.reset();
  }

  bool remote_hive_alive(const std::string& node) {
    common::client_options o;
    o.connect_timeout = 1s;
    o.read_timeout = 3s;
    try {
      return common::http_client("http://" + hosts->host(node).address() + ":9200", o)
                 .get("/v1/health")
                 .status == 200;
    } catch (const common::connection_error&) {
      return false;
    }
  }

  std::unique_ptr<scenario_hosts> hosts;
  hub_server hub;
};

TEST_F(Scenarios_B_Remote, S09_cold_start_remote_node) {
  const std::string repo = "rbee-test/stories260K-GGUF";
  const std::string file = "stories260K.gguf";
  const std::string ref = "hf:" + repo + ":" + file;
  // The stand-in hub listens on this side of the node's link (the node's default route); the
  // queen forwards HF_ENDPOINT to the hive it starts there.
  start({"workstation"}, [&] {
    hub.add_file(repo, file, stories_path());
    hub.start(hosts->host("workstation").peer_address());
    hosts->queen().set_env("HF_ENDPOINT", hub.url());
  });
  auto& q = hosts->queen();
  EXPECT_FALSE(remote_hive_alive("workstation")) << "no hive may run before the request";
  auto r = q.infer(ref, {"--max-tokens", "10", "--temperature", "0", "--json"}, "workstation");
  ASSERT_EQ(r.exit_code, 0) << r.err << q.logs();
  // Every phase is narrated: the words on stderr, the actions in the JSON result on stdout.
  for (const char* phase : {"hive_start", "hive_ready", "download_start", "download_complete",
                            "worker_spawn", "worker_ready"}) {
    EXPECT_TRUE(r.took_step(phase)) << phase << ": " << r.out;
  }
  EXPECT_TRUE(contains(r.err, "'workstation'") && contains(r.err, ref)) << r.err;
  EXPECT_EQ(hub.downloads(repo, file).size(), 1u);
  auto result = json::parse(r.out);
  EXPECT_EQ(result["tokens_out"], 10) << r.out;
  EXPECT_EQ(golden_continuation("Once upon a time").rfind(result["text"].get<std::string>(), 0), 0u)
      << r.out;
  // The hive runs on the node (its namespace), from the install path.
  EXPECT_TRUE(remote_hive_alive("workstation"));
  EXPECT_FALSE(
      pids_with_cmdline(hosts->install_path("workstation").string() + "/rbee-hive").empty());
  // Its state (the downloaded model) lives under the install path, not the SSH user's home.
  bool under_install = false;
  std::error_code ec;
  for (const auto& f : std::filesystem::recursive_directory_iterator(
           hosts->install_path("workstation") / "home", ec)) {
    under_install = under_install || f.path().filename() == file;
  }
  EXPECT_TRUE(under_install) << "model not under " << hosts->install_path("workstation") / "home";
  auto ws = q.workers();
  ASSERT_EQ(ws.size(), 1u) << ws.dump();
  EXPECT_EQ(ws[0]["node"], "workstation");
  EXPECT_TRUE(contains(ws[0].value("url", ""), hosts->host("workstation").address()))
      << ws[0].dump();
}

TEST_F(Scenarios_B_Remote, S13_two_nodes) {
  start({"workstation", "mac"});
  auto& q = hosts->queen();
  auto a = q.infer(stories_ref(), {"--max-tokens", "4", "--temperature", "0"}, "workstation");
  ASSERT_EQ(a.exit_code, 0) << a.err << q.logs();
  auto b = q.infer(synth_ref, {"--max-tokens", "4", "--temperature", "0"}, "mac");
  ASSERT_EQ(b.exit_code, 0) << b.err << q.logs();

  auto list = q.cli({"workers", "list", "--json"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  auto ws = json::parse(list.out)["workers"];
  ASSERT_EQ(ws.size(), 2u) << list.out;
  std::map<std::string, std::string> node_of;
  for (const auto& w : ws) node_of[w["model_ref"]] = w["node"];
  EXPECT_EQ(node_of[stories_ref()], "workstation");
  EXPECT_EQ(node_of[synth_ref], "mac");
  auto table = q.cli({"workers", "list"});
  EXPECT_TRUE(contains(table.out, "workstation") && contains(table.out, "mac")) << table.out;

  // Without --node, each model goes to the node whose worker has it (warm, no new worker).
  auto ra = q.cli({"infer", "--model", stories_ref(), "--prompt", "Once upon a time",
                   "--max-tokens", "4", "--temperature", "0", "--json"});
  ASSERT_EQ(ra.exit_code, 0) << ra.err;
  EXPECT_TRUE(ra.took_step("worker_selected") && !ra.took_step("worker_spawn")) << ra.out;
  EXPECT_EQ(json::parse(ra.out)["text"], a.text());
  auto rb = q.cli({"infer", "--model", synth_ref, "--prompt", "Once upon a time", "--max-tokens",
                   "4", "--temperature", "0", "--json"});
  ASSERT_EQ(rb.exit_code, 0) << rb.err;
  EXPECT_TRUE(rb.took_step("worker_selected") && !rb.took_step("worker_spawn")) << rb.out;
  EXPECT_EQ(q.workers().size(), 2u) << "each model stayed on the node whose worker has it";
}

}  // namespace
}  // namespace rbee::e2e::scenario
