#include "queen/hive_manager.h"

#include <gtest/gtest.h>

#include "queen/http_edge.h"

#include <filesystem>
#include <thread>

#include "common/errors.h"
#include "common/secrets.h"
#include "common/version.h"

namespace rbee::queen {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using nlohmann::json;

struct recording_ssh : ssh_runner {
  std::vector<std::string> commands;
  std::vector<std::string> stdins;
  ssh_result run(const ssh_target&, const std::string& command,
                 const std::string& stdin_data) override {
    commands.push_back(command);
    stdins.push_back(stdin_data);
    return {0, "", ""};
  }
  ssh_result copy(const ssh_target&, const std::string&, const std::string&) override {
    return {0, "", ""};
  }
};

struct refusing_launcher : common::process_launcher {
  std::vector<common::process_spec> specs;
  common::child_process spawn(const common::process_spec& spec) override {
    specs.push_back(spec);
    throw common::spawn_error("not in unit tests");
  }
};

class HiveManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    home = fs::temp_directory_path() / ("rbee-hm-" + common::random_token(6));
    fs::create_directories(home);
    nodes = std::make_unique<registry>(home / "beehives.db", "/opt/bin");
    sched = std::make_unique<scheduler>(scheduler_options{}, clock);
    hive_manager_options o;
    o.rbee_home = home;
    o.bin_dir = "/opt/bin";
    o.local_hive_port = 1;  // nothing answers there
    o.remote_hive_port = 1;
    o.queen_url = "http://10.0.0.1:8080";
    o.hf_endpoint = "http://10.0.0.1:9999";
    o.hf_token = "hf_secret";
    o.connect_timeout = 100ms;
    o.connect_backoff = 10ms;
    o.ssh.rbee_home = home;
    hives = std::make_unique<hive_manager>(o, *nodes, *sched, launcher, ssh, clock);
  }
  void TearDown() override { fs::remove_all(home); }

  common::manual_clock clock;
  fs::path home;
  recording_ssh ssh;
  refusing_launcher launcher;
  std::unique_ptr<registry> nodes;
  std::unique_ptr<scheduler> sched;
  std::unique_ptr<hive_manager> hives;
};

TEST_F(HiveManagerTest, RemoteStartPassesTheTokenOnStdinNeverInArgv) {
  node_record n;
  n.node_name = "workstation";
  n.ssh_host = "127.0.0.1";
  n.ssh_user = "vince";
  n.install_path = "/opt/my-rbee";
  nodes->add(n);
  std::vector<json> events;
  try {
    hives->ensure_hive(n, [&](const json& e) { events.push_back(e); });
    FAIL() << "nothing listens: expected NODE_UNREACHABLE";
  } catch (const error& e) {
    EXPECT_EQ(e.code, "NODE_UNREACHABLE");
    EXPECT_NE(e.message.find("Cannot connect to 127.0.0.1:1 after 3 attempts"), std::string::npos)
        << e.message;
    EXPECT_TRUE(e.details.contains("hint")) << e.details.dump();
  }
  ASSERT_EQ(ssh.commands.size(), 1u);
  std::string token = hives->node_token("workstation");
  EXPECT_EQ(token.size(), 64u);
  EXPECT_EQ(ssh.stdins[0], token + "\nhf_secret\n");
  EXPECT_EQ(ssh.commands[0].find(token), std::string::npos);
  EXPECT_EQ(ssh.commands[0].find("hf_secret"), std::string::npos);
  // The hive's state lives under the install path; the queen's hub is forwarded.
  EXPECT_NE(ssh.commands[0].find("'/opt/my-rbee/home'"), std::string::npos);
  EXPECT_NE(ssh.commands[0].find("'http://10.0.0.1:9999'"), std::string::npos);
  EXPECT_NE(ssh.commands[0].find("'/opt/my-rbee'"), std::string::npos);
  EXPECT_NE(ssh.commands[0].find("'http://10.0.0.1:8080'"), std::string::npos);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events[0]["type"], "narration");
  EXPECT_EQ(events[0]["action"], "hive_start");
  // The token is kept 0600 under $RBEE_HOME/secrets.
  auto perms = fs::status(home / "secrets" / "hive-workstation.token").permissions();
  EXPECT_EQ(perms & (fs::perms::group_all | fs::perms::others_all), fs::perms::none);
}

TEST_F(HiveManagerTest, LocalStartPutsTheTokenInTheEnvironment) {
  auto local = *nodes->get("localhost");
  EXPECT_THROW(hives->ensure_hive(local), error);
  ASSERT_EQ(launcher.specs.size(), 1u);
  const auto& spec = launcher.specs[0];
  EXPECT_EQ(spec.executable, "/opt/bin/rbee-hive");
  EXPECT_EQ(spec.args[0], "daemon");
  EXPECT_EQ(spec.env.at("RBEE_HIVE_TOKEN"), hives->node_token("localhost"));
  for (const auto& a : spec.args)
    EXPECT_EQ(a.find(hives->node_token("localhost")), std::string::npos);
  EXPECT_FALSE(spec.kill_with_parent);
}

TEST_F(HiveManagerTest, ReportsNeedTheNodeToken) {
  std::string token = hives->node_token("localhost");
  json report = {
      {"node_name", "localhost"},
      {"version", common::version_string()},
      {"workers",
       {{{"worker_id", "worker-1"},
         {"model_ref", "file:/m.gguf"},
         {"state", "idle"},
         {"url", "http://127.0.0.1:8001"},
         {"backend", "cpu"},
         {"device", 0},
         {"slots_total", 2},
         {"token", "wtok"}}}},
      {"capabilities",
       {{"backends", {"cpu"}}, {"devices", {{{"backend", "cpu"}, {"ram_free_bytes", 1000}}}}}}};
  try {
    hives->handle_report("wrong", report);
    FAIL();
  } catch (const error& e) {
    EXPECT_EQ(to_http_error(e).status, 401);
  }
  EXPECT_TRUE(sched->workers().empty());
  hives->handle_report(token, report);
  auto ws = sched->workers();
  ASSERT_EQ(ws.size(), 1u);
  EXPECT_EQ(ws[0].info.worker_id, "worker-1");
  EXPECT_EQ(ws[0].info.node, "localhost");
  EXPECT_EQ(ws[0].info.device, 0);
  EXPECT_EQ(ws[0].info.slots_total, 2);
  EXPECT_EQ(ws[0].info.token, "wtok");
  EXPECT_EQ(nodes->get("localhost")->backends, std::vector<std::string>{"cpu"});
  EXPECT_EQ(nodes->get("localhost")->status, "reachable");
  // A report without the worker removes it.
  report["workers"] = json::array();
  hives->handle_report(token, report);
  EXPECT_TRUE(sched->workers().empty());
}

TEST_F(HiveManagerTest, IncompatibleHiveVersionIsRejected) {
  std::string token = hives->node_token("localhost");
  try {
    hives->handle_report(token, {{"version", "99.0.0"}, {"workers", json::array()}});
    FAIL();
  } catch (const error& e) {
    EXPECT_EQ(e.code, "VERSION_MISMATCH");
    EXPECT_NE(
        e.message.find("Version mismatch: queen " + common::version_string() + ", hive 99.0.0"),
        std::string::npos);
    EXPECT_EQ(e.details.value("hint", ""), "rbee setup install --node localhost");
  }
  EXPECT_FALSE(version_mismatch("n", common::version_string()));
  EXPECT_TRUE(version_mismatch("n", "garbage"));
}

TEST_F(HiveManagerTest, AHiveThatStopsReportingIsMarkedUnreachable) {
  hive_manager_options o;
  o.rbee_home = home;
  o.bin_dir = "/opt/bin";
  o.report_stale_after = 30s;
  o.monitor_interval = 20ms;
  o.ssh.rbee_home = home;
  hive_manager watched(o, *nodes, *sched, launcher, ssh, clock);
  std::string token = watched.node_token("localhost");
  watched.handle_report(token, {{"hive_url", "http://127.0.0.1:1"},
                                {"workers",
                                 {{{"worker_id", "w1"},
                                   {"model_ref", "m"},
                                   {"state", "idle"},
                                   {"url", "http://127.0.0.1:2"}}}}});
  ASSERT_TRUE(watched.known_endpoint("localhost"));
  watched.start_monitor();
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(sched->workers().size(), 1u) << "fresh reports keep the hive";
  clock.advance(31s);  // no report for longer than report_stale_after, and nothing answers
  for (int i = 0; i < 100 && !sched->workers().empty(); ++i) std::this_thread::sleep_for(20ms);
  watched.stop_monitor();
  EXPECT_TRUE(sched->workers().empty());
  EXPECT_FALSE(watched.known_endpoint("localhost"));
  EXPECT_EQ(nodes->get("localhost")->status, "unreachable");
}

TEST(ParseHiveWorker, IsLenientButNeedsAnIdAndAKnownState) {
  auto w = parse_hive_worker({{"worker_id", "w"}, {"state", "stopping"}}, "n");
  EXPECT_EQ(w.state, worker_state::stopping);
  EXPECT_FALSE(accepts_tasks(w.state));
  EXPECT_EQ(w.backend, "cpu");
  EXPECT_EQ(w.node, "n");
  EXPECT_THROW(parse_hive_worker({{"state", "idle"}}, "n"), error);
  EXPECT_THROW(parse_hive_worker(json::array(), "n"), error);
  EXPECT_THROW(parse_hive_worker({{"worker_id", "w"}, {"state", "sleeping"}}, "n"), error);
}

}  // namespace
}  // namespace rbee::queen
