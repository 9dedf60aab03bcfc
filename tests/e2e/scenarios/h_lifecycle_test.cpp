// spec/test-001.md section H, lifecycle on `localhost`: scenarios 49-56 (56's remote cascade over
// SSH is in h_lifecycle_ssh_test.cpp).
#include <gtest/gtest.h>

#include <signal.h>

#include "harness/scenario_fixture.h"

namespace rbee::e2e::scenario {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::vector<pid_t> pids_of(const scenario_queen& q, const std::string& binary) {
  std::vector<pid_t> out;
  for (pid_t p : pids_with_home(q.home().path())) {
    auto cmd = slurp("/proc/" + std::to_string(p) + "/cmdline");
    if (contains(cmd.substr(0, cmd.find('\0')), binary)) out.push_back(p);
  }
  return out;
}

bool pid_alive(pid_t pid) {
  if (::kill(pid, 0) != 0) return false;
  std::string stat = slurp("/proc/" + std::to_string(pid) + "/stat");
  auto close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] != 'Z';
}

class Scenarios_H : public local_node_test {};

TEST_F(Scenarios_H, S49_hive_persistent_daemon) {
  q.start();
  ASSERT_EQ(q.infer(stories_ref(), {"--max-tokens", "2"}).exit_code, 0) << q.logs();
  auto hives = pids_of(q, "rbee-hive");
  ASSERT_EQ(hives.size(), 1u);
  ASSERT_EQ(q.infer(stories_ref(), {"--max-tokens", "2"}).exit_code, 0);
  // The worker exits; the hive stays.
  auto ws = q.workers();
  ASSERT_EQ(ws.size(), 1u);
  auto down = q.cli({"workers", "shutdown", "--id", ws[0]["worker_id"].get<std::string>()});
  ASSERT_EQ(down.exit_code, 0) << down.err;
  EXPECT_TRUE(eventually([&] { return pids_of(q, "llm-worker-rbee").empty(); }, 10s));
  std::this_thread::sleep_for(500ms);
  EXPECT_TRUE(pid_alive(hives[0]));
  EXPECT_TRUE(q.hive_alive());
  auto again = q.infer(stories_ref(), {"--max-tokens", "2", "--json"});
  EXPECT_EQ(again.exit_code, 0) << again.err;
  EXPECT_FALSE(again.took_step("hive_start")) << again.out;
  EXPECT_EQ(pids_of(q, "rbee-hive"), hives);
}

TEST_F(Scenarios_H, S50_hung_worker_removed) {
  q.set_env("RBEE_HIVE_HEALTH_INTERVAL", "1");
  q.set_env("RBEE_HIVE_HEALTH_FAILURES", "3");
  q.start();
  ASSERT_EQ(q.infer(stories_ref(), {"--max-tokens", "2"}).exit_code, 0) << q.logs();
  auto workers = pids_of(q, "llm-worker-rbee");
  ASSERT_EQ(workers.size(), 1u);
  auto stopped_at = std::chrono::steady_clock::now();
  ::kill(workers[0], SIGSTOP);  // alive, but answers nothing
  // Not before 3 failed checks (about 3 intervals), but soon after.
  EXPECT_TRUE(eventually([&] { return q.workers().empty(); }, 20s)) << q.workers().dump();
  EXPECT_GE(std::chrono::steady_clock::now() - stopped_at, 2s);
  EXPECT_TRUE(eventually([&] { return !pid_alive(workers[0]); }, 10s))
      << "the hung worker must be killed";
  if (pid_alive(workers[0])) ::kill(workers[0], SIGKILL);
  EXPECT_TRUE(q.hive_alive());
  auto next = q.infer(stories_ref(), {"--max-tokens", "2"});
  EXPECT_EQ(next.exit_code, 0) << next.err;
}

TEST_F(Scenarios_H, S51_idle_timeout_worker_dies_hive_lives) {
  q.set_env("RBEE_WORKER_IDLE_TIMEOUT", "1");
  q.start();
  ASSERT_EQ(q.infer(stories_ref(), {"--max-tokens", "2"}).exit_code, 0) << q.logs();
  auto hives = pids_of(q, "rbee-hive");
  ASSERT_EQ(hives.size(), 1u);
  EXPECT_TRUE(eventually([&] { return pids_of(q, "llm-worker-rbee").empty(); }, 15s));
  EXPECT_TRUE(pid_alive(hives[0]));
  EXPECT_TRUE(q.hive_alive());
  EXPECT_TRUE(eventually([&] { return q.workers().empty(); }, 5s));
}

TEST_F(Scenarios_H, S52_sigterm_to_hive) {
  q.set_env("RBEE_WORKER_STOP_GRACE_MS", "5000");
  q.start();
  auto& hive = q.start_own_hive();
  for (const char* m : {"stories260K.gguf", "synth-tiny-Q8_0.gguf", "synth-tiny-Q4_0.gguf"}) {
    auto r = q.infer("file:" + models_dir() + "/" + m, {"--max-tokens", "2"});
    ASSERT_EQ(r.exit_code, 0) << m << ": " << r.err << q.logs();
  }
  auto workers = pids_of(q, "llm-worker-rbee");
  ASSERT_EQ(workers.size(), 3u);
  auto db = q.home().path() / "models.db";
  ASSERT_TRUE(fs::exists(db));
  auto at = std::chrono::steady_clock::now();
  ::kill(hive.pid(), SIGTERM);
  ASSERT_TRUE(eventually([&] { return !hive.running(); }, 15s)) << "the hive did not exit";
  auto took = std::chrono::steady_clock::now() - at;
  EXPECT_EQ(hive.exit_status(), 0);
  // In parallel: all three within one grace period, not three of them.
  EXPECT_LT(took, 8s);
  for (pid_t w : workers) EXPECT_FALSE(pid_alive(w)) << w;
  // The graceful path: workers exited on their own, not killed after the grace.
  auto log = slurp(q.home().logs_dir() / "own-hive.log");
  EXPECT_FALSE(contains(log, "SIGKILL")) << log;
  // models.db intact: a fresh reader sees all three catalogued models.
  auto env = q.env();
  auto listed = run_cli("rbee-hive", {"models", "list", "--json"}, env);
  ASSERT_EQ(listed.exit_code, 0) << listed.err;
  auto j = json::parse(listed.out, nullptr, false);
  auto models = j.is_array() ? j : j.value("models", json::array());
  EXPECT_EQ(models.size(), 3u) << listed.out;
}

TEST_F(Scenarios_H, S53_rbee_exits_daemons_live) {
  q.start();
  auto r = q.infer(stories_ref(), {"--max-tokens", "2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(q.queen().running());
  EXPECT_EQ(pids_of(q, "rbee-hive").size(), 1u);
  EXPECT_EQ(pids_of(q, "llm-worker-rbee").size(), 1u);
  EXPECT_TRUE(q.hive_alive());
  EXPECT_EQ(q.workers().size(), 1u);
}

TEST_F(Scenarios_H, S54_ephemeral_mode) {
  // No queen runs: the CLI starts one (and through it hive and worker), then tears all down.
  temp_home home;
  std::ofstream(home.path() / "config.toml") << "\n";
  std::map<std::string, std::string> env = {
      {"RBEE_HOME", home.str()},
      {"RBEE_CONFIG", (home.path() / "config.toml").string()},
      {"RBEE_QUEEN_URL", "http://127.0.0.1:" + std::to_string(free_port())},
      {"RBEE_HIVE_PORT", std::to_string(free_port())},
      {"RBEE_WORKER_STOP_GRACE_MS", "3000"}};
  auto r = run_cli("rbee",
                   {"infer", "--ephemeral", "--node", "localhost", "--model", stories_ref(),
                    "--prompt", "Once upon a time", "--max-tokens", "4", "--temperature", "0"},
                   env, "", 120s);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "Starting queen-rbee")) << r.err;
  EXPECT_EQ(golden_continuation("Once upon a time").rfind(r.text(), 0), 0u) << r.out;
  // Nothing is left running.
  bool none = eventually([&] { return pids_with_home(home.path()).empty(); }, 5s);
  EXPECT_TRUE(none) << pids_with_home(home.path()).size() << " processes left";
  kill_all(pids_with_home(home.path()));
}

TEST_F(Scenarios_H, S55_persistent_mode) {
  q.start();
  auto& hive = q.start_own_hive();
  pid_t queen_pid = q.queen().pid();
  auto r = q.infer(stories_ref(), {"--max-tokens", "4", "--temperature", "0", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err << q.logs();
  EXPECT_FALSE(contains(r.err, "Starting queen-rbee")) << r.err;  // the CLI's own line (S54)
  EXPECT_FALSE(r.took_step("hive_start")) << r.out;
  EXPECT_TRUE(q.queen().running());
  EXPECT_EQ(q.queen().pid(), queen_pid);
  EXPECT_TRUE(hive.running());
  auto hives = pids_of(q, "rbee-hive");
  ASSERT_EQ(hives.size(), 1u);
  EXPECT_EQ(hives[0], hive.pid()) << "the pre-started hive is used, not a new one";
  EXPECT_EQ(q.workers().size(), 1u);
}

TEST_F(Scenarios_H, S56_queen_sigterm_cascade) {
  q.start();
  ASSERT_EQ(q.infer(stories_ref(), {"--max-tokens", "2"}).exit_code, 0) << q.logs();
  auto hives = pids_of(q, "rbee-hive");
  auto workers = pids_of(q, "llm-worker-rbee");
  ASSERT_EQ(hives.size(), 1u);
  ASSERT_EQ(workers.size(), 1u);
  auto at = std::chrono::steady_clock::now();
  EXPECT_EQ(q.queen().stop(30s), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - at, 20s);
  EXPECT_TRUE(eventually([&] { return pids_with_home(q.home().path()).empty(); }, 5s))
      << "the hive and worker the queen started must be gone";
  EXPECT_FALSE(q.hive_alive());
}

}  // namespace
}  // namespace rbee::e2e::scenario
