#include "harness/daemon.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "common/http_client.h"

extern char** environ;

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace rbee::e2e {

namespace {

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string tail(const std::string& text, size_t max_chars) {
  return text.size() <= max_chars ? text : "..." + text.substr(text.size() - max_chars);
}

std::string resolve(const std::string& binary) {
  return binary.find('/') == std::string::npos ? binary_path(binary).string() : binary;
}

// A temp file for captured output, unlinked by the destructor.
struct capture_file {
  std::string path = "/tmp/rbee-cli-XXXXXX";
  int fd = -1;
  capture_file() {
    fd = ::mkstemp(path.data());
    if (fd < 0) throw std::runtime_error("run_cli: mkstemp: " + std::string(std::strerror(errno)));
  }
  ~capture_file() {
    ::close(fd);
    ::unlink(path.c_str());
  }
};

}  // namespace

std::filesystem::path binary_path(const std::string& name) {
  const char* env = std::getenv("RBEE_BIN_DIR");
  std::filesystem::path dir = env && *env ? env : RBEE_BIN_DIR;
  return dir / name;
}

std::optional<std::filesystem::path> find_in_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  if (!path) return std::nullopt;
  std::string_view rest = path;
  while (!rest.empty()) {
    auto colon = rest.find(':');
    std::string dir(rest.substr(0, colon));
    rest = colon == std::string_view::npos ? std::string_view() : rest.substr(colon + 1);
    std::filesystem::path candidate = std::filesystem::path(dir) / name;
    if (!dir.empty() && ::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return std::nullopt;
}

daemon_process::daemon_process(const std::string& binary, std::vector<std::string> args,
                               std::map<std::string, std::string> env,
                               std::filesystem::path log_path)
    : log_path_(std::move(log_path)) {
  std::filesystem::create_directories(log_path_.parent_path());
  common::process_spec spec;
  spec.executable = resolve(binary);
  spec.args = std::move(args);
  spec.env = std::move(env);
  spec.log_path = log_path_.string();
  child_ = common::child_process::spawn(spec);
}

daemon_process::~daemon_process() {
  stop();
}

void daemon_process::wait_healthy(int port, const std::string& url_path,
                                  std::chrono::milliseconds timeout) {
  wait_healthy_url("http://127.0.0.1:" + std::to_string(port), url_path, timeout);
}

void daemon_process::wait_healthy_url(const std::string& base_url, const std::string& url_path,
                                      std::chrono::milliseconds timeout) {
  common::client_options options;
  options.connect_timeout = std::chrono::milliseconds(500);
  options.read_timeout = std::chrono::milliseconds(2000);
  common::http_client client(base_url, options);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string last = "no answer yet";
  while (std::chrono::steady_clock::now() < deadline) {
    if (auto status = exit_status()) {
      throw std::runtime_error("daemon exited with status " + std::to_string(*status) + " before " +
                               base_url + url_path + " was healthy; log:\n" +
                               tail(log_text(), 4000));
    }
    try {
      auto res = client.get(url_path);
      if (res.status == 200) return;
      last = "HTTP " + std::to_string(res.status) + ": " + res.body;
    } catch (const common::connection_error& e) {
      last = e.what();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  throw std::runtime_error("daemon not healthy at " + base_url + url_path + " after " +
                           std::to_string(timeout.count()) + " ms (" + last + "); log:\n" +
                           tail(log_text(), 4000));
}

int daemon_process::stop(std::chrono::milliseconds grace) {
  if (!status_ && child_.valid()) status_ = child_.stop(grace);
  return status_.value_or(-1);
}

bool daemon_process::running() {
  return !exit_status();
}

std::optional<int> daemon_process::exit_status() {
  if (!status_ && child_.valid()) status_ = child_.try_wait();
  return status_;
}

std::string daemon_process::log_text() const {
  return read_file(log_path_);
}

cli_result run_cli(const std::string& binary, const std::vector<std::string>& args,
                   const std::map<std::string, std::string>& env, const std::string& stdin_text,
                   std::chrono::milliseconds timeout) {
  std::string exe = resolve(binary);
  capture_file out, err;
  int in_pipe[2];
  if (::pipe2(in_pipe, O_CLOEXEC) != 0) {
    throw std::runtime_error("run_cli: pipe: " + std::string(std::strerror(errno)));
  }

  std::vector<std::string> argv_storage{exe};
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_storage) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_storage;
  for (char** e = environ; e && *e; ++e) {
    std::string entry(*e);
    if (!env.contains(entry.substr(0, entry.find('=')))) env_storage.push_back(entry);
  }
  for (const auto& [k, v] : env) env_storage.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& e : env_storage) envp.push_back(e.data());
  envp.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in_pipe[0], STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&actions, out.fd, STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, err.fd, STDERR_FILENO);
  pid_t pid = -1;
  int rc = ::posix_spawn(&pid, exe.c_str(), &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  ::close(in_pipe[0]);
  if (rc != 0) {
    ::close(in_pipe[1]);
    throw std::runtime_error("run_cli: cannot start " + exe + ": " + std::strerror(rc));
  }

  // A CLI that exits without reading stdin must not kill the test with SIGPIPE.
  ::signal(SIGPIPE, SIG_IGN);
  size_t off = 0;
  while (off < stdin_text.size()) {
    ssize_t n = ::write(in_pipe[1], stdin_text.data() + off, stdin_text.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  ::close(in_pipe[1]);

  cli_result result;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  while (true) {
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) {
      throw std::runtime_error("run_cli: waitpid: " + std::string(std::strerror(errno)));
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      result.timed_out = true;
      ::kill(pid, SIGKILL);
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  result.exit_code = result.timed_out ? 124 : common::decode_wait_status(status);
  result.out = read_file(out.path);
  result.err = read_file(err.path);
  return result;
}

bool cli_result::took_step(const std::string& action) const {
  auto result = nlohmann::json::parse(out, nullptr, false);
  if (!result.is_object() || !result.contains("steps") || !result["steps"].is_array()) {
    ADD_FAILURE() << "not the output of `rbee infer --json`: " << out;
    return false;
  }
  const auto& steps = result["steps"];
  return std::find(steps.begin(), steps.end(), action) != steps.end();
}

}  // namespace rbee::e2e
