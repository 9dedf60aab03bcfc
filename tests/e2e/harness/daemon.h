#pragma once
// Real binaries for end-to-end tests: daemons in the background with their log in a file,
// and one-shot CLI runs with stdout/stderr captured separately.

#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/process.h"

namespace rbee::e2e {

// Absolute path of a built binary: $RBEE_BIN_DIR (env) else the compile-time RBEE_BIN_DIR.
std::filesystem::path binary_path(const std::string& name);
// An executable on $PATH (node, chromium, ...); nullopt when there is none.
std::optional<std::filesystem::path> find_in_path(const std::string& name);

class daemon_process {
 public:
  // Starts `binary` (a name in the bin dir, or a path) with args and env added to the test's
  // environment; stdout+stderr go to log_path. Throws if it cannot be started.
  daemon_process(const std::string& binary, std::vector<std::string> args,
                 std::map<std::string, std::string> env, std::filesystem::path log_path);
  ~daemon_process();  // stop()
  daemon_process(const daemon_process&) = delete;
  daemon_process& operator=(const daemon_process&) = delete;

  // Polls http://127.0.0.1:port + url_path until it answers 200. Throws std::runtime_error with
  // the log's tail when the process exits or the timeout passes.
  void wait_healthy(int port, const std::string& url_path,
                    std::chrono::milliseconds timeout = std::chrono::seconds(30));
  // Same with a full base URL ("http://127.0.0.1:9200").
  void wait_healthy_url(const std::string& base_url, const std::string& url_path,
                        std::chrono::milliseconds timeout = std::chrono::seconds(30));

  // SIGTERM, then SIGKILL after grace; returns the exit status (see child_process::stop).
  int stop(std::chrono::milliseconds grace = std::chrono::seconds(10));
  bool running();
  std::optional<int> exit_status();  // nullopt while running
  pid_t pid() const { return child_.pid(); }
  std::string log_text() const;
  const std::filesystem::path& log_path() const { return log_path_; }

 private:
  common::child_process child_;
  std::filesystem::path log_path_;
  std::optional<int> status_;
};

struct cli_result {
  int exit_code = -1;  // 128+signal when killed; 124 when the timeout killed it
  std::string out{};
  std::string err{};
  bool timed_out = false;

  // For `rbee infer --json`: whether the task went through a narration action ("hive_start",
  // "worker_spawn", ...). Tests check actions, not the narration's wording.
  bool took_step(const std::string& action) const;
  // What `rbee infer` generated: stdout without the newline the CLI ends the text with.
  std::string text() const {
    return !out.empty() && out.back() == '\n' ? out.substr(0, out.size() - 1) : out;
  }
};

// Runs binary (name in the bin dir, or a path) to completion. env is added to the test's
// environment; stdin_text is written then stdin is closed.
cli_result run_cli(const std::string& binary, const std::vector<std::string>& args,
                   const std::map<std::string, std::string>& env = {},
                   const std::string& stdin_text = "",
                   std::chrono::milliseconds timeout = std::chrono::seconds(60));

}  // namespace rbee::e2e
