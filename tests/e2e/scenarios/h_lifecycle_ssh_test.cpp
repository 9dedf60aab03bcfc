// spec/test-001.md section H, scenario 56 over SSH: SIGTERM to the queen stops the hive it
// started on a remote node (and that hive's workers).
#include <gtest/gtest.h>

#include "harness/scenario_fixture.h"

namespace rbee::e2e::scenario {
namespace {

class Scenarios_H_Remote : public one_installed_node {};

TEST_F(Scenarios_H_Remote, S56_queen_sigterm_cascade_remote) {
  auto& q = hosts->queen();
  auto r = q.infer(stories_ref(), {"--max-tokens", "2"}, "workstation");
  ASSERT_EQ(r.exit_code, 0) << r.err << q.logs();
  auto install = hosts->install_path("workstation").string();
  EXPECT_EQ(pids_with_cmdline(install + "/rbee-hive").size(), 1u);
  EXPECT_EQ(pids_with_cmdline("llm-worker-rbee").size() >= 1, true);
  std::string hive_url = "http://" + hosts->host("workstation").address() + ":9200";
  common::client_options o;
  o.connect_timeout = 1s;
  EXPECT_EQ(common::http_client(hive_url, o).get("/v1/health").status, 200);

  EXPECT_EQ(q.queen().stop(60s), 0);
  EXPECT_TRUE(eventually([&] { return pids_with_cmdline(install + "/rbee-hive").empty(); }, 15s))
      << "the remote hive must be stopped over SSH";
  EXPECT_TRUE(
      eventually([&] { return pids_with_cmdline(install + "/llm-worker-rbee").empty(); }, 15s))
      << "and its workers with it";
  EXPECT_THROW(common::http_client(hive_url, o).get("/v1/health"), common::connection_error);
  // Nothing the queen started locally for this node outlives it either (SSH multiplexers).
  EXPECT_TRUE(eventually([&] { return pids_with_cmdline(q.home().str()).empty(); }, 5s))
      << pids_with_cmdline(q.home().str()).size()
      << " process(es) with the queen's home in their command line (ssh ControlMaster)";
}

}  // namespace
}  // namespace rbee::e2e::scenario
