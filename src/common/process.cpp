#include "common/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>
#include <utility>

#include "common/config.h"

extern char** environ;

namespace rbee::common {

namespace {

std::string errno_text(int err) {
  return std::strerror(err);
}

// Closes an fd on scope exit unless released.
struct fd_guard {
  int fd = -1;
  fd_guard() = default;
  explicit fd_guard(int owned) : fd(owned) {}
  fd_guard(fd_guard&& other) noexcept : fd(other.release()) {}
  fd_guard& operator=(fd_guard&& other) noexcept {
    if (this != &other) {
      if (fd >= 0) ::close(fd);
      fd = other.release();
    }
    return *this;
  }
  ~fd_guard() {
    if (fd >= 0) ::close(fd);
  }
  int release() { return std::exchange(fd, -1); }
};

bool is_secret_env_var(std::string_view name) {
  for (const auto& key : config_keys()) {
    if (key.secret && !key.env_var.empty() && key.env_var == name) return true;
  }
  return false;
}

// The child's environment: the parent's without its secrets (a child gets only the ones its
// spawner hands it in spec.env), with spec.env added or replacing entries.
std::vector<std::string> build_env(const std::map<std::string, std::string>& extra) {
  std::vector<std::string> out;
  for (char** e = environ; e && *e; ++e) {
    std::string_view entry(*e);
    auto eq = entry.find('=');
    std::string key(entry.substr(0, eq));
    if (!extra.contains(key) && !is_secret_env_var(key)) out.emplace_back(entry);
  }
  for (const auto& [k, v] : extra) out.push_back(k + "=" + v);
  return out;
}

// Writes all of data to fd without letting SIGPIPE (a child that exits without reading)
// kill the parent.
void write_stdin(int fd, std::string_view data) {
  sigset_t pipe_set, old_set;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;  // EPIPE: the child did not want its stdin; its exit status tells the story
    }
    off += static_cast<size_t>(n);
  }
  // Consume a SIGPIPE raised by the write above before unblocking, so it is not delivered.
  timespec zero{};
  while (sigtimedwait(&pipe_set, nullptr, &zero) > 0) {
  }
  pthread_sigmask(SIG_SETMASK, &old_set, nullptr);
}

}  // namespace

int decode_wait_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

process_launcher::~process_launcher() = default;

namespace {

// A started child, with the read ends of its stdout and stderr when captured.
struct started_child {
  pid_t pid = -1;
  fd_guard out, err;
};

// `what` names the file in the error: "log file /x/y.log", "/dev/null".
fd_guard open_or_throw(const std::string& exe, const std::string& what, const std::string& path,
                       int flags) {
  fd_guard fd{::open(path.c_str(), flags | O_CLOEXEC, 0644)};
  if (fd.fd < 0) {
    throw spawn_error("cannot start " + exe + ": cannot open " + what + ": " + errno_text(errno));
  }
  return fd;
}

void pipe_or_throw(const std::string& exe, fd_guard& read_end, fd_guard& write_end) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    throw spawn_error("cannot start " + exe + ": pipe: " + errno_text(errno));
  }
  read_end.fd = fds[0];
  write_end.fd = fds[1];
}

started_child start_child(const process_spec& spec, bool capture_output) {
  if (spec.executable.empty()) throw spawn_error("cannot start process: empty executable");
  const std::string& exe = spec.executable;
  if (!spec.stdin_data.empty() && spec.stdin_fd >= 0) {
    throw spawn_error("cannot start " + exe + ": stdin_data and stdin_fd both given");
  }
  if (capture_output && !spec.log_path.empty()) {
    throw spawn_error("cannot start " + exe + ": output both captured and logged");
  }

  // Everything the child needs is prepared before fork: after fork only async-signal-safe
  // calls are allowed (the parent has threads).
  std::vector<std::string> argv_storage;
  argv_storage.push_back(exe);
  argv_storage.insert(argv_storage.end(), spec.args.begin(), spec.args.end());
  std::vector<char*> argv;
  for (auto& a : argv_storage) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_storage = build_env(spec.env);
  std::vector<char*> envp;
  for (auto& e : env_storage) envp.push_back(e.data());
  envp.push_back(nullptr);

  fd_guard log_fd;
  if (!spec.log_path.empty()) {
    log_fd = open_or_throw(exe, "log file " + spec.log_path, spec.log_path,
                           O_WRONLY | O_CREAT | O_APPEND);
  }
  fd_guard stdin_read, stdin_write;
  if (!spec.stdin_data.empty()) {
    pipe_or_throw(exe, stdin_read, stdin_write);
  } else if (spec.stdin_fd < 0) {
    stdin_read = open_or_throw(exe, "/dev/null", "/dev/null", O_RDONLY);
  }
  const int stdin_source = spec.stdin_fd >= 0 ? spec.stdin_fd : stdin_read.fd;
  started_child started;
  fd_guard out_write, err_write;
  if (capture_output) {
    pipe_or_throw(exe, started.out, out_write);
    pipe_or_throw(exe, started.err, err_write);
  }
  fd_guard exec_error_read, exec_error_write;
  pipe_or_throw(exe, exec_error_read, exec_error_write);

  const pid_t parent = ::getpid();
  const bool search_path = exe.find('/') == std::string::npos;
  const bool kill_with_parent = spec.kill_with_parent && !spec.daemon;
  pid_t pid = ::fork();
  if (pid < 0) throw spawn_error("cannot start " + exe + ": fork: " + errno_text(errno));
  if (pid == 0) {
    auto fail = [&](int err) {
      ssize_t ignored = ::write(exec_error_write.fd, &err, sizeof err);
      (void)ignored;
      ::_exit(127);
    };
    // The parent may block or ignore signals (daemons do); the child starts clean.
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    ::signal(SIGTERM, SIG_DFL);
    ::signal(SIGINT, SIG_DFL);
    if (spec.daemon) {
      if (::setsid() < 0) fail(errno);
    } else if (spec.own_process_group) {
      if (::setpgid(0, 0) != 0) fail(errno);
    }
    if (kill_with_parent) {
      if (::prctl(PR_SET_PDEATHSIG, SIGTERM) != 0) fail(errno);
      if (::getppid() != parent) ::_exit(128 + SIGTERM);  // parent already gone
    }
    if (::dup2(stdin_source, STDIN_FILENO) < 0) fail(errno);
    // Output goes to the capture pipes or the log (never both), else stays the parent's.
    const int out_fd = capture_output ? out_write.fd : log_fd.fd;
    const int err_fd = capture_output ? err_write.fd : log_fd.fd;
    if (out_fd >= 0 && (::dup2(out_fd, STDOUT_FILENO) < 0 || ::dup2(err_fd, STDERR_FILENO) < 0)) {
      fail(errno);
    }
    if (!spec.working_dir.empty() && ::chdir(spec.working_dir.c_str()) != 0) fail(errno);
    if (search_path) {
      ::execvpe(argv[0], argv.data(), envp.data());
    } else {
      ::execve(argv[0], argv.data(), envp.data());
    }
    fail(errno);
  }

  // Parent: the exec-error pipe closes (CLOEXEC) on a successful exec, so read() sees EOF.
  ::close(exec_error_write.release());
  ::close(out_write.release());
  ::close(err_write.release());
  if (stdin_read.fd >= 0) ::close(stdin_read.release());
  int child_errno = 0;
  ssize_t n;
  do {
    n = ::read(exec_error_read.fd, &child_errno, sizeof child_errno);
  } while (n < 0 && errno == EINTR);
  if (n > 0) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    throw spawn_error("cannot start " + exe + ": " + errno_text(child_errno));
  }
  started.pid = pid;
  if (stdin_write.fd >= 0) write_stdin(stdin_write.fd, spec.stdin_data);
  return started;
}

// Appends what is readable now from each open descriptor (non-blocking) to its text; closes a
// descriptor at end of file (fd set to -1).
void drain(std::array<pollfd, 2>& fds, std::array<std::string*, 2> texts) {
  char buf[4096];
  for (size_t i = 0; i < fds.size(); ++i) {
    while (fds[i].fd >= 0) {
      const ssize_t got = ::read(fds[i].fd, buf, sizeof buf);
      if (got > 0) {
        texts[i]->append(buf, static_cast<size_t>(got));
        continue;
      }
      if (got == 0) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
      }
      break;  // EAGAIN: nothing more for now
    }
  }
}

}  // namespace

child_process child_process::spawn(const process_spec& spec) {
  return child_process(start_child(spec, false).pid, !spec.daemon);
}

captured_output run_captured(const process_spec& spec, std::chrono::milliseconds timeout) {
  started_child started = start_child(spec, true);
  child_process child(started.pid, true);
  captured_output result;
  std::array<pollfd, 2> fds{pollfd{started.out.release(), POLLIN, 0},
                            pollfd{started.err.release(), POLLIN, 0}};
  for (auto& f : fds) ::fcntl(f.fd, F_SETFL, ::fcntl(f.fd, F_GETFL) | O_NONBLOCK);
  const std::array<std::string*, 2> texts{&result.out, &result.err};
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (child.running()) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      result.timed_out = true;
      ::kill(spec.own_process_group ? -child.pid() : child.pid(), SIGKILL);
      break;
    }
    const int wait_ms = static_cast<int>(std::min<int64_t>(left.count(), 50));
    if (fds[0].fd >= 0 || fds[1].fd >= 0) {
      ::poll(fds.data(), fds.size(), wait_ms);
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(wait_ms));
    }
    drain(fds, texts);
  }
  result.exit_code = child.wait();
  drain(fds, texts);
  for (auto& f : fds) {
    if (f.fd >= 0) ::close(f.fd);
  }
  return result;
}

child_process::~child_process() {
  if (stop_on_destroy_ && valid() && !exit_status_) stop(std::chrono::milliseconds(5000));
}

child_process::child_process(child_process&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      stop_on_destroy_(other.stop_on_destroy_),
      exit_status_(std::exchange(other.exit_status_, {})) {}

child_process& child_process::operator=(child_process&& other) noexcept {
  if (this != &other) {
    if (stop_on_destroy_ && valid() && !exit_status_) stop(std::chrono::milliseconds(5000));
    pid_ = std::exchange(other.pid_, -1);
    stop_on_destroy_ = other.stop_on_destroy_;
    exit_status_ = std::exchange(other.exit_status_, {});
  }
  return *this;
}

std::optional<int> child_process::try_wait() {
  if (exit_status_ || !valid()) return exit_status_;
  int status = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &status, WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == pid_) {
    exit_status_ = decode_wait_status(status);
  } else if (r < 0) {
    // ECHILD: someone else reaped it (e.g. SIGCHLD ignored); its status is unknowable.
    exit_status_ = -1;
  }
  return exit_status_;
}

bool child_process::running() {
  return valid() && !try_wait();
}

int child_process::wait() {
  if (exit_status_ || !valid()) return exit_status_.value_or(-1);
  int status = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &status, 0);
  } while (r < 0 && errno == EINTR);
  exit_status_ = r == pid_ ? decode_wait_status(status) : -1;
  return *exit_status_;
}

void child_process::kill(int sig) {
  if (valid() && !exit_status_) ::kill(pid_, sig);
}

int child_process::stop(std::chrono::milliseconds grace) {
  if (!valid()) return -1;
  if (auto s = try_wait()) return *s;
  ::kill(pid_, SIGTERM);
  auto deadline = std::chrono::steady_clock::now() + grace;
  while (std::chrono::steady_clock::now() < deadline) {
    if (auto s = try_wait()) return *s;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::kill(pid_, SIGKILL);
  return wait();
}

void child_process::detach() {
  pid_ = -1;
  exit_status_.reset();
}

void exit_when_parent_dies(std::chrono::milliseconds poll_interval) {
  const pid_t parent = ::getppid();
  ::prctl(PR_SET_PDEATHSIG, SIGTERM);
  // PDEATHSIG fires when the forking *thread* exits and is lost if the parent died before the
  // prctl, so a watchdog compares getppid() too.
  std::thread([parent, poll_interval] {
    while (::getppid() == parent) std::this_thread::sleep_for(poll_interval);
    ::kill(::getpid(), SIGTERM);
  }).detach();
}

std::string self_executable_path() {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) throw std::runtime_error("cannot read /proc/self/exe: " + ec.message());
  return p.string();
}

std::string self_executable_dir() {
  return std::filesystem::path(self_executable_path()).parent_path().string();
}

bool process_exists(pid_t pid) {
  if (pid <= 0 || (::kill(pid, 0) != 0 && errno != EPERM)) return false;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  // "pid (comm) S ...": the state follows the last ')' (comm may hold spaces and parens).
  auto close = line.rfind(')');
  return close == std::string::npos || close + 2 >= line.size() || line[close + 2] != 'Z';
}

}  // namespace rbee::common
