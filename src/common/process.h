#pragma once
// Child processes without a shell (fork/exec): the CLI starting the queen, the queen starting
// hives and running ssh, the hive starting workers. Tests inject a process_launcher to control
// spawning.

#include <sys/types.h>

#include <chrono>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace rbee::common {

struct process_spec {
  std::string executable{};         // path; a bare name is looked up in $PATH
  std::vector<std::string> args{};  // argv[1..]
  // Added to (overriding) the parent's environment, which the child gets without its secrets:
  // a secret reaches a child only when its spawner puts it here.
  std::map<std::string, std::string> env{};
  std::string log_path{};     // stdout+stderr appended here; empty = inherit
  std::string working_dir{};  // empty = inherit
  // PR_SET_PDEATHSIG SIGTERM in the child. Linux sends it when the *thread* that spawned the
  // child exits, so spawn from a long-lived thread (or set false and use a watchdog).
  bool kill_with_parent = true;
  // The child's stdin, one of: stdin_data written to a pipe, then closed (for secrets); an
  // open descriptor the caller keeps (stdin_fd >= 0, e.g. a file to send); else /dev/null.
  std::string stdin_data{};
  int stdin_fd = -1;
  // Its own process group, so a signal to the group reaches whatever the child started too.
  bool own_process_group = false;
  // A background service: its own session (a terminal's Ctrl+C does not reach it), never
  // killed with its parent (kill_with_parent does not apply), and left running when its
  // child_process is destroyed; stop() still ends it.
  bool daemon = false;
};

// Spawning failed (exec error, bad log path, ...). what() names the executable and the cause.
class spawn_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// What run_captured collected from a child that ran to its end.
struct captured_output {
  int exit_code = -1;  // as child_process::wait: the code, or 128+signal
  bool timed_out = false;
  std::string out;
  std::string err;
};

// Owns one child: reaps it on wait/stop. Movable; destruction of a still-running child stops
// it (SIGTERM, 5 s grace, SIGKILL) so no orphan outlives its owner (a daemon excepted).
class child_process {
 public:
  child_process() = default;
  static child_process spawn(const process_spec& spec);
  ~child_process();
  child_process(child_process&& other) noexcept;
  child_process& operator=(child_process&& other) noexcept;
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  pid_t pid() const { return pid_; }
  bool valid() const { return pid_ > 0; }
  bool running();
  // Exit code, or 128+signal when killed by a signal; nullopt while still running.
  std::optional<int> try_wait();
  int wait();
  // SIGTERM, wait up to grace, then SIGKILL; returns the exit status as try_wait() does.
  int stop(std::chrono::milliseconds grace = std::chrono::milliseconds(5000));
  void kill(int sig);
  // Gives up ownership without stopping (the child keeps running, e.g. a persistent daemon).
  void detach();

 private:
  friend captured_output run_captured(const process_spec& spec, std::chrono::milliseconds timeout);
  child_process(pid_t pid, bool stop_on_destroy) : pid_(pid), stop_on_destroy_(stop_on_destroy) {}
  pid_t pid_ = -1;
  bool stop_on_destroy_ = true;
  std::optional<int> exit_status_;
};

// Runs spec to its end, capturing stdout and stderr (spec.log_path must be empty), and returns
// them with the exit code. Reading stops when the child exits, not at end of file: a process it
// left behind (ssh's connection master) may hold the pipes open. After `timeout` the child is
// killed, with its process group when spec.own_process_group (timed_out). Throws spawn_error
// as child_process::spawn does.
captured_output run_captured(const process_spec& spec, std::chrono::milliseconds timeout);

struct process_launcher {
  virtual ~process_launcher();
  virtual child_process spawn(const process_spec& spec) = 0;
};

struct real_process_launcher : process_launcher {
  child_process spawn(const process_spec& spec) override { return child_process::spawn(spec); }
};

// For a child daemon (worker): exit when the parent dies. Sets PR_SET_PDEATHSIG(SIGTERM) and
// starts a watchdog thread that polls getppid() (the fallback when the signal is missed, e.g.
// the parent died before prctl); the watchdog raises SIGTERM in this process.
void exit_when_parent_dies(
    std::chrono::milliseconds poll_interval = std::chrono::milliseconds(1000));

// Directory of the running executable (/proc/self/exe), to find sibling binaries.
std::string self_executable_dir();
std::string self_executable_path();

// True while a process with this id runs on this machine (a zombie, exited but not yet reaped
// by its parent, counts as gone).
bool process_exists(pid_t pid);

// Exit status from a waitpid() status word: code, or 128+signal.
int decode_wait_status(int status);

}  // namespace rbee::common
