// `rbee infer` driven through a pseudo-terminal (util-linux `script`): on a terminal the
// download and loading phases draw one redrawn progress bar each, which ends at 100 % and is
// closed by a newline before the next line; without a terminal the same run prints plain lines.
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>
#include <string>
#include <vector>

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
// carriage return before its end (the terminal turns "\n" into "\r\n", which is skipped),
// less the erase-line code that may start it.
std::string final_line_at(const std::string& text, size_t pos) {
  size_t end = text.find('\n', pos);
  if (end == std::string::npos) end = text.size();
  if (end > pos && text[end - 1] == '\r') --end;
  size_t start = text.rfind('\r', end - 1) + 1;
  if (text.compare(start, 3, "\x1b[K") == 0) start += 3;
  return text.substr(start, end - start);
}

// `rbee infer` of the hub model with a terminal on stdin/stdout/stderr (`script` copies what
// the terminal shows to its stdout).
cli_result infer_on_a_terminal(queen_fixture& q, const hub_server& hub) {
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
  return run_cli("/usr/bin/script", {"-qefc", command, "/dev/null"}, env, "",
                 std::chrono::seconds(120));
}

// A download over before the hive's first speed report (a local mirror) ends its bar at 100 %
// without claiming 0.0 MB/s.
TEST(CliTty, AFastDownloadsBarShowsNoSpeedItDoesNotKnow) {
  if (!have_hive_and_worker()) GTEST_SKIP() << "rbee-hive / llm-worker-rbee are not built";
  if (!std::filesystem::exists("/usr/bin/script")) GTEST_SKIP() << "util-linux script missing";
  hub_server hub;
  hub.add_file(hub_repo, hub_file, std::string(RBEE_SHARED_MODELS_DIR) + "/" + hub_file);
  hub.start();
  queen_fixture q;
  q.start({}, {{"HF_ENDPOINT", hub.url()}});
  auto r = infer_on_a_terminal(q, hub);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const size_t download = r.out.rfind("Downloading [");
  ASSERT_NE(download, std::string::npos) << r.out;
  const std::string done = final_line_at(r.out, download);
  EXPECT_NE(done.find("100%"), std::string::npos) << done;
  EXPECT_EQ(done.find(" 0.0 MB/s"), std::string::npos) << done;
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
  auto r = infer_on_a_terminal(q, hub);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const std::string& screen = r.out;

  size_t download = screen.find("Downloading [");
  ASSERT_NE(download, std::string::npos) << screen;
  // Redrawn in place: several frames of the same line, the last one full and closed (the
  // hive's notes print above the bar, which is then drawn again on the next line).
  EXPECT_GE(std::count(screen.begin() + download, screen.end(), '\r'), 3) << screen;
  std::string download_done = final_line_at(screen, screen.rfind("Downloading ["));
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

// A transfer the hub drops is resumed by the hive; the CLI prints why above the running bar,
// which goes on from where it was and still ends at 100 %.
TEST(CliTty, AResumedDownloadSaysWhyAboveTheBar) {
  if (!have_hive_and_worker()) GTEST_SKIP() << "rbee-hive / llm-worker-rbee are not built";
  if (!std::filesystem::exists("/usr/bin/script")) GTEST_SKIP() << "util-linux script missing";
  const std::string model_path = std::string(RBEE_SHARED_MODELS_DIR) + "/" + hub_file;
  hub_server hub;
  hub.add_file(hub_repo, hub_file, model_path);
  hub_fault dropped;
  dropped.chunk_delay = std::chrono::milliseconds(20);
  dropped.drop_at_byte = std::filesystem::file_size(model_path) / 2;
  dropped.drop_attempts = 1;
  hub.set_fault(hub_repo, hub_file, dropped);
  hub.start();

  queen_fixture q;
  q.start({}, {{"HF_ENDPOINT", hub.url()}, {"RBEE_DOWNLOAD_BACKOFF_MS", "50"}});
  auto r = infer_on_a_terminal(q, hub);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const std::string& screen = r.out;

  size_t note = screen.find("Transfer failed (");
  ASSERT_NE(note, std::string::npos) << screen;
  // The note is a line of its own (the bar was cleared before it), with the cause and where
  // the transfer starts again.
  std::string note_line = final_line_at(screen, note);
  EXPECT_EQ(note_line.rfind("Transfer failed (", 0), 0u) << note_line;
  EXPECT_NE(note_line.find("resuming at "), std::string::npos) << note_line;
  EXPECT_EQ(note_line.find("Downloading ["), std::string::npos) << note_line;
  // The bar is drawn again below the note and ends at 100 %; no cut-off bar stays behind.
  ASSERT_NE(screen.find("Downloading [", note), std::string::npos) << screen;
  std::vector<std::string> bars_shown;
  for (size_t line = 0; line < screen.size(); line = screen.find('\n', line) + 1) {
    std::string shown = final_line_at(screen, line);
    if (shown.rfind("Downloading [", 0) == 0) bars_shown.push_back(shown);
    if (screen.find('\n', line) == std::string::npos) break;
  }
  ASSERT_EQ(bars_shown.size(), 1u) << screen;
  EXPECT_NE(bars_shown[0].find("100%"), std::string::npos) << bars_shown[0];
}

}  // namespace
}  // namespace rbee::e2e
