#include "common/process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

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

child_process child_process::spawn(const process_spec& spec) {
  if (spec.executable.empty()) throw spawn_error("cannot start process: empty executable");
  const std::string& exe = spec.executable;

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
    log_fd.fd = ::open(spec.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd.fd < 0) {
      throw spawn_error("cannot start " + exe + ": cannot open log file " + spec.log_path + ": " +
                        errno_text(errno));
    }
  }
  fd_guard stdin_read, stdin_write;
  if (!spec.stdin_data.empty()) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
      throw spawn_error("cannot start " + exe + ": pipe: " + errno_text(errno));
    }
    stdin_read.fd = fds[0];
    stdin_write.fd = fds[1];
  } else {
    stdin_read.fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (stdin_read.fd < 0) {
      throw spawn_error("cannot start " + exe + ": /dev/null: " + errno_text(errno));
    }
  }
  int err_fds[2];
  if (::pipe2(err_fds, O_CLOEXEC) != 0) {
    throw spawn_error("cannot start " + exe + ": pipe: " + errno_text(errno));
  }
  fd_guard err_read{err_fds[0]}, err_write{err_fds[1]};

  const pid_t parent = ::getpid();
  const bool search_path = exe.find('/') == std::string::npos;
  pid_t pid = ::fork();
  if (pid < 0) throw spawn_error("cannot start " + exe + ": fork: " + errno_text(errno));
  if (pid == 0) {
    auto fail = [&](int err) {
      ssize_t ignored = ::write(err_write.fd, &err, sizeof err);
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
    if (spec.kill_with_parent) {
      if (::prctl(PR_SET_PDEATHSIG, SIGTERM) != 0) fail(errno);
      if (::getppid() != parent) ::_exit(128 + SIGTERM);  // parent already gone
    }
    if (::dup2(stdin_read.fd, STDIN_FILENO) < 0) fail(errno);
    if (log_fd.fd >= 0) {
      if (::dup2(log_fd.fd, STDOUT_FILENO) < 0 || ::dup2(log_fd.fd, STDERR_FILENO) < 0) {
        fail(errno);
      }
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
  ::close(err_write.release());
  ::close(stdin_read.release());
  int child_errno = 0;
  ssize_t n;
  do {
    n = ::read(err_read.fd, &child_errno, sizeof child_errno);
  } while (n < 0 && errno == EINTR);
  if (n > 0) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    throw spawn_error("cannot start " + exe + ": " + errno_text(child_errno));
  }
  child_process child(pid);
  if (stdin_write.fd >= 0) write_stdin(stdin_write.fd, spec.stdin_data);
  return child;
}

child_process::~child_process() {
  if (valid() && !exit_status_) stop(std::chrono::milliseconds(5000));
}

child_process::child_process(child_process&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)), exit_status_(std::exchange(other.exit_status_, {})) {}

child_process& child_process::operator=(child_process&& other) noexcept {
  if (this != &other) {
    if (valid() && !exit_status_) stop(std::chrono::milliseconds(5000));
    pid_ = std::exchange(other.pid_, -1);
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
