// Remote nodes over real OpenSSH (test hosts in network namespaces). Scenarios of
// spec/test-001.md: 1-7 (add-node, unreachable, auth failure, duplicate, install, list,
// remove), 9 (cold start on a remote node), 56 (queen SIGTERM stops the remote hive); issue 13
// finding 2 (install paths never reach the node's shell).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/sqlite.h"

#include "harness/test_host.h"
#include "queen/queen_fixture.h"

namespace rbee::e2e {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// The queen listens beyond loopback here, which needs a strong key.
const std::string api_key = "remote-key-0123456789abcdef";

class RemoteNode : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = ssh_test_host::unavailable_reason(); !why.empty()) GTEST_SKIP() << why;
    remove_stale_test_hosts();
    key = ssh_identity::generate(dir.path(), "id_test");
    host = std::make_unique<ssh_test_host>("workstation", dir.path() / "host", key);
    q.set_bind_host("0.0.0.0");
    q.start({"--public-url", "http://" + host->peer_address() + ":" + std::to_string(q.port())},
            {{"RBEE_API_KEY", api_key}});
    env = q.env();
    env["RBEE_API_KEY"] = api_key;
  }

  cli_result add_node(const std::string& name, const ssh_identity& id) {
    return run_cli("rbee",
                   {"setup", "add-node", "--name", name, "--ssh-host", host->address(),
                    "--ssh-user", host->user(), "--ssh-key", id.private_key.string(),
                    "--install-path", (dir.path() / "node-install").string()},
                   env, "", 120s);
  }

  temp_home dir;
  ssh_identity key;
  std::unique_ptr<ssh_test_host> host;
  queen_fixture q;
  std::map<std::string, std::string> env;
};

TEST_F(RemoteNode, AddInstallInferRemove) {
  auto added = add_node("workstation", key);
  ASSERT_EQ(added.exit_code, 0) << added.err;
  EXPECT_NE(added.err.find("Testing SSH connection"), std::string::npos);
  EXPECT_NE(added.out.find("Node 'workstation' saved"), std::string::npos);

  auto duplicate = add_node("workstation", key);
  EXPECT_EQ(duplicate.exit_code, 1);
  EXPECT_NE(duplicate.err.find("already exists"), std::string::npos) << duplicate.err;
  EXPECT_NE(duplicate.err.find("remove-node"), std::string::npos) << duplicate.err;

  auto installed = run_cli("rbee", {"setup", "install", "--node", "workstation"}, env, "", 120s);
  ASSERT_EQ(installed.exit_code, 0) << installed.err;
  EXPECT_TRUE(fs::exists(dir.path() / "node-install" / "rbee-hive"));
  EXPECT_TRUE(fs::exists(dir.path() / "node-install" / "llm-worker-rbee"));
  EXPECT_NE(installed.err.find("Installed rbee"), std::string::npos) << installed.err;

  auto list = run_cli("rbee", {"setup", "list-nodes", "--json"}, env);
  ASSERT_EQ(list.exit_code, 0);
  bool found = false;
  auto nodes = nlohmann::json::parse(list.out)["nodes"];
  for (const auto& n : nodes) {
    if (n["node_name"] != "workstation") continue;
    found = true;
    EXPECT_EQ(n["ssh_host"], host->address());
    EXPECT_EQ(n["ssh_port"], 22);
    EXPECT_EQ(n["status"], "reachable");
    EXPECT_GT(n["last_connected_unix"].get<int64_t>(), 0);
    EXPECT_EQ(n["ssh_key_path"], key.private_key.string());
  }
  EXPECT_TRUE(found) << list.out;

  if (have_hive_and_worker()) {
    auto infer =
        run_cli("rbee",
                {"infer", "--node", "workstation", "--model", stories_model_ref(), "--prompt",
                 "Once upon a time", "--max-tokens", "8", "--temperature", "0"},
                env, "", 180s);
    ASSERT_EQ(infer.exit_code, 0) << infer.err << "\nqueen log:\n" << q.queen().log_text();
    EXPECT_EQ(golden_continuation("Once upon a time").rfind(infer.text(), 0), 0u) << infer.out;
    EXPECT_NE(infer.err.find("Starting rbee-hive on node 'workstation'"), std::string::npos);
    auto workers = run_cli("rbee", {"workers", "list", "--json"}, env);
    auto ws = nlohmann::json::parse(workers.out)["workers"];
    ASSERT_EQ(ws.size(), 1u) << workers.out;
    EXPECT_EQ(ws[0]["node"], "workstation");
  }
  auto removed = run_cli("rbee", {"setup", "remove-node", "--name", "workstation"}, env);
  EXPECT_EQ(removed.exit_code, 0) << removed.err;
  EXPECT_NE(removed.out.find("Node 'workstation' removed"), std::string::npos);
  auto after = nlohmann::json::parse(run_cli("rbee", {"setup", "list-nodes", "--json"}, env).out);
  EXPECT_EQ(after["nodes"].size(), 1u);
  // Removing a node stops the hive the queen started there.
  common::client_options o;
  o.connect_timeout = 1s;
  std::string hive_url = "http://" + host->address() + ":" + q.env()["RBEE_HIVE_PORT"];
  EXPECT_THROW(common::http_client(hive_url, o).get("/v1/health"), common::connection_error);
  EXPECT_EQ(q.queen().stop(60s), 0);
}

TEST_F(RemoteNode, QueenSigtermStopsTheRemoteHive) {
  if (!have_hive_and_worker()) GTEST_SKIP() << "rbee-hive / llm-worker-rbee are not built";
  ASSERT_EQ(add_node("workstation", key).exit_code, 0);
  ASSERT_EQ(run_cli("rbee", {"setup", "install", "--node", "workstation"}, env, "", 120s).exit_code,
            0);
  auto started = run_cli("rbee", {"hive", "start", "--node", "workstation"}, env, "", 120s);
  ASSERT_EQ(started.exit_code, 0) << started.err;
  std::string hive_url = "http://" + host->address() + ":" + q.env()["RBEE_HIVE_PORT"];
  common::client_options o;
  o.connect_timeout = 1s;
  EXPECT_EQ(common::http_client(hive_url, o).get("/v1/health").status, 200);
  EXPECT_EQ(q.queen().stop(60s), 0);
  EXPECT_THROW(common::http_client(hive_url, o).get("/v1/health"), common::connection_error);
}

TEST_F(RemoteNode, WrongKeyIsAnAuthFailureAndNotSaved) {
  auto other = ssh_identity::generate(dir.path(), "id_other");
  auto r = add_node("workstation", other);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("SSH authentication failed: Permission denied"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("chmod 600"), std::string::npos) << r.err;
  auto list = run_cli("rbee", {"setup", "list-nodes", "--json"}, env);
  EXPECT_EQ(nlohmann::json::parse(list.out)["nodes"].size(), 1u) << "only localhost";
}

TEST_F(RemoteNode, UnreachableHostIsRetriedThenNotSaved) {
  host->stop_sshd();
  auto r = add_node("workstation", key);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find(host->address()), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("after 3 attempts"), std::string::npos) << r.err;
  auto list = run_cli("rbee", {"setup", "list-nodes", "--json"}, env);
  EXPECT_EQ(nlohmann::json::parse(list.out)["nodes"].size(), 1u);
}

// An install path with shell syntax: on a node that expanded it, the marker would appear.
std::string hostile_install_path(const fs::path& dir, const fs::path& marker) {
  return (dir / "inst").string() + "$(touch " + marker.string() + ")";
}

TEST_F(RemoteNode, HostileInstallPathIsRefusedAndNothingRunsOnTheNode) {
  const fs::path marker = dir.path() / "pwned";
  auto client = q.client(api_key);
  for (const std::string& bad :
       {hostile_install_path(dir.path(), marker), std::string("/opt/a b"), std::string("relative"),
        std::string("/opt/../etc"), std::string("-x"),
        std::string("/opt/x;touch ") + marker.string(), "/" + std::string(2000, 'a')}) {
    auto res =
        client.post_json("/v2/registry/beehives/add", {{"node_name", "workstation"},
                                                       {"ssh_host", host->address()},
                                                       {"ssh_user", host->user()},
                                                       {"ssh_key_path", key.private_key.string()},
                                                       {"install_path", bad}});
    EXPECT_EQ(res.status, 400) << bad << ": " << res.body;
    auto err = res.json_body()["error"];
    EXPECT_EQ(err["code"], "INVALID_REQUEST") << res.body;
    EXPECT_EQ(err["details"]["field"], "install_path") << res.body;
  }
  EXPECT_FALSE(fs::exists(marker));
  auto list = run_cli("rbee", {"setup", "list-nodes", "--json"}, env);
  EXPECT_EQ(nlohmann::json::parse(list.out)["nodes"].size(), 1u) << "only localhost";
}

TEST_F(RemoteNode, InstallWithoutSftpWorksAndNeverHandsAPathToTheNodesShell) {
  if (!have_hive_and_worker()) GTEST_SKIP() << "rbee-hive / llm-worker-rbee are not built";
  // The node's sshd again, without the sftp subsystem (scp's default protocol needs it).
  const fs::path host_dir = dir.path() / "host";
  std::ifstream in(host_dir / "sshd_config");
  std::ostringstream config;
  for (std::string line; std::getline(in, line);) {
    if (!line.starts_with("Subsystem")) config << line << "\n";
  }
  std::ofstream(host_dir / "sshd_config_no_sftp") << config.str();
  host->stop_sshd();
  ASSERT_EQ(host->exec({"/usr/sbin/sshd", "-f", (host_dir / "sshd_config_no_sftp").string()}), 0);
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (host->exec({"/usr/bin/bash", "-c", "exec 3<>/dev/tcp/" + host->address() + "/22"}) != 0)
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "sshd without sftp did not start";

  ASSERT_EQ(add_node("workstation", key).exit_code, 0);
  auto installed = run_cli("rbee", {"setup", "install", "--node", "workstation"}, env, "", 120s);
  ASSERT_EQ(installed.exit_code, 0) << installed.err;
  EXPECT_TRUE(fs::exists(dir.path() / "node-install" / "rbee-hive"));
  EXPECT_TRUE(fs::exists(dir.path() / "node-install" / "llm-worker-rbee"));

  // A node saved before install paths were checked: its row still holds shell syntax.
  const fs::path marker = dir.path() / "pwned";
  {
    auto db = common::database::open(q.home().path() / "beehives.db");
    db.prepare(
          "INSERT INTO beehives (node_name, ssh_host, ssh_user, ssh_key_path, install_path, "
          "status) VALUES ('legacy', ?, ?, ?, ?, 'reachable')")
        .bind(1, host->address())
        .bind(2, host->user())
        .bind(3, key.private_key.string())
        .bind(4, hostile_install_path(dir.path(), marker))
        .run();
  }
  auto legacy_install = run_cli("rbee", {"setup", "install", "--node", "legacy"}, env, "", 120s);
  EXPECT_EQ(legacy_install.exit_code, 1) << legacy_install.err;
  EXPECT_NE(legacy_install.err.find("install_path"), std::string::npos) << legacy_install.err;
  auto legacy_start = run_cli("rbee", {"hive", "start", "--node", "legacy"}, env, "", 120s);
  EXPECT_EQ(legacy_start.exit_code, 1) << legacy_start.err;
  EXPECT_NE(legacy_start.err.find("install_path"), std::string::npos) << legacy_start.err;
  EXPECT_FALSE(fs::exists(marker));
  EXPECT_EQ(q.queen().stop(60s), 0);
}

}  // namespace
}  // namespace rbee::e2e
