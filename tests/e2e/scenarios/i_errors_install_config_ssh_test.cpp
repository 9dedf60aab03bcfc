// spec/test-001.md section I, scenario 60: the remote install path is configurable per node;
// each node gets its binaries in its own path and its hive runs from there.
#include <gtest/gtest.h>

#include "harness/scenario_fixture.h"

namespace rbee::e2e::scenario {
namespace {

namespace fs = std::filesystem;

class Scenarios_I_Remote : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = scenario_hosts::unavailable_reason(); !why.empty()) GTEST_SKIP() << why;
    hosts = std::make_unique<scenario_hosts>(std::vector<std::string>{"workstation", "mac"});
    hosts->queen().start();
  }
  void TearDown() override {
    if (hosts) {
      EXPECT_TRUE(hosts->stop_all()) << "processes left after the queen stopped";
    }
    hosts.reset();
  }
  std::unique_ptr<scenario_hosts> hosts;
};

TEST_F(Scenarios_I_Remote, S60_remote_install_path_per_node) {
  for (const char* node : {"workstation", "mac"}) {
    auto r = hosts->add_and_install(node);
    ASSERT_EQ(r.exit_code, 0) << node << ": " << r.err;
  }
  auto ws_path = hosts->install_path("workstation"), mac_path = hosts->install_path("mac");
  ASSERT_NE(ws_path, mac_path);
  for (const auto& p : {ws_path, mac_path}) {
    EXPECT_TRUE(fs::exists(p / "rbee-hive")) << p;
    EXPECT_TRUE(fs::exists(p / "llm-worker-rbee")) << p;
  }
  EXPECT_EQ(hosts->node("workstation")->value("install_path", ""), ws_path.string());
  EXPECT_EQ(hosts->node("mac")->value("install_path", ""), mac_path.string());
  // The hive on `mac` is started from mac's path.
  auto r = hosts->queen().infer(stories_ref(), {"--max-tokens", "2"}, "mac");
  ASSERT_EQ(r.exit_code, 0) << r.err << hosts->queen().logs();
  EXPECT_EQ(pids_with_cmdline(mac_path.string() + "/rbee-hive").size(), 1u);
  EXPECT_TRUE(pids_with_cmdline(ws_path.string() + "/rbee-hive").empty());
}

}  // namespace
}  // namespace rbee::e2e::scenario
