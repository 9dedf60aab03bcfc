#include "common/process.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace rbee::common {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

class ProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::temp_directory_path() /
          ("rbee-process-test-" + std::to_string(::getpid()) + "-" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir);
  }
  void TearDown() override { fs::remove_all(dir); }

  std::string read(const fs::path& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  // Polls until the file holds `text` (children write asynchronously).
  bool wait_for_text(const fs::path& p, const std::string& text) {
    for (int i = 0; i < 500; ++i) {
      if (read(p).find(text) != std::string::npos) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }

  fs::path dir;
};

TEST_F(ProcessTest, ExitCodeArgsEnvAndLog) {
  process_spec spec;
  spec.executable = "/bin/sh";
  spec.args = {"-c", "echo out:$1 $RBEE_TEST_VAR; echo err >&2; exit 7", "sh", "arg one"};
  spec.env = {{"RBEE_TEST_VAR", "from-env"}};
  spec.log_path = (dir / "child.log").string();
  auto child = child_process::spawn(spec);
  EXPECT_GT(child.pid(), 0);
  EXPECT_EQ(child.wait(), 7);
  EXPECT_FALSE(child.running());
  EXPECT_EQ(child.try_wait(), 7);
  EXPECT_EQ(read(dir / "child.log"), "out:arg one from-env\nerr\n");
}

// Finding 11: a child gets only the secrets its spawner hands it, never the parent's.
TEST_F(ProcessTest, ChildDoesNotInheritTheParentsSecrets) {
  ::setenv("RBEE_API_KEY", "the-queens-client-key", 1);
  ::setenv("RBEE_API_KEYS", "more-client-keys", 1);
  ::setenv("HF_TOKEN", "the-hub-token", 1);
  ::setenv("RBEE_LOG", "warn", 1);
  process_spec spec;
  spec.executable = "/bin/sh";
  spec.args = {"-c",
               "echo [$RBEE_API_KEY][$RBEE_API_KEYS][$HF_TOKEN][$RBEE_HIVE_TOKEN][$RBEE_LOG]"};
  spec.env = {{"RBEE_HIVE_TOKEN", "its-own"}};
  spec.log_path = (dir / "child.log").string();
  auto child = child_process::spawn(spec);
  EXPECT_EQ(child.wait(), 0);
  ::unsetenv("RBEE_API_KEY");
  ::unsetenv("RBEE_API_KEYS");
  ::unsetenv("HF_TOKEN");
  ::unsetenv("RBEE_LOG");
  EXPECT_EQ(read(dir / "child.log"), "[][][][its-own][warn]\n");
}

TEST_F(ProcessTest, ProcessExistsUntilExitedAndReaped) {
  EXPECT_TRUE(process_exists(::getpid()));
  process_spec spec;
  spec.executable = "/bin/sh";
  spec.args = {"-c", "exit 0"};
  auto child = child_process::spawn(spec);
  pid_t pid = child.pid();
  for (int i = 0; i < 500 && process_exists(pid); ++i) std::this_thread::sleep_for(10ms);
  EXPECT_FALSE(process_exists(pid)) << "an exited child that is not reaped yet counts as gone";
  EXPECT_EQ(child.wait(), 0);
  EXPECT_FALSE(process_exists(pid));
  EXPECT_FALSE(process_exists(0));
}

TEST_F(ProcessTest, BareNameIsSearchedInPathAndWorkingDirApplies) {
  process_spec spec;
  spec.executable = "sh";
  spec.args = {"-c", "pwd"};
  spec.working_dir = dir.string();
  spec.log_path = (dir / "pwd.log").string();
  EXPECT_EQ(child_process::spawn(spec).wait(), 0);
  EXPECT_EQ(read(dir / "pwd.log"), dir.string() + "\n");
}

TEST_F(ProcessTest, StdinDataReachesChildAndIsClosed) {
  process_spec spec;
  spec.executable = "/bin/sh";
  spec.args = {"-c", "read -r secret; echo got:$secret; cat >/dev/null; echo eof"};
  spec.stdin_data = "s3cr3t\n";
  spec.log_path = (dir / "stdin.log").string();
  EXPECT_EQ(child_process::spawn(spec).wait(), 0);
  EXPECT_EQ(read(dir / "stdin.log"), "got:s3cr3t\neof\n");
}

TEST_F(ProcessTest, GracefulStopUsesSigterm) {
  process_spec spec;
  spec.executable = "/bin/sh";
  spec.args = {"-c", "trap 'echo graceful; exit 3' TERM; echo ready; while :; do sleep 0.01; done"};
  spec.log_path = (dir / "graceful.log").string();
  auto child = child_process::spawn(spec);
  ASSERT_TRUE(wait_for_text(dir / "graceful.log", "ready"));
  EXPECT_TRUE(child.running());
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(child.stop(5s), 3);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 4s);
  EXPECT_NE(read(dir / "graceful.log").find("graceful"), std::string::npos);
}

TEST_F(ProcessTest, ForcedStopWhenSigtermIsIgnored) {
  process_spec spec;
  spec.executable = "/bin/sh";
  spec.args = {"-c", "trap '' TERM; echo ready; while :; do sleep 0.01; done"};
  spec.log_path = (dir / "stubborn.log").string();
  auto child = child_process::spawn(spec);
  ASSERT_TRUE(wait_for_text(dir / "stubborn.log", "ready"));
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(child.stop(200ms), 128 + SIGKILL);
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(took, 200ms);
  EXPECT_LT(took, 3s);
}

TEST_F(ProcessTest, SignalExitIs128PlusSignal) {
  process_spec spec;
  spec.executable = "/bin/sleep";
  spec.args = {"100"};
  auto child = child_process::spawn(spec);
  child.kill(SIGINT);
  EXPECT_EQ(child.wait(), 128 + SIGINT);
}

TEST_F(ProcessTest, ExecFailureThrowsWithCause) {
  process_spec spec;
  spec.executable = (dir / "no-such-binary").string();
  try {
    child_process::spawn(spec);
    FAIL() << "expected spawn_error";
  } catch (const spawn_error& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("no-such-binary"), std::string::npos) << what;
    EXPECT_NE(what.find("No such file"), std::string::npos) << what;
  }
  spec.executable = dir.string();  // a directory is not executable
  EXPECT_THROW(child_process::spawn(spec), spawn_error);
  spec.executable = "/bin/true";
  spec.working_dir = (dir / "missing").string();
  EXPECT_THROW(child_process::spawn(spec), spawn_error);
  spec.working_dir.clear();
  spec.log_path = (dir / "missing" / "x.log").string();
  EXPECT_THROW(child_process::spawn(spec), spawn_error);
}

TEST_F(ProcessTest, MoveTransfersOwnershipAndDestructorStops) {
  pid_t pid;
  {
    process_spec spec;
    spec.executable = "/bin/sleep";
    spec.args = {"100"};
    auto a = child_process::spawn(spec);
    pid = a.pid();
    child_process b = std::move(a);
    EXPECT_FALSE(a.valid());
    EXPECT_EQ(b.pid(), pid);
    EXPECT_TRUE(b.running());
  }
  // The destructor stopped and reaped it: the pid no longer exists.
  EXPECT_EQ(::kill(pid, 0), -1);
}

// PR_SET_PDEATHSIG fires when the spawning *thread* ends: the documented pitfall, shown.
TEST_F(ProcessTest, KillWithParentFollowsTheSpawningThread) {
  process_spec spec;
  spec.executable = "/bin/sleep";
  spec.args = {"100"};
  child_process tied, free;
  std::thread([&] {
    tied = child_process::spawn(spec);
    spec.kill_with_parent = false;
    free = child_process::spawn(spec);
  }).join();
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (tied.running() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(tied.try_wait(), 128 + SIGTERM);
  EXPECT_TRUE(free.running());
  EXPECT_EQ(free.stop(1s), 128 + SIGTERM);
}

TEST_F(ProcessTest, LauncherInterfaceSpawnsRealProcesses) {
  real_process_launcher launcher;
  process_launcher& l = launcher;
  process_spec spec;
  spec.executable = "/bin/true";
  EXPECT_EQ(l.spawn(spec).wait(), 0);
}

TEST_F(ProcessTest, RunCapturedCollectsOutputAndExitCode) {
  process_spec spec;
  spec.executable = "/bin/sh";
  spec.args = {"-c", "cat; echo err >&2; exit 3"};
  spec.stdin_data = "secret";
  captured_output run = run_captured(spec, 5s);
  EXPECT_EQ(run.exit_code, 3);
  EXPECT_FALSE(run.timed_out);
  EXPECT_EQ(run.out, "secret");
  EXPECT_EQ(run.err, "err\n");
}

TEST_F(ProcessTest, StdinFromAnOpenDescriptor) {
  std::ofstream(dir / "input") << "from a file";
  const int fd = ::open((dir / "input").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  process_spec spec;
  spec.executable = "/bin/cat";
  spec.stdin_fd = fd;
  EXPECT_EQ(run_captured(spec, 5s).out, "from a file");
  ::close(fd);
  spec.stdin_data = "both";  // one source of stdin at a time
  EXPECT_THROW(run_captured(spec, 5s), spawn_error);
}

// The timeout kills the whole process group: a grandchild holding the output pipe open must
// neither keep the call waiting nor survive it.
TEST_F(ProcessTest, RunCapturedTimeoutKillsTheProcessGroup) {
  process_spec spec;
  spec.executable = "/bin/sh";
  spec.args = {"-c", "sleep 100 & echo $!; wait"};
  spec.own_process_group = true;
  const auto start = std::chrono::steady_clock::now();
  captured_output run = run_captured(spec, 300ms);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  EXPECT_TRUE(run.timed_out);
  EXPECT_EQ(run.exit_code, 128 + SIGKILL);
  const pid_t grandchild = std::stoi(run.out);
  for (int i = 0; i < 200 && process_exists(grandchild); ++i) std::this_thread::sleep_for(10ms);
  EXPECT_FALSE(process_exists(grandchild));
}

// Reading ends when the child exits, even while something it left behind holds the pipes.
TEST_F(ProcessTest, RunCapturedReturnsWhenTheChildExits) {
  process_spec spec;
  spec.executable = "/bin/sh";
  spec.args = {"-c", "sleep 3 & echo started"};
  const auto start = std::chrono::steady_clock::now();
  captured_output run = run_captured(spec, 10s);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  EXPECT_EQ(run.exit_code, 0);
  EXPECT_EQ(run.out, "started\n");
}

TEST_F(ProcessTest, ExecFailureOfACapturedRunThrows) {
  process_spec spec;
  spec.executable = (dir / "no-such-binary").string();
  EXPECT_THROW(run_captured(spec, 1s), spawn_error);
}

// A daemon leads its own session and outlives its child_process; stop() still ends it.
TEST_F(ProcessTest, DaemonHasItsOwnSessionAndOutlivesItsOwner) {
  process_spec spec;
  spec.executable = "/bin/sleep";
  spec.args = {"100"};
  spec.daemon = true;
  pid_t pid;
  {
    child_process owner = child_process::spawn(spec);
    pid = owner.pid();
    EXPECT_EQ(::getsid(pid), pid);
    child_process moved = std::move(owner);
  }
  EXPECT_TRUE(process_exists(pid));
  ::kill(pid, SIGTERM);
  for (int i = 0; i < 500 && process_exists(pid); ++i) std::this_thread::sleep_for(10ms);
  EXPECT_FALSE(process_exists(pid));

  child_process stopped = child_process::spawn(spec);
  EXPECT_EQ(stopped.stop(1s), 128 + SIGTERM);
}

TEST(ProcessPaths, SelfExecutableDir) {
  auto dir = self_executable_dir();
  EXPECT_TRUE(fs::is_directory(dir));
  EXPECT_TRUE(fs::exists(fs::path(dir) / fs::path(self_executable_path()).filename()));
}

}  // namespace
}  // namespace rbee::common
