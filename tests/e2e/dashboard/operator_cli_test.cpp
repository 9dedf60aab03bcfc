// The operator's command line beside the dashboard (issue 19): `rbee logs --tail N --since D`
// shows the last lines of a log (a screenful by default) instead of its whole history, and
// `rbee models list` gives sizes and download dates a person reads.
#include <gtest/gtest.h>

#include <algorithm>
#include <regex>
#include <thread>

#include "harness/scenario_fixture.h"

namespace rbee::e2e::scenario {
namespace {

using namespace std::chrono_literals;

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::stringstream ss(text);
  for (std::string line; std::getline(ss, line);) lines.push_back(line);
  return lines;
}

class OperatorCli : public ::testing::Test {
 protected:
  void SetUp() override {
    q.start();
    auto r = q.infer(stories_ref(), {"--max-tokens", "4"});
    ASSERT_EQ(r.exit_code, 0) << r.err << q.logs();
  }
  void TearDown() override { EXPECT_TRUE(q.stop_all()); }

  std::vector<std::string> logs(std::vector<std::string> extra) {
    std::vector<std::string> args = {"logs", "--node", "localhost"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto r = q.cli(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return lines_of(r.out);
  }

  scenario_queen q;
};

TEST_F(OperatorCli, LogsTailShowsTheLastLines) {
  auto last3 = logs({"--tail", "3"});
  ASSERT_EQ(last3.size(), 3u);
  auto all = logs({"--tail", "0"});  // read after: it holds those three and what came since
  ASSERT_GT(all.size(), 5u) << "the hive logged its start and the inference";
  EXPECT_TRUE(std::search(all.begin(), all.end(), last3.begin(), last3.end()) != all.end())
      << "not the log's own last lines, in order";
  EXPECT_NE(last3.front(), all.front());
  // Without --tail, a screenful (50 lines when stdout is no terminal).
  EXPECT_LE(logs({}).size(), 50u);
}

TEST_F(OperatorCli, LogsSinceLeavesOutOlderLines) {
  auto older = logs({"--tail", "0"});
  ASSERT_GT(older.size(), 5u);
  EXPECT_GE(logs({"--tail", "0", "--since", "1h"}).size(), older.size());
  std::this_thread::sleep_for(2100ms);
  // Only what was logged in the last second: none of the lines from before the pause.
  auto recent = logs({"--tail", "0", "--since", "1s"});
  for (const auto& line : older) {
    EXPECT_EQ(std::find(recent.begin(), recent.end(), line), recent.end()) << line;
  }

  auto bad = q.cli({"logs", "--node", "localhost", "--since", "5 minutes"});
  EXPECT_EQ(bad.exit_code, 2) << bad.out << bad.err;
  EXPECT_TRUE(contains(bad.err, "30s, 15m, 2h or 1d")) << bad.err;
  auto status = q.client().get_sse("/v2/logs?node=localhost&tail=many",
                                   [](const common::sse_event&) { return false; });
  EXPECT_EQ(status, 400);
}

TEST_F(OperatorCli, ModelsListHasHumanSizesAndDates) {
  auto r = q.cli({"models", "list", "--node", "localhost"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "SIZE")) << r.out;
  EXPECT_TRUE(contains(r.out, "1.1 MiB")) << r.out;  // stories260K.gguf, 1185376 bytes
  EXPECT_TRUE(std::regex_search(r.out, std::regex(R"(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})")))
      << r.out;
}

}  // namespace
}  // namespace rbee::e2e::scenario
