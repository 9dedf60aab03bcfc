#pragma once
// Remote nodes are reached with the system's OpenSSH client, exec'd with an argv (never a shell
// string built from user input). Host and user strings are validated; remote commands are
// built by quoting every argument for the remote POSIX shell. The ssh_runner interface lets
// unit tests replace the real client.

#include <chrono>
#include <filesystem>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace rbee::queen {

struct ssh_target {
  std::string host;
  int port = 22;
  std::string user;
  std::string key_path;  // empty = ssh's default identities
};

// Hostnames, IPv4/IPv6 literals: letters, digits, '.', '-', '_', ':' and no leading '-'.
bool is_safe_ssh_host(std::string_view host);
// POSIX user names: letters, digits, '.', '-', '_' and no leading '-'.
bool is_safe_ssh_user(std::string_view user);
// Throws std::invalid_argument naming the field (ssh_host, ssh_user, ssh_port, ssh_key_path).
void validate_ssh_target(const ssh_target& target);

// One argument quoted for a POSIX shell: 'it'\''s' style; safe for any byte string.
std::string shell_quote(std::string_view arg);
// argv quoted and joined with spaces: the remote command line ssh hands to the remote shell.
std::string remote_command(const std::vector<std::string>& argv);

struct ssh_options {
  std::filesystem::path rbee_home;  // known_hosts and the ControlMaster sockets live here
  int connect_timeout_s = 10;
  int attempts = 3;  // total tries for transient failures (timeout, unreachable)
  std::chrono::milliseconds initial_backoff{1000};
  std::chrono::seconds command_timeout{300};  // whole-command limit
};

// The full argv of `ssh` (argv[0] = "ssh") running `command` on target.
std::vector<std::string> ssh_argv(const ssh_target& target, const ssh_options& options,
                                  const std::string& command);
// The full argv of `ssh -O exit` for target: ends its connection multiplexer (ControlMaster)
// without connecting anywhere.
std::vector<std::string> ssh_exit_master_argv(const ssh_target& target, const ssh_options& options);
// Install paths on a node, checked when a node is added and again before each use (rows saved
// earlier were not): absolute, at most 1024 characters of letters, digits and / . - _ + @,
// no "." or ".." segments. Throws std::invalid_argument naming install_path.
void validate_install_path(std::string_view path);

// The remote command that writes its stdin to remote_path (created or truncated). The path is
// quoted: it never reaches the remote shell as syntax.
std::string copy_command(const std::string& remote_path);

struct ssh_result {
  int exit_code = -1;  // 255 = ssh itself failed; 124 = our timeout
  std::string out;
  std::string err;
  bool ok() const { return exit_code == 0; }
};

enum class ssh_failure {
  none,
  timeout,
  unreachable,
  auth,
  host_key_changed,
  command_not_found,
  other
};
std::string_view to_string(ssh_failure f);

struct ssh_diagnosis {
  ssh_failure kind = ssh_failure::none;
  std::string message;  // names the host and the cause
  std::string hint;
};

// Maps ssh's exit code and stderr to a cause.
ssh_diagnosis diagnose_ssh(const ssh_result& result, const ssh_target& target);
// Timeouts and unreachable hosts are worth another attempt; the rest are not.
bool is_transient(ssh_failure kind);

class ssh_error : public std::runtime_error {
 public:
  explicit ssh_error(ssh_diagnosis d) : std::runtime_error(d.message), diagnosis_(std::move(d)) {}
  const ssh_diagnosis& diagnosis() const { return diagnosis_; }

 private:
  ssh_diagnosis diagnosis_;
};

struct ssh_runner {
  virtual ~ssh_runner() = default;
  // Runs command (already quoted, see remote_command) on target; stdin_data is fed to it.
  virtual ssh_result run(const ssh_target& target, const std::string& command,
                         const std::string& stdin_data) = 0;
  // Copies a local file to remote_path (a failed copy may leave part of it there).
  virtual ssh_result copy(const ssh_target& target, const std::string& local_path,
                          const std::string& remote_path) = 0;
  // Ends the connection kept open for target, if any (runners without one have nothing to do).
  virtual void close_master(const ssh_target& /*target*/) {}
};

// Exec's the system ssh (binary overridable for tests). Copies go through ssh too, as
// copy_command with the file on stdin: scp's legacy protocol (-O, all a node without the sftp
// subsystem speaks) would hand the remote path to the remote shell unquoted.
class openssh_runner : public ssh_runner {
 public:
  explicit openssh_runner(ssh_options options, std::string ssh_binary = "ssh");
  ssh_result run(const ssh_target& target, const std::string& command,
                 const std::string& stdin_data) override;
  ssh_result copy(const ssh_target& target, const std::string& local_path,
                  const std::string& remote_path) override;
  void close_master(const ssh_target& target) override;
  const ssh_options& options() const { return options_; }

 private:
  ssh_options options_;
  std::string ssh_binary_;
};

// Runs argv (no shell, common::run_captured: the child's environment holds none of the queen's
// secrets), feeding stdin_data, capturing stdout/stderr; kills it and its process group after
// timeout (exit_code 124). An exec failure gives exit_code 127 with the cause in err.
ssh_result run_process(const std::vector<std::string>& argv, const std::string& stdin_data,
                       std::chrono::milliseconds timeout);
// run_process with the child's stdin read from a file; exit_code 1 with the cause in err when
// the file cannot be opened.
ssh_result run_process_from_file(const std::vector<std::string>& argv,
                                 const std::filesystem::path& stdin_file,
                                 std::chrono::milliseconds timeout);

using ssh_sleep_fn = std::function<void(std::chrono::milliseconds)>;

// Validates target (std::invalid_argument), then runs with retries on transient failures
// (attempts/backoff from options). Any non-zero exit throws ssh_error with the diagnosis of
// the last attempt. on_retry is told about each retry.
ssh_result run_ssh(ssh_runner& runner, const ssh_target& target, const ssh_options& options,
                   const std::string& command, const std::string& stdin_data = "",
                   const std::function<void(int attempt, const ssh_diagnosis&)>& on_retry = {},
                   const ssh_sleep_fn& sleep = {});

}  // namespace rbee::queen
