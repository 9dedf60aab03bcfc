#include <gtest/gtest.h>

#include <cstdlib>

#include "cli/cli.h"
#include "cli/output.h"
#include "cli/queen_daemon.h"

namespace rbee::cli {
namespace {

TEST(CliArgs, UsageErrorsExitWith2) {
  EXPECT_EQ(run(std::vector<std::string>{}), exit_usage);
  EXPECT_EQ(run({"frobnicate"}), exit_usage);
  EXPECT_EQ(run({"infer", "--bogus"}), exit_usage);
  EXPECT_EQ(run({"infer", "--model", "m"}), exit_usage);   // no prompt
  EXPECT_EQ(run({"infer", "--prompt", "p"}), exit_usage);  // no model
  EXPECT_EQ(run({"infer", "-m", "m", "-p", "p", "--max-tokens", "zero"}), exit_usage);
  EXPECT_EQ(run({"infer", "-m", "m", "-p", "p", "--temperature", "-1"}), exit_usage);
  EXPECT_EQ(run({"infer", "-m", "m", "-p", "p", "--backend", "tpu"}), exit_usage);
  EXPECT_EQ(run({"setup", "add-node", "--name", "x"}), exit_usage);  // missing host etc.
  EXPECT_EQ(run({"setup"}), exit_usage);
  EXPECT_EQ(run({"workers", "shutdown"}), exit_usage);
  EXPECT_EQ(run({"logs"}), exit_usage);
}

TEST(CliArgs, HelpAndVersionExit0) {
  EXPECT_EQ(run({"--version"}), exit_ok);
  EXPECT_EQ(run({"--help"}), exit_ok);
  EXPECT_EQ(run({"infer", "--help"}), exit_ok);
  EXPECT_EQ(run({"setup", "add-node", "--help"}), exit_ok);
}

TEST(CliArgs, NoQueenAtARemoteUrlIsAnError) {
  // Nothing is auto-started for a non-loopback URL; the port is unroutable (TEST-NET-1).
  setenv("RBEE_QUEEN_URL", "http://192.0.2.1:9", 1);
  EXPECT_EQ(run({"queen", "status"}), exit_error);
  unsetenv("RBEE_QUEEN_URL");
}

TEST(QueenUrl, Parses) {
  auto p = parse_http_url("http://127.0.0.1:8080");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->host, "127.0.0.1");
  EXPECT_EQ(p->port, 8080);
  p = parse_http_url("http://localhost/");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->port, 80);
  EXPECT_FALSE(parse_http_url("https://x:1"));
  EXPECT_FALSE(parse_http_url("http://x:99999"));
  EXPECT_FALSE(parse_http_url("http://:80"));
}

TEST(Output, ProgressBarAndTable) {
  EXPECT_EQ(progress_bar(0.5, 10), "[#####.....] 50%");
  EXPECT_EQ(progress_bar(2.0, 4), "[####] 100%");
  EXPECT_EQ(format_table({"A", "LONG"}, {{"xyz", "1"}}), "A    LONG\nxyz  1\n");
}

}  // namespace
}  // namespace rbee::cli
