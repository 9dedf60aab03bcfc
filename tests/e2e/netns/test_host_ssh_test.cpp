// The multi-node harness itself: a test host answers over real SSH with key auth, its
// address is reachable from the runner, and nothing is left behind after it is gone.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/process.h"
#include "harness/test_host.h"

namespace rbee::e2e {
namespace {
namespace fs = std::filesystem;

struct ssh_result {
  int exit_code;
  std::string output;
};

ssh_result ssh(const ssh_identity& id, const std::string& address, const std::string& command,
               const fs::path& dir) {
  const fs::path out = dir / "ssh.out";
  fs::remove(out);
  common::process_spec spec;
  spec.executable = "/usr/bin/ssh";
  spec.args = {"-o",
               "BatchMode=yes",
               "-o",
               "StrictHostKeyChecking=no",
               "-o",
               "UserKnownHostsFile=/dev/null",
               "-o",
               "ConnectTimeout=5",
               "-i",
               id.private_key.string(),
               "root@" + address,
               command};
  spec.log_path = out.string();
  int rc = common::child_process::spawn(spec).wait();
  std::ifstream in(out);
  std::stringstream text;
  text << in.rdbuf();
  return {rc, text.str()};
}

class TestHost : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = ssh_test_host::unavailable_reason(); !why.empty()) GTEST_SKIP() << why;
    remove_stale_test_hosts();
    char tmpl[] = "/tmp/rbee-test-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  fs::path dir_;
};

TEST_F(TestHost, AnswersOverSshWithTheAuthorizedKeyOnly) {
  auto key = ssh_identity::generate(dir_, "id_test");
  auto stranger = ssh_identity::generate(dir_, "id_stranger");
  std::string netns;
  {
    ssh_test_host host("workstation", dir_ / "workstation", key);
    netns = host.netns();
    auto ok = ssh(key, host.address(), "echo hello-from-$(ip -o -4 addr show scope global | wc -l)",
                  dir_);
    EXPECT_EQ(ok.exit_code, 0) << ok.output;
    EXPECT_NE(ok.output.find("hello-from-1"), std::string::npos) << ok.output;

    auto denied = ssh(stranger, host.address(), "echo should-not-run", dir_);
    EXPECT_EQ(denied.exit_code, 255);
    EXPECT_NE(denied.output.find("Permission denied"), std::string::npos) << denied.output;
  }
  // The namespace is gone with the host.
  EXPECT_FALSE(fs::exists("/run/netns/" + netns));
}

TEST_F(TestHost, TwoHostsHaveDistinctAddresses) {
  auto key = ssh_identity::generate(dir_, "id_test");
  ssh_test_host workstation("workstation", dir_ / "workstation", key);
  ssh_test_host mac("mac", dir_ / "mac", key);
  EXPECT_NE(workstation.address(), mac.address());
  auto a = ssh(key, workstation.address(), "ip -o -4 addr show scope global", dir_);
  auto b = ssh(key, mac.address(), "ip -o -4 addr show scope global", dir_);
  EXPECT_NE(a.output.find(workstation.address()), std::string::npos) << a.output;
  EXPECT_NE(b.output.find(mac.address()), std::string::npos) << b.output;
}

}  // namespace
}  // namespace rbee::e2e
