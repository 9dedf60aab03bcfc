#include "cli/queen_daemon.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <vector>

#include "common/paths.h"

extern char** environ;

namespace rbee::cli {

std::optional<url_parts> parse_http_url(const std::string& url) {
  constexpr std::string_view scheme = "http://";
  if (!url.starts_with(scheme)) return std::nullopt;
  std::string rest = url.substr(scheme.size());
  if (auto slash = rest.find('/'); slash != std::string::npos) rest.resize(slash);
  url_parts parts;
  auto colon = rest.rfind(':');
  if (colon == std::string::npos || rest.back() == ']') {
    parts.host = rest;
    parts.port = 80;
  } else {
    parts.host = rest.substr(0, colon);
    try {
      parts.port = std::stoi(rest.substr(colon + 1));
    } catch (const std::exception&) {
      return std::nullopt;
    }
  }
  if (parts.host.empty() || parts.port <= 0 || parts.port > 65535) return std::nullopt;
  return parts;
}

namespace {

std::string tail_of(const std::filesystem::path& path, size_t bytes = 2000) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  return text.size() > bytes ? text.substr(text.size() - bytes) : text;
}

}  // namespace

started_queen start_queen(client::queen_client& client, const std::filesystem::path& bin_dir,
                          const std::filesystem::path& rbee_home,
                          std::chrono::milliseconds timeout) {
  auto parts = parse_http_url(client.config().queen_url);
  if (!parts) throw std::runtime_error("queen URL must be http://host:port");
  auto logs = common::ensure_dir(common::logs_dir(rbee_home));
  started_queen q;
  q.log_path = logs / "queen.log";
  std::string exe = (bin_dir / "queen-rbee").string();
  std::vector<std::string> args = {exe, "--addr", parts->host + ":" + std::to_string(parts->port)};

  int log_fd = ::open(q.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    throw std::runtime_error("cannot open " + q.log_path.string() + ": " + std::strerror(errno));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, log_fd, 1);
  posix_spawn_file_actions_adddup2(&actions, log_fd, 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // Its own session: Ctrl+C in the terminal must not reach the background daemon, and
  // the signals the CLI blocks must not stay blocked in it.
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  int rc = posix_spawn(&q.pid, exe.c_str(), &actions, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  ::close(log_fd);
  if (rc != 0) throw std::runtime_error("cannot start " + exe + ": " + std::strerror(rc));

  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!client.healthy(std::chrono::milliseconds(500))) {
    int status = 0;
    if (::waitpid(q.pid, &status, WNOHANG) == q.pid) {
      throw std::runtime_error("queen-rbee exited during start; its log (" + q.log_path.string() +
                               ") ends with:\n" + tail_of(q.log_path));
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(q.pid, SIGTERM);
      throw std::runtime_error("queen-rbee did not become healthy; its log (" +
                               q.log_path.string() + ") ends with:\n" + tail_of(q.log_path));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return q;
}

void stop_started_queen(const started_queen& queen, std::chrono::milliseconds grace) {
  if (queen.pid <= 0) return;
  ::kill(queen.pid, SIGTERM);
  auto deadline = std::chrono::steady_clock::now() + grace;
  int status = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    pid_t r = ::waitpid(queen.pid, &status, WNOHANG);
    if (r == queen.pid || (r < 0 && errno == ECHILD)) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ::kill(queen.pid, SIGKILL);
  ::waitpid(queen.pid, &status, 0);
}

}  // namespace rbee::cli
