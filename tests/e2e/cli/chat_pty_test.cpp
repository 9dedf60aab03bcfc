// `rbee chat` driven through a pseudo-terminal as a person would use it, against a real queen,
// hive and workers on stories260K: the history goes with every turn, /set and /clear change the
// next request, and Ctrl+C (typed as ^C, so the terminal sends SIGINT) stops an answer and
// returns to the prompt while the session goes on.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <regex>

#include "harness/scenario_fixture.h"

namespace rbee::e2e::scenario {
namespace {

using steady = std::chrono::steady_clock;

// A program on the child side of a pseudo-terminal; what it shows is read from the master.
class pty_program {
 public:
  pty_program(const std::string& binary, const std::vector<std::string>& args,
              const std::map<std::string, std::string>& env) {
    const std::string path = binary_path(binary).string();
    std::vector<std::string> argv_text = {path};
    argv_text.insert(argv_text.end(), args.begin(), args.end());
    pid_ = ::forkpty(&master_, nullptr, nullptr, nullptr);
    if (pid_ == 0) {
      for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
      std::vector<char*> argv;
      for (auto& a : argv_text) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(path.c_str(), argv.data());
      ::_exit(127);
    }
  }
  ~pty_program() {
    if (pid_ > 0 && !status_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (master_ >= 0) ::close(master_);
  }
  pty_program(const pty_program&) = delete;
  pty_program& operator=(const pty_program&) = delete;

  bool started() const { return pid_ > 0 && master_ >= 0; }
  void type(const std::string& keys) {
    ASSERT_EQ(::write(master_, keys.data(), keys.size()), static_cast<ssize_t>(keys.size()));
  }

  // Reads until the text shown since `from` matches, or timeout; true when it matched.
  bool wait_for(const std::regex& pattern, std::chrono::milliseconds timeout,
                size_t from = std::string::npos) {
    if (from == std::string::npos) from = mark_;
    const auto deadline = steady::now() + timeout;
    for (;;) {
      if (std::regex_search(screen_.substr(from), pattern)) return true;
      if (steady::now() >= deadline || !read_some(50)) {
        if (steady::now() >= deadline) return false;
      }
    }
  }
  bool wait_for(const std::string& text, std::chrono::milliseconds timeout) {
    return wait_for(
        std::regex(std::regex_replace(text, std::regex(R"([.^$|()\[\]{}*+?\\])"), R"(\$&)")),
        timeout);
  }
  // Where the next wait_for starts reading (after everything shown so far).
  void mark() {
    while (read_some(0)) {
    }
    mark_ = screen_.size();
  }
  size_t position() const { return screen_.size(); }
  const std::string& screen() const { return screen_; }
  std::string since(size_t pos) const { return screen_.substr(pos); }

  std::optional<int> wait_exit(std::chrono::milliseconds timeout) {
    const auto deadline = steady::now() + timeout;
    while (!status_ && steady::now() < deadline) {
      read_some(20);
      int st = 0;
      if (::waitpid(pid_, &st, WNOHANG) == pid_) {
        status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      }
    }
    return status_;
  }

 private:
  bool read_some(int timeout_ms) {
    pollfd p{.fd = master_, .events = POLLIN, .revents = 0};
    if (::poll(&p, 1, timeout_ms) <= 0) return false;
    char buf[4096];
    ssize_t n = ::read(master_, buf, sizeof buf);
    if (n <= 0) return false;
    screen_.append(buf, static_cast<size_t>(n));
    return true;
  }

  pid_t pid_ = -1;
  int master_ = -1;
  std::string screen_;
  size_t mark_ = 0;
  std::optional<int> status_;
};

// The stats line `rbee chat --verbose` prints after each answer.
const std::regex stats_line(R"((\d+) prompt tokens, (\d+) tokens, )");
const std::regex prompt_line(R"(>>> $)");

struct answer_stats {
  int prompt_tokens = -1;
  int tokens = -1;
};

// Types one message and waits for its stats line and the next prompt.
answer_stats say(pty_program& chat, const std::string& text) {
  chat.mark();
  const size_t from = chat.position();
  chat.type(text + "\r");
  answer_stats stats;
  if (!chat.wait_for(stats_line, 60s) || !chat.wait_for(prompt_line, 10s)) return stats;
  std::smatch m;
  std::string shown = chat.since(from);
  if (std::regex_search(shown, m, stats_line)) {
    stats.prompt_tokens = std::stoi(m[1]);
    stats.tokens = std::stoi(m[2]);
  }
  return stats;
}

std::map<std::string, std::string> chat_env(const scenario_queen& q) {
  auto env = q.env();
  env["NO_COLOR"] = "1";
  env["TERM"] = "xterm";
  return env;
}

TEST(ChatPty, HistoryGoesWithEachTurnAndSetAndClearChangeTheNextRequest) {
  scenario_queen q;
  q.start();
  pty_program chat(
      "rbee",
      {"chat", "-m", stories_ref(), "--verbose", "--temperature", "0", "--max-tokens", "12"},
      chat_env(q));
  ASSERT_TRUE(chat.started());
  ASSERT_TRUE(chat.wait_for(prompt_line, 120s)) << chat.screen() << q.logs();

  const answer_stats first = say(chat, "Once upon a time");
  ASSERT_GT(first.prompt_tokens, 0) << chat.screen();
  ASSERT_GT(first.tokens, 0) << chat.screen();

  chat.mark();
  chat.type("/set max_tokens 3\r");
  ASSERT_TRUE(chat.wait_for("Set max_tokens to 3.", 10s)) << chat.screen();
  const answer_stats second = say(chat, "The cat");
  EXPECT_EQ(second.tokens, 3) << chat.screen();  // the parameter reached the worker

  auto clear = [&] {
    chat.mark();
    chat.type("/clear\r");
    ASSERT_TRUE(chat.wait_for("Conversation cleared.", 10s)) << chat.screen();
  };
  clear();
  const answer_stats alone = say(chat, "The cat");
  // The same message without the history is the shorter prompt by at least the first turn.
  EXPECT_GE(second.prompt_tokens - alone.prompt_tokens, first.prompt_tokens / 2) << chat.screen();
  clear();
  const answer_stats again = say(chat, "Once upon a time");
  EXPECT_EQ(again.prompt_tokens, first.prompt_tokens) << chat.screen();

  // A message of several lines is one turn: one answer, after the continuation prompts.
  clear();
  chat.mark();
  const size_t block_start = chat.position();
  chat.type("\"\"\"\rOnce upon\r");
  ASSERT_TRUE(chat.wait_for(std::regex(R"(\.\.\. $)"), 10s)) << chat.screen();
  chat.type("a time\r\"\"\"\r");
  ASSERT_TRUE(chat.wait_for(stats_line, 60s)) << chat.screen();
  ASSERT_TRUE(chat.wait_for(prompt_line, 10s)) << chat.screen();
  const std::string block = chat.since(block_start);
  std::smatch m;
  ASSERT_TRUE(std::regex_search(block, m, stats_line)) << block;
  EXPECT_EQ(std::distance(std::sregex_iterator(block.begin(), block.end(), stats_line),
                          std::sregex_iterator()),
            1)
      << block;
  // The same words on two lines make a longer prompt than "Once upon a time" on one line.
  EXPECT_GE(std::stoi(m[1]), first.prompt_tokens) << block;

  // An out-of-range value is refused with the contract's limits; the session goes on.
  chat.mark();
  chat.type("/set temperature 9\r");
  EXPECT_TRUE(chat.wait_for("between 0.0 and 2.0", 10s)) << chat.screen();
  chat.type("/bye\r");
  EXPECT_EQ(chat.wait_exit(15s), 0) << chat.screen();
}

TEST(ChatPty, CtrlCStopsTheAnswerAndTheSessionGoesOn) {
  scenario_queen q;
  q.start();
  q.start_own_hive({"--worker-arg=--debug-step-delay-ms=100"});  // a slow answer to interrupt
  pty_program chat("rbee", {"chat", "-m", stories_ref(), "--verbose", "--max-tokens", "300"},
                   chat_env(q));
  ASSERT_TRUE(chat.started());
  ASSERT_TRUE(chat.wait_for(prompt_line, 120s)) << chat.screen() << q.logs();

  chat.mark();
  chat.type("Once upon a time\r");
  auto slots_busy = [&] {
    auto workers = q.workers();
    return workers.empty() ? -1 : workers[0].value("slots_busy", -1);
  };
  ASSERT_TRUE(eventually([&] { return slots_busy() == 1; }, 30s)) << chat.screen();
  std::this_thread::sleep_for(500ms);
  chat.type("\x03");  // Ctrl+C: the terminal sends SIGINT
  EXPECT_TRUE(chat.wait_for("(answer stopped)", 10s)) << chat.screen();
  EXPECT_TRUE(chat.wait_for(prompt_line, 10s)) << chat.screen();
  // The queen saw the stream end: the worker's slot is free well before 300 tokens.
  EXPECT_TRUE(eventually([&] { return slots_busy() == 0; }, 10s)) << q.workers().dump();

  // Ctrl+C at the prompt keeps the session too.
  chat.mark();
  chat.type("\x03");
  EXPECT_TRUE(chat.wait_for("/bye to leave", 10s)) << chat.screen();

  chat.type("/set max_tokens 2\r");
  ASSERT_TRUE(chat.wait_for("Set max_tokens to 2.", 10s)) << chat.screen();
  const answer_stats after = say(chat, "The cat");
  EXPECT_EQ(after.tokens, 2) << chat.screen();
  chat.type("\x04");  // Ctrl+D at an empty prompt leaves
  EXPECT_EQ(chat.wait_exit(15s), 0) << chat.screen();
}

}  // namespace
}  // namespace rbee::e2e::scenario
