// What the CLI prints, for pipes and scripts (issue 21): generated text on stdout ending with a
// newline, the stats on a line of their own on stderr, errors as JSON on stdout with --json,
// colour only on a terminal without NO_COLOR; `rbee run` and a piped `rbee chat` as one-shots.
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>

#include "queen/queen_fixture.h"

namespace rbee::e2e {
namespace {

const std::regex stats_line(R"((^|\n)\d+ tokens, [0-9.]+ tok/s)");

std::vector<std::string> infer_args(const std::vector<std::string>& extra = {}) {
  std::vector<std::string> a = {
      "infer",    "--node",           "localhost",    "-m", stories_model_ref(),
      "--prompt", "Once upon a time", "--max-tokens", "8"};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

// One shell word.
std::string quote(const std::string& s) {
  std::string out(1, '\'');
  for (char c : s) {
    if (c == '\'') {
      out.append("'\\''");
    } else {
      out.push_back(c);
    }
  }
  out.push_back('\'');
  return out;
}

std::string command_line(const std::vector<std::string>& args) {
  std::string line = quote(binary_path("rbee").string());
  for (const auto& a : args) {
    line.push_back(' ');
    line.append(quote(a));
  }
  return line;
}

TEST(CliOutput, PipedTextEndsWithANewlineAndStatsAreTheirOwnLineOnStderr) {
  if (!have_hive_and_worker()) GTEST_SKIP() << "rbee-hive / llm-worker-rbee are not built";
  queen_fixture q;
  q.start();
  auto r = run_cli("rbee", infer_args(), q.env());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_FALSE(r.out.empty());
  EXPECT_EQ(r.out.back(), '\n') << r.out;
  EXPECT_EQ(r.out.find("tok/s"), std::string::npos) << r.out;
  EXPECT_TRUE(std::regex_search(r.err, stats_line)) << r.err;

  // Both streams into one pipe: the stats still start a line.
  auto merged = run_cli("/bin/sh", {"-c", command_line(infer_args()) + " 2>&1"}, q.env(), "",
                        std::chrono::seconds(60));
  ASSERT_EQ(merged.exit_code, 0) << merged.out;
  EXPECT_TRUE(std::regex_search(merged.out, stats_line)) << merged.out;
}

TEST(CliOutput, JsonFailuresAreJsonOnStdout) {
  queen_fixture q;
  q.start();
  auto r =
      run_cli("rbee", {"infer", "--node", "nowhere", "-m", "m", "-p", "hi", "--json"}, q.env());
  EXPECT_EQ(r.exit_code, 1);
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.out;
  EXPECT_EQ(j["error"]["code"], "NODE_NOT_FOUND") << r.out;
  EXPECT_NE(r.err.find("Error:"), std::string::npos) << r.err;  // people still read stderr

  auto health = run_cli("rbee", {"workers", "health", "--node", "nowhere", "--json"}, q.env());
  EXPECT_EQ(health.exit_code, 1);
  EXPECT_EQ(nlohmann::json::parse(health.out)["error"]["code"], "NODE_NOT_FOUND") << health.out;

  auto plain = run_cli("rbee", {"infer", "--node", "nowhere", "-m", "m", "-p", "hi"}, q.env());
  EXPECT_TRUE(plain.out.empty()) << plain.out;
}

TEST(CliOutput, ColourOnlyOnATerminalWithoutNoColor) {
  if (!std::filesystem::exists("/usr/bin/script")) GTEST_SKIP() << "util-linux script missing";
  queen_fixture q;
  q.start();
  const std::string failing = command_line({"infer", "--node", "nowhere", "-m", "m", "-p", "hi"});
  auto env = q.env();
  env["TERM"] = "xterm";
  auto on_tty = run_cli("/usr/bin/script", {"-qefc", failing, "/dev/null"}, env);
  EXPECT_NE(on_tty.out.find("\x1b[1;31mError:"), std::string::npos) << on_tty.out;
  env["NO_COLOR"] = "1";
  auto no_color = run_cli("/usr/bin/script", {"-qefc", failing, "/dev/null"}, env);
  EXPECT_NE(no_color.out.find("Error:"), std::string::npos) << no_color.out;
  EXPECT_EQ(no_color.out.find("\x1b["), std::string::npos) << no_color.out;
  env.erase("NO_COLOR");
  auto piped = run_cli("rbee", {"infer", "--node", "nowhere", "-m", "m", "-p", "hi"}, env);
  EXPECT_EQ(piped.err.find("\x1b["), std::string::npos) << piped.err;
}

TEST(CliOutput, RunAnswersOnePromptAndPipedChatTakesLinesAsTurns) {
  if (!have_hive_and_worker()) GTEST_SKIP() << "rbee-hive / llm-worker-rbee are not built";
  queen_fixture q;
  q.start();
  auto once = run_cli("rbee", {"run", stories_model_ref(), "Once upon a time", "--max-tokens", "6"},
                      q.env());
  ASSERT_EQ(once.exit_code, 0) << once.err;
  ASSERT_FALSE(once.out.empty());
  EXPECT_EQ(once.out.back(), '\n');

  auto from_stdin = run_cli("rbee", {"run", stories_model_ref(), "-", "--max-tokens", "6"}, q.env(),
                            "Once upon a time");
  ASSERT_EQ(from_stdin.exit_code, 0) << from_stdin.err;
  EXPECT_FALSE(from_stdin.out.empty());

  auto chat = run_cli("rbee", {"chat", "-m", stories_model_ref(), "--max-tokens", "4", "--verbose"},
                      q.env(), "Once upon a time\nThe cat\n/bye\nnot sent\n");
  ASSERT_EQ(chat.exit_code, 0) << chat.err;
  // No prompts in a pipe.
  EXPECT_EQ(chat.out.find(">>>"), std::string::npos) << chat.out;
  EXPECT_EQ(chat.err.find(">>>"), std::string::npos) << chat.err;
  std::regex turn_stats(R"((\d+) prompt tokens, 4 tokens)");
  std::vector<int> prompts;
  for (std::sregex_iterator it(chat.err.begin(), chat.err.end(), turn_stats), end; it != end;
       ++it) {
    prompts.push_back(std::stoi((*it)[1]));
  }
  ASSERT_EQ(prompts.size(), 2u) << chat.err;  // "/bye" ended it before the last line
  EXPECT_GT(prompts[1], prompts[0]);          // the second turn carried the first

  auto bad = run_cli("rbee", {"chat", "-m", stories_model_ref(), "--temperature", "9"}, q.env());
  EXPECT_EQ(bad.exit_code, 2) << bad.err;
  auto unknown_node =
      run_cli("rbee", {"chat", "-m", stories_model_ref(), "--node", "nowhere"}, q.env(), "hi\n");
  EXPECT_EQ(unknown_node.exit_code, 1);
  EXPECT_NE(unknown_node.err.find("nowhere"), std::string::npos) << unknown_node.err;
}

}  // namespace
}  // namespace rbee::e2e
