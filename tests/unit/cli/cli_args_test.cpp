#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>

#include <nlohmann/json.hpp>

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
  // A layer split, checked against the contract before any daemon is touched.
  EXPECT_EQ(run({"infer", "-m", "m", "-p", "p", "--devices", "0,x", "--split", "layer"}),
            exit_usage);
  EXPECT_EQ(run({"infer", "-m", "m", "-p", "p", "--devices", "0,1"}), exit_usage);  // no split
  EXPECT_EQ(run({"infer", "-m", "m", "-p", "p", "--split", "layer"}), exit_usage);  // no devices
  EXPECT_EQ(run({"infer", "-m", "m", "-p", "p", "--split", "tensor"}), exit_usage);
  EXPECT_EQ(run({"infer", "-m", "m", "-p", "p", "--devices", "0,1", "--split", "row"}), exit_usage);
  EXPECT_EQ(run({"setup", "add-node", "--name", "x"}), exit_usage);  // missing host etc.
  // Building on the node is not supported, so the option is not offered.
  EXPECT_EQ(run({"setup", "add-node", "--node", "x", "--ssh-host", "h", "--ssh-user", "u",
                 "--install-path", "/p", "--git-repo", "https://example.org/rbee.git"}),
            exit_usage);
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

// What `rbee args...` prints on stdout and stderr, and its exit code.
struct captured {
  int code;
  std::string out;
  std::string err;
};
captured capture(const std::vector<std::string>& args) {
  testing::internal::CaptureStdout();
  testing::internal::CaptureStderr();
  int code = run(args);
  std::string out = testing::internal::GetCapturedStdout();
  return {code, out, testing::internal::GetCapturedStderr()};
}

std::string joined(const std::vector<std::string>& words) {
  std::string s;
  for (const auto& w : words) s += (s.empty() ? "" : " ") + w;
  return s;
}

TEST(CliHelp, EveryCommandsHelpHasAnExampleOfItself) {
  auto paths = command_paths();
  ASSERT_GT(paths.size(), 20u);
  for (const auto& path : paths) {
    auto args = path;
    args.push_back("--help");
    auto r = capture(args);
    EXPECT_EQ(r.code, exit_ok) << joined(path);
    EXPECT_NE(r.out.find("Example"), std::string::npos) << joined(path) << ":\n" << r.out;
    // An example line runs this very command (a parent's may run any of its children).
    EXPECT_NE(r.out.find("  rbee " + path[0]), std::string::npos) << joined(path) << r.out;
  }
}

TEST(CliHelp, OptionalFlagsSayTheirDefault) {
  for (const auto& path : std::vector<std::vector<std::string>>{
           {"models", "list"}, {"workers", "health"}, {"hive", "status"}, {"infer"}, {"chat"}}) {
    auto args = path;
    args.push_back("--help");
    auto r = capture(args);
    for (const char* flag : {"--node", "--temperature", "--max-tokens"}) {
      size_t at = r.out.find(std::string("  ") + flag);
      if (at == std::string::npos) continue;
      // The flag's entry, its description wrapped onto following lines when the flag is long.
      size_t end = std::min(r.out.find("\n  -", at), r.out.find("\n\n", at));
      std::string line = r.out.substr(at, end - at);
      EXPECT_NE(line.find("default"), std::string::npos) << joined(path) << ": " << line;
    }
  }
}

TEST(CliHelp, HelpCommandAndBareRbeeShowTheHelp) {
  auto r = capture({"help"});
  EXPECT_EQ(r.code, exit_ok);
  EXPECT_NE(r.out.find("Subcommands:"), std::string::npos) << r.out;
  r = capture({"help", "models", "list"});
  EXPECT_EQ(r.code, exit_ok);
  EXPECT_NE(r.out.find("rbee models list"), std::string::npos) << r.out;
  r = capture({});
  EXPECT_EQ(r.code, exit_usage);
  EXPECT_NE(r.out.find("Subcommands:"), std::string::npos) << r.out;
  EXPECT_EQ(r.err.find("A subcommand is required"), std::string::npos) << r.err;
}

TEST(CliHelp, AGroupWithoutACommandShowsItsCommands) {
  auto r = capture({"setup"});
  EXPECT_EQ(r.code, exit_usage);
  EXPECT_NE(r.out.find("add-node"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("'rbee setup' needs one of its commands"), std::string::npos) << r.err;
}

TEST(CliHelp, UnknownCommandsSuggestTheNearest) {
  auto r = capture({"modles", "list"});
  EXPECT_EQ(r.code, exit_usage);
  EXPECT_NE(r.err.find("Did you mean 'rbee models'?"), std::string::npos) << r.err;
  r = capture({"models", "lsit"});
  EXPECT_EQ(r.code, exit_usage);
  EXPECT_NE(r.err.find("Did you mean 'rbee models list'?"), std::string::npos) << r.err;
  r = capture({"--queen-url", "http://127.0.0.1:1", "wrokers", "list"});
  EXPECT_NE(r.err.find("Did you mean 'rbee workers'?"), std::string::npos) << r.err;
  r = capture({"frobnicate"});
  EXPECT_EQ(r.code, exit_usage);
  EXPECT_EQ(r.err.find("Did you mean"), std::string::npos) << r.err;
}

TEST(CliHelp, UsageErrorsAreJsonOnStdoutWithJson) {
  auto r = capture({"models", "lsit", "--json"});
  EXPECT_EQ(r.code, exit_usage);
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["error"]["code"], "USAGE");
  r = capture({"workers", "list", "--json", "--bogus"});
  EXPECT_EQ(r.code, exit_usage);
  EXPECT_EQ(nlohmann::json::parse(r.out)["error"]["code"], "USAGE") << r.out;
  r = capture({"models", "lsit"});
  EXPECT_TRUE(r.out.empty()) << r.out;  // without --json, stdout stays clean
}

TEST(CliArgs, OldFlagSpellingsStillParse) {
  // They get past parsing (exit 1: no queen at the unroutable URL), not a usage error.
  setenv("RBEE_QUEEN_URL", "http://192.0.2.1:9", 1);
  EXPECT_EQ(run({"workers", "shutdown", "--id", "w-1"}), exit_error);
  EXPECT_EQ(run({"setup", "remove-node", "--name", "gpu1"}), exit_error);
  EXPECT_EQ(run({"setup", "remove-node"}), exit_usage);
  unsetenv("RBEE_QUEEN_URL");
}

TEST(Output, NearestNameAndDuration) {
  EXPECT_EQ(nearest_name("lsit", {"list", "download", "rm"}), "list");
  EXPECT_EQ(nearest_name("mod", {"models", "queen"}), "models");
  EXPECT_EQ(nearest_name("xyz", {"models", "queen"}), "");
  EXPECT_EQ(format_duration(42.4), "42s");
  EXPECT_EQ(format_duration(65), "1m05s");
  EXPECT_EQ(format_duration(7380), "2h03m");
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
