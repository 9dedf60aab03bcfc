// spec/test-001.md section G, scenario 39 (EC1, connection retry; see 21): the hive of a remote
// node cannot be reached (its port drops every packet), through the task API and the CLI.
#include <gtest/gtest.h>

#include "harness/scenario_fixture.h"

namespace rbee::e2e::scenario {
namespace {

class Scenarios_G_Remote : public one_installed_node {};

TEST_F(Scenarios_G_Remote, S39_ec1_connection_retry) {
  auto& ws = hosts->host("workstation");
  ASSERT_TRUE(blackhole_port(ws, 9200));
  auto s = hosts->queen().run_task(
      {{"node", "workstation"}, {"model", stories_ref()}, {"prompt", "x"}, {"max_tokens", 2}});
  auto err = s.first("error");
  nlohmann::json e =
      err ? *err
          : nlohmann::json::parse(s.error.body, nullptr, false).value("error", nlohmann::json());
  EXPECT_EQ(e.value("code", ""), "NODE_UNREACHABLE") << e.dump();
  EXPECT_TRUE(contains(e.value("message", ""), "Cannot connect to " + ws.address() + ":9200"))
      << e.dump();
  EXPECT_TRUE(contains(e.value("message", ""), "after 3 attempts")) << e.dump();
  EXPECT_TRUE(e.contains("details") && e["details"].contains("hint")) << e.dump();
}

}  // namespace
}  // namespace rbee::e2e::scenario
