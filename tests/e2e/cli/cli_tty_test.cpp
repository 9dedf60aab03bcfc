// `rbee infer` driven through a pseudo-terminal (util-linux `script`): on a terminal the
// download and loading phases draw one redrawn progress bar each, which ends at 100 % and is
// closed by a newline before the next line; without a terminal the same run prints plain lines.
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>
#include <string>

#include "harness/hub_server.h"
#include "queen/queen_fixture.h"

namespace rbee::e2e {
namespace {

// A model big enough (6.8 MB) that the slowed-down hub yields several progress events.
const char* const hub_repo = "rbee-test/synth";
const char* const hub_file = "synth-tiny-f16.gguf";

// One shell word for `script -c`: single quotes, with embedded quotes closed and escaped.
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

// What a terminal finally shows of the redrawn line holding `pos`: the text after the last
// carriage return before its end (the terminal turns "\n" into "\r\n", which is skipped).
std::string final_line_at(const std::string& text, size_t pos) {
  size_t end = text.find('\n', pos);
  if (end == std::string::npos) end = text.size();
  if (end > pos && text[end - 1] == '\r') --end;
  size_t start = text.rfind('\r', end - 1);
  return text.substr(start + 1, end - start - 1);
}

TEST(CliTty, ProgressBarsRenderOnATerminalAndEndCleanly) {
  if (!have_hive_and_worker()) GTEST_SKIP() << "rbee-hive / llm-worker-rbee are not built";
  if (!std::filesystem::exists("/usr/bin/script")) GTEST_SKIP() << "util-linux script missing";
  hub_server hub;
  hub.add_file(hub_repo, hub_file, std::string(RBEE_SHARED_MODELS_DIR) + "/" + hub_file);
  hub_fault slow;
  slow.chunk_delay = std::chrono::milliseconds(20);
  hub.set_fault(hub_repo, hub_file, slow);
  hub.start();

  queen_fixture q;
  q.start({}, {{"HF_ENDPOINT", hub.url()}});
  std::string command = binary_path("rbee").string();
  const std::vector<std::string> args = {"infer",
                                         "--node",
                                         "localhost",
                                         "--model",
                                         std::string("hf:") + hub_repo + ":" + hub_file,
                                         "--prompt",
                                         "Once upon a time",
                                         "--max-tokens",
                                         "8"};
  for (const auto& arg : args) {
    command.push_back(' ');
    command.append(quote(arg));
  }
  auto env = q.env();
  env["HF_ENDPOINT"] = hub.url();
  // `script` gives the command a terminal on stdin/stdout/stderr and copies what it shows.
  auto r = run_cli("/usr/bin/script", {"-qefc", command, "/dev/null"}, env, "",
                   std::chrono::seconds(120));
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const std::string& screen = r.out;

  size_t download = screen.find("Downloading [");
  ASSERT_NE(download, std::string::npos) << screen;
  // Redrawn in place: several frames of the same line, the last one full and closed.
  EXPECT_GE(std::count(screen.begin() + download, screen.end(), '\r'), 3) << screen;
  std::string download_done = final_line_at(screen, download);
  EXPECT_NE(download_done.find("100%"), std::string::npos) << download_done;
  EXPECT_NE(download_done.find("MB/s"), std::string::npos) << download_done;
  // While it runs, the bar says how long is left.
  EXPECT_TRUE(std::regex_search(screen.substr(download), std::regex(R"(MB/s, \d+s left)")))
      << screen;

  size_t loading = screen.find("Loading     [");
  ASSERT_NE(loading, std::string::npos) << screen;
  EXPECT_NE(final_line_at(screen, loading).find("100%"), std::string::npos) << screen;
  // The stats line comes after the bars, on a line of its own.
  size_t stats = screen.find("tok/s");
  ASSERT_NE(stats, std::string::npos) << screen;
  EXPECT_GT(stats, loading);

  // Without a terminal (warm now, so run a cold one on another model): plain lines, no bars.
  auto plain = run_cli("rbee",
                       {"infer", "--node", "localhost", "--model", stories_model_ref(), "--prompt",
                        "Once upon a time", "--max-tokens", "4"},
                       q.env());
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  EXPECT_EQ(plain.err.find('\r'), std::string::npos) << plain.err;
  EXPECT_EQ(plain.err.find("\x1b[K"), std::string::npos) << plain.err;
}

}  // namespace
}  // namespace rbee::e2e
