// spec/test-001.md section A, node setup: scenarios 1-8 against a real queen and a test host
// `workstation` in a network namespace running real OpenSSH.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include "harness/scenario_fixture.h"

namespace rbee::e2e::scenario {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

class Scenarios_A : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = scenario_hosts::unavailable_reason(); !why.empty()) GTEST_SKIP() << why;
    hosts = std::make_unique<scenario_hosts>(std::vector<std::string>{"workstation"});
    hosts->queen().start();
  }
  void TearDown() override {
    if (hosts) {
      EXPECT_TRUE(hosts->stop_all()) << "processes left after the queen stopped";
    }
    hosts.reset();
  }

  scenario_queen& q() { return hosts->queen(); }
  ssh_test_host& ws() { return hosts->host("workstation"); }

  std::unique_ptr<scenario_hosts> hosts;
};

TEST_F(Scenarios_A, S01_add_node) {
  auto r = hosts->add_node("workstation");
  ASSERT_EQ(r.exit_code, 0) << r.err << "\n" << q().queen_log();
  EXPECT_TRUE(contains(r.err, "Testing SSH connection")) << r.err;
  EXPECT_TRUE(contains(r.out, "Node 'workstation' saved")) << r.out;

  auto n = hosts->node("workstation");
  ASSERT_TRUE(n) << hosts->nodes().dump();
  EXPECT_EQ((*n)["ssh_host"], ws().address());
  EXPECT_EQ((*n)["ssh_port"], 22);
  EXPECT_EQ((*n)["ssh_user"], ws().user());
  EXPECT_EQ((*n)["ssh_key_path"], hosts->key().private_key.string());
  EXPECT_EQ((*n)["install_path"], hosts->install_path("workstation").string());
  EXPECT_EQ((*n)["status"], "reachable");
  EXPECT_GT((*n).value("last_connected_unix", int64_t{0}), 0);
}

TEST_F(Scenarios_A, S02_add_node_unreachable_host) {
  ws().stop_sshd();
  auto started = std::chrono::steady_clock::now();
  auto r = hosts->add_node("workstation");
  auto took = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_TRUE(contains(r.err, ws().address())) << r.err;
  EXPECT_TRUE(contains(r.err, "after 3 attempts")) << r.err;
  EXPECT_TRUE(contains(r.err, "refused") || contains(r.err, "timed out") ||
              contains(r.err, "timeout"))
      << "the cause must be named: " << r.err;
  // Three attempts with backoff between them (1 s, 2 s by default) take measurable time.
  EXPECT_GE(took, 1s);
  EXPECT_FALSE(hosts->node("workstation")) << hosts->nodes().dump();
}

TEST_F(Scenarios_A, S03_add_node_auth_failure) {
  auto other = ssh_identity::generate(hosts->dir().path(), "id_wrong");
  auto r = hosts->add_node("workstation", other);
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_TRUE(contains(r.err, "SSH authentication failed: Permission denied")) << r.err;
  EXPECT_TRUE(contains(r.err, "chmod 600") || contains(r.err, "permission")) << r.err;
  EXPECT_FALSE(hosts->node("workstation")) << hosts->nodes().dump();
}

TEST_F(Scenarios_A, S04_add_node_duplicate_name) {
  ASSERT_EQ(hosts->add_node("workstation").exit_code, 0);
  auto before = hosts->nodes();
  auto r = hosts->add_node("workstation");
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_TRUE(contains(r.err, "already exists")) << r.err;
  EXPECT_TRUE(contains(r.err, "remove-node")) << r.err;
  auto after = hosts->nodes();
  ASSERT_EQ(after.size(), before.size());
  for (size_t i = 0; i < after.size(); ++i) {
    EXPECT_EQ(after[i]["node_name"], before[i]["node_name"]);
    EXPECT_EQ(after[i]["ssh_host"], before[i]["ssh_host"]);
    EXPECT_EQ(after[i]["install_path"], before[i]["install_path"]);
  }
}

TEST_F(Scenarios_A, S05_install) {
  ASSERT_EQ(hosts->add_node("workstation").exit_code, 0);
  auto r = hosts->install("workstation");
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err << "\n" << q().queen_log();
  auto dir = hosts->install_path("workstation");
  for (const char* binary : {"rbee-hive", "llm-worker-rbee"}) {
    ASSERT_TRUE(fs::exists(dir / binary)) << binary;
    struct stat st {};
    ASSERT_EQ(::stat((dir / binary).c_str(), &st), 0);
    EXPECT_TRUE(st.st_mode & S_IXUSR) << binary << " is not executable";
    EXPECT_EQ(fs::file_size(dir / binary), fs::file_size(binary_path(binary))) << binary;
  }
  // Progress names each binary, and the version the node reported when run there is shown.
  EXPECT_TRUE(contains(r.err, "rbee-hive") && contains(r.err, "llm-worker-rbee")) << r.err;
  auto version = run_cli("rbee-hive", {"--version"});
  std::string v = version.out.substr(version.out.find_last_of(' ') + 1);
  while (!v.empty() && (v.back() == '\n' || v.back() == '\r')) v.pop_back();
  EXPECT_TRUE(contains(r.err, v)) << "version " << v << " not shown: " << r.err;
  // Really runnable on the node: run it inside the namespace.
  EXPECT_EQ(ws().exec({(dir / "rbee-hive").string(), "--version"}), 0);
}

TEST_F(Scenarios_A, S06_list_nodes) {
  ASSERT_EQ(hosts->add_node("workstation").exit_code, 0);
  auto r = q().cli({"setup", "list-nodes"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "workstation (" + ws().address() + ")")) << r.out;
  EXPECT_TRUE(contains(r.out, "reachable")) << r.out;
  EXPECT_TRUE(contains(r.out, hosts->install_path("workstation").string())) << r.out;
  EXPECT_TRUE(contains(r.out, "localhost")) << r.out;
  // Last connected is a time stamp for the node that was tested.
  auto line_start = r.out.find("workstation (");
  auto line = r.out.substr(line_start, r.out.find('\n', line_start) - line_start);
  EXPECT_FALSE(contains(line, "never")) << line;
  EXPECT_TRUE(contains(line, "-") && contains(line, ":")) << line;
}

TEST_F(Scenarios_A, S07_remove_node) {
  ASSERT_EQ(hosts->add_node("workstation").exit_code, 0);
  auto r = q().cli({"setup", "remove-node", "--name", "workstation"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "Node 'workstation' removed")) << r.out;
  auto list = q().cli({"setup", "list-nodes"});
  EXPECT_FALSE(contains(list.out, "workstation")) << list.out;
  EXPECT_FALSE(hosts->node("workstation"));
}

TEST_F(Scenarios_A, S08_infer_on_unknown_node) {
  auto r = q().infer(stories_ref(), {"--max-tokens", "4"}, "workstation", 60s);
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_TRUE(contains(r.err, "Node 'workstation' not found")) << r.err;
  EXPECT_TRUE(contains(r.err, "rbee setup add-node")) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
}

}  // namespace
}  // namespace rbee::e2e::scenario
