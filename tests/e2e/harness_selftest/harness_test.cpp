// The e2e harness itself, on stand-in programs (sh, python3's http.server), so its failures
// are not confused with those of the rbee binaries.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "harness/daemon.h"
#include "harness/ports.h"
#include "harness/temp_home.h"

namespace rbee::e2e {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

TEST(Harness, TempHomeIsCreatedAndRemoved) {
  fs::path p;
  {
    temp_home home;
    p = home.path();
    EXPECT_TRUE(fs::is_directory(p));
    EXPECT_EQ(p.string().rfind("/tmp/rbee-test-", 0), 0u);
    EXPECT_TRUE(fs::is_directory(home.logs_dir()));
    std::ofstream(home.file("a/b.txt")) << "x";
    EXPECT_TRUE(fs::exists(p / "a" / "b.txt"));
  }
  if (!std::getenv("RBEE_KEEP_TEST_DIRS")) {
    EXPECT_FALSE(fs::exists(p));
  }
}

TEST(Harness, FreePortIsBindable) {
  int port = free_port();
  ASSERT_GT(port, 0);
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ::close(fd);
}

TEST(Harness, RunCliCapturesStreamsSeparately) {
  auto r = run_cli("/bin/sh", {"-c", "echo out:$X; echo err >&2; cat; exit 3"}, {{"X", "1"}},
                   "from stdin\n");
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.out, "out:1\nfrom stdin\n");
  EXPECT_EQ(r.err, "err\n");
  EXPECT_FALSE(r.timed_out);
}

TEST(Harness, RunCliTimesOut) {
  auto t0 = std::chrono::steady_clock::now();
  auto r = run_cli("/bin/sh", {"-c", "sleep 30"}, {}, "", 200ms);
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.exit_code, 124);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
}

TEST(Harness, DaemonThatExitsEarlyReportsItsLog) {
  temp_home home;
  daemon_process d("/bin/sh", {"-c", "echo cannot bind port; exit 2"}, {},
                   home.logs_dir() / "d.log");
  try {
    d.wait_healthy(free_port(), "/health", 5s);
    FAIL() << "expected wait_healthy to throw";
  } catch (const std::runtime_error& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("status 2"), std::string::npos) << what;
    EXPECT_NE(what.find("cannot bind port"), std::string::npos) << what;
  }
}

TEST(Harness, DaemonHealthyThenStopped) {
  if (!fs::exists("/usr/bin/python3")) GTEST_SKIP() << "needs /usr/bin/python3 as a stand-in";
  temp_home home;
  std::ofstream(home.file("www/health")) << "ok";
  int port = free_port();
  daemon_process d("/usr/bin/python3",
                   {"-m", "http.server", "--bind", "127.0.0.1", "--directory",
                    (home.path() / "www").string(), std::to_string(port)},
                   {{"RBEE_HOME", home.str()}}, home.logs_dir() / "http.log");
  d.wait_healthy(port, "/health", 20s);
  EXPECT_TRUE(d.running());
  int status = d.stop(5s);
  EXPECT_TRUE(status == 128 + SIGTERM || status == 0 || status == 1) << status;
  EXPECT_FALSE(d.running());
  EXPECT_NE(d.log_text().find("GET /health"), std::string::npos) << d.log_text();
}

}  // namespace
}  // namespace rbee::e2e
