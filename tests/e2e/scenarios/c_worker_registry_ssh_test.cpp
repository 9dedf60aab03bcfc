// spec/test-001.md section C, scenario 21 (and G 39, EC1): a remote node whose hive port drops
// every packet (a blackhole rule inside the node's namespace), so connects time out.
#include <gtest/gtest.h>

#include "harness/scenario_fixture.h"

namespace rbee::e2e::scenario {
namespace {

class Scenarios_C_Remote : public one_installed_node {};

TEST_F(Scenarios_C_Remote, S21_hive_unreachable) {
  auto& ws = hosts->host("workstation");
  ASSERT_TRUE(blackhole_port(ws, 9200));
  auto started = std::chrono::steady_clock::now();
  auto r = hosts->queen().infer(stories_ref(), {"--max-tokens", "4"}, "workstation", 240s);
  auto took = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_TRUE(contains(r.err, "Cannot connect to " + ws.address() + ":9200 after 3 attempts"))
      << r.err;
  EXPECT_TRUE(contains(r.err, "hint") || contains(r.err, "Hint")) << r.err;
  EXPECT_GE(took, 2s) << "three attempts with backoff";
  EXPECT_TRUE(r.out.empty()) << r.out;
}

}  // namespace
}  // namespace rbee::e2e::scenario
