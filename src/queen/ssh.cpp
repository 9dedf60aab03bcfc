#include "queen/ssh.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

#include <spdlog/spdlog.h>

#include "common/process.h"

namespace rbee::queen {

namespace {

bool safe_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '-' || c == '_';
}

bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

std::string first_line(std::string_view text) {
  while (!text.empty() && (text.front() == '\n' || text.front() == '\r')) text.remove_prefix(1);
  auto end = text.find_first_of("\r\n");
  return std::string(text.substr(0, end));
}

// Last non-empty stderr line: ssh prints its own diagnosis last.
std::string last_line(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.remove_suffix(1);
  auto start = text.find_last_of("\r\n");
  return std::string(start == std::string_view::npos ? text : text.substr(start + 1));
}

}  // namespace

bool is_safe_ssh_host(std::string_view host) {
  if (host.empty() || host.size() > 253 || host.front() == '-') return false;
  for (char c : host) {
    if (!safe_name_char(c) && c != ':') return false;
  }
  return true;
}

bool is_safe_ssh_user(std::string_view user) {
  if (user.empty() || user.size() > 64 || user.front() == '-') return false;
  for (char c : user) {
    if (!safe_name_char(c)) return false;
  }
  return true;
}

void validate_ssh_target(const ssh_target& target) {
  if (!is_safe_ssh_host(target.host)) {
    throw std::invalid_argument("ssh_host '" + target.host +
                                "' is not a valid host name (letters, digits, '.', '-', '_', ':' "
                                "only, not starting with '-')");
  }
  if (!is_safe_ssh_user(target.user)) {
    throw std::invalid_argument("ssh_user '" + target.user +
                                "' is not a valid user name (letters, digits, '.', '-', '_' only, "
                                "not starting with '-')");
  }
  if (target.port < 1 || target.port > 65535) {
    throw std::invalid_argument("ssh_port " + std::to_string(target.port) +
                                " is out of range (1-65535)");
  }
  if (!target.key_path.empty() &&
      (target.key_path.front() == '-' || target.key_path.find('\0') != std::string::npos)) {
    throw std::invalid_argument("ssh_key_path must be a path, not an option");
  }
}

void validate_install_path(std::string_view path) {
  constexpr size_t max_len = 1024;
  auto reject = [&](std::string_view why) {
    throw std::invalid_argument("install_path '" + std::string(path.substr(0, 200)) + "' " +
                                std::string(why));
  };
  if (path.empty() || path.front() != '/') reject("must be an absolute path");
  if (path.size() > max_len) reject("is longer than 1024 characters");
  for (char c : path) {
    if (!safe_name_char(c) && c != '/' && c != '+' && c != '@') {
      reject("may only contain letters, digits and / . - _ + @");
    }
  }
  for (size_t start = 1; start <= path.size();) {
    size_t end = std::min(path.find('/', start), path.size());
    auto segment = path.substr(start, end - start);
    if (segment == "." || segment == "..") reject("may not contain '.' or '..' segments");
    start = end + 1;
  }
}

std::string copy_command(const std::string& remote_path) {
  return "cat > " + shell_quote(remote_path);
}

std::string shell_quote(std::string_view arg) {
  std::string out = "'";
  for (char c : arg) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  out += '\'';
  return out;
}

std::string remote_command(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& arg : argv) {
    if (!out.empty()) out += ' ';
    out += shell_quote(arg);
  }
  return out;
}

namespace {

std::vector<std::string> common_options(const ssh_target& target, const ssh_options& options) {
  std::vector<std::string> argv = {
      "-o", "BatchMode=yes", "-o", "ConnectTimeout=" + std::to_string(options.connect_timeout_s),
      "-o", "StrictHostKeyChecking=accept-new", "-o",
      "UserKnownHostsFile=" + (options.rbee_home / "known_hosts").string(),
      // Reuse one connection per node for the many short commands of install/start.
      "-o", "ControlMaster=auto", "-o",
      "ControlPath=" + (options.rbee_home / "ssh" / "cm-%C").string(), "-o", "ControlPersist=60",
      "-p", std::to_string(target.port)};
  if (!target.key_path.empty()) {
    argv.push_back("-i");
    argv.push_back(target.key_path);
  }
  return argv;
}

}  // namespace

std::vector<std::string> ssh_argv(const ssh_target& target, const ssh_options& options,
                                  const std::string& command) {
  std::vector<std::string> argv = {"ssh"};
  auto opts = common_options(target, options);
  argv.insert(argv.end(), opts.begin(), opts.end());
  argv.push_back("-l");
  argv.push_back(target.user);
  // "--" ends ssh's options: the host can never be read as one.
  argv.push_back("--");
  argv.push_back(target.host);
  argv.push_back(command);
  return argv;
}

std::vector<std::string> ssh_exit_master_argv(const ssh_target& target,
                                              const ssh_options& options) {
  std::vector<std::string> argv = {"ssh"};
  auto opts = common_options(target, options);
  argv.insert(argv.end(), opts.begin(), opts.end());
  argv.insert(argv.end(), {"-O", "exit", "-l", target.user, "--", target.host});
  return argv;
}

std::string_view to_string(ssh_failure f) {
  switch (f) {
    case ssh_failure::none:
      return "none";
    case ssh_failure::timeout:
      return "timeout";
    case ssh_failure::unreachable:
      return "unreachable";
    case ssh_failure::auth:
      return "auth";
    case ssh_failure::host_key_changed:
      return "host_key_changed";
    case ssh_failure::command_not_found:
      return "command_not_found";
    case ssh_failure::other:
      return "other";
  }
  return "other";
}

ssh_diagnosis diagnose_ssh(const ssh_result& result, const ssh_target& target) {
  ssh_diagnosis d;
  if (result.ok()) return d;
  const std::string where = target.host + ":" + std::to_string(target.port);
  const std::string& err = result.err;
  // Exit 255 is ssh itself failing; anything else came from the remote command.
  const bool ssh_failed = result.exit_code == 255;
  if (ssh_failed && (contains(err, "REMOTE HOST IDENTIFICATION HAS CHANGED") ||
                     contains(err, "Host key verification failed"))) {
    d.kind = ssh_failure::host_key_changed;
    d.message = "SSH host key of " + where + " has changed (or cannot be verified)";
    d.hint = "if the node was reinstalled, remove its old key: ssh-keygen -R " + target.host +
             " -f <RBEE_HOME>/known_hosts";
  } else if (ssh_failed && contains(err, "Permission denied")) {
    d.kind = ssh_failure::auth;
    d.message = "SSH authentication failed: Permission denied (" + target.user + "@" + where + ")";
    d.hint =
        "check the key path and that the key file is readable only by you (chmod 600), and "
        "that its public key is in ~/.ssh/authorized_keys on the node";
  } else if (result.exit_code == 124 || contains(err, "timed out")) {
    d.kind = ssh_failure::timeout;
    d.message = "SSH connection to " + where + " timed out";
    d.hint =
        "check that the host is up and reachable from this machine and that sshd listens on "
        "port " +
        std::to_string(target.port);
  } else if (ssh_failed &&
             (contains(err, "Connection refused") || contains(err, "No route to host") ||
              contains(err, "Could not resolve hostname") ||
              contains(err, "Network is unreachable") || contains(err, "Connection closed by") ||
              contains(err, "Connection reset"))) {
    d.kind = ssh_failure::unreachable;
    d.message = "Cannot connect to " + where + ": " + last_line(err);
    d.hint = "check the host name and port, and that sshd runs on the node";
  } else if (result.exit_code == 127 || contains(err, "command not found") ||
             contains(err, ": not found")) {
    d.kind = ssh_failure::command_not_found;
    d.message = "Command not found on " + target.host + ": " + first_line(err);
    d.hint = "install rbee on the node: rbee setup install --node <name>";
  } else {
    d.kind = ssh_failure::other;
    d.message = (result.exit_code == 255 ? "SSH to " + where + " failed: "
                                         : "Remote command on " + target.host + " failed (exit " +
                                               std::to_string(result.exit_code) + "): ") +
                (err.empty() ? first_line(result.out) : last_line(err));
  }
  return d;
}

bool is_transient(ssh_failure kind) {
  return kind == ssh_failure::timeout || kind == ssh_failure::unreachable;
}

namespace {

// run_process, with the child's stdin either stdin_fd (when >= 0) or stdin_data.
ssh_result run_argv(const std::vector<std::string>& argv, int stdin_fd,
                    const std::string& stdin_data, std::chrono::milliseconds timeout) {
  if (argv.empty()) throw std::invalid_argument("run_process: empty argv");
  // No shell; its own process group, so a timeout kills ssh and anything it started.
  const common::process_spec spec{.executable = argv[0],
                                  .args = {argv.begin() + 1, argv.end()},
                                  .kill_with_parent = false,
                                  .stdin_data = stdin_data,
                                  .stdin_fd = stdin_fd,
                                  .own_process_group = true};
  try {
    common::captured_output run = common::run_captured(spec, timeout);
    return {.exit_code = run.timed_out ? 124 : run.exit_code,
            .out = std::move(run.out),
            .err = std::move(run.err)};
  } catch (const common::spawn_error& e) {
    return {.exit_code = 127, .out = "", .err = e.what()};
  }
}

}  // namespace

ssh_result run_process(const std::vector<std::string>& argv, const std::string& stdin_data,
                       std::chrono::milliseconds timeout) {
  return run_argv(argv, -1, stdin_data, timeout);
}

ssh_result run_process_from_file(const std::vector<std::string>& argv,
                                 const std::filesystem::path& stdin_file,
                                 std::chrono::milliseconds timeout) {
  const int fd = ::open(stdin_file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return {.exit_code = 1,
            .out = "",
            .err = "cannot read " + stdin_file.string() + ": " + std::strerror(errno)};
  }
  auto result = run_argv(argv, fd, "", timeout);
  ::close(fd);
  return result;
}

openssh_runner::openssh_runner(ssh_options options, std::string ssh_binary)
    : options_(std::move(options)), ssh_binary_(std::move(ssh_binary)) {
  std::error_code ec;
  std::filesystem::create_directories(options_.rbee_home / "ssh", ec);
  std::filesystem::permissions(options_.rbee_home / "ssh", std::filesystem::perms::owner_all,
                               std::filesystem::perm_options::replace, ec);
}

ssh_result openssh_runner::run(const ssh_target& target, const std::string& command,
                               const std::string& stdin_data) {
  auto argv = ssh_argv(target, options_, command);
  argv[0] = ssh_binary_;
  return run_process(argv, stdin_data, options_.command_timeout);
}

void openssh_runner::close_master(const ssh_target& target) {
  auto argv = ssh_exit_master_argv(target, options_);
  argv[0] = ssh_binary_;
  // Fails harmlessly ("No such file") when no master runs for target.
  auto result = run_process(argv, "", std::chrono::seconds(5));
  if (result.ok()) spdlog::debug("closed the SSH connection to {}", target.host);
}

ssh_result openssh_runner::copy(const ssh_target& target, const std::string& local_path,
                                const std::string& remote_path) {
  auto argv = ssh_argv(target, options_, copy_command(remote_path));
  argv[0] = ssh_binary_;
  return run_process_from_file(argv, local_path, options_.command_timeout);
}

ssh_result run_ssh(ssh_runner& runner, const ssh_target& target, const ssh_options& options,
                   const std::string& command, const std::string& stdin_data,
                   const std::function<void(int attempt, const ssh_diagnosis&)>& on_retry,
                   const ssh_sleep_fn& sleep) {
  validate_ssh_target(target);
  auto backoff = options.initial_backoff;
  for (int attempt = 1;; ++attempt) {
    ssh_result result = runner.run(target, command, stdin_data);
    if (result.ok()) return result;
    ssh_diagnosis d = diagnose_ssh(result, target);
    if (!is_transient(d.kind) || attempt >= options.attempts) {
      if (is_transient(d.kind) && options.attempts > 1) {
        d.message += " after " + std::to_string(attempt) + " attempts";
      }
      throw ssh_error(std::move(d));
    }
    if (on_retry) on_retry(attempt, d);
    if (sleep) {
      sleep(backoff);
    } else {
      std::this_thread::sleep_for(backoff);
    }
    backoff *= 2;
  }
}

}  // namespace rbee::queen
