// The supervisor with real child processes whose spawning is injected: a shell stands in for
// the worker, so lifecycle rules (loading timeout, crash, forced stop) are tested without an
// engine.
#include "hive/workers.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>

#include "common/errors.h"
#include "common/http_server.h"
#include "hive/report.h"

namespace rbee::hive {
namespace {

using namespace std::chrono_literals;

// Runs `script` under /bin/sh instead of the worker and remembers what it was asked to start.
struct shell_launcher : common::process_launcher {
  explicit shell_launcher(std::string script) : script(std::move(script)) {}
  common::child_process spawn(const common::process_spec& spec) override {
    {
      std::lock_guard lock(mutex);
      specs.push_back(spec);
    }
    common::process_spec shell = spec;
    shell.executable = "/bin/sh";
    shell.args = {"-c", script};
    return common::child_process::spawn(shell);
  }
  std::string script;
  std::mutex mutex;
  std::vector<common::process_spec> specs;
};

// The stand-in workers' logs, removed when the test program ends.
const std::filesystem::path logs_dir =
    std::filesystem::temp_directory_path() / ("hive-workers-test-" + std::to_string(::getpid()));
struct remove_logs : ::testing::Environment {
  void TearDown() override { std::filesystem::remove_all(logs_dir); }
};
const auto* const registered = ::testing::AddGlobalTestEnvironment(new remove_logs);

supervisor_options options() {
  supervisor_options o;
  o.worker_binary = "/bin/sh";  // must exist; the launcher decides what really runs
  std::filesystem::create_directories(logs_dir);
  o.logs_dir = logs_dir;
  o.port_start = 18000 + static_cast<int>(::getpid() % 20000);
  o.callback_url = "http://127.0.0.1:9/v1/workers/ready";
  o.hive_token = "hive-secret";
  o.health_interval = 1h;  // these tests are about processes, not health checks
  o.stop_grace = 300ms;
  return o;
}

spawn_request request() {
  return {.model_ref = "file:/m.gguf",
          .model_id = "m",
          .model_path = "/m.gguf",
          .backend = "cpu",
          .device = 0,
          .devices = {},
          .split = {},
          .slots = 2,
          .ctx = 512,
          .memory_bytes = 1,
          .keep_alive = std::nullopt};
}

template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout) {
  auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    if (pred()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return pred();
}

TEST(Workers, SpawnPassesArgumentsAndKeepsSecretsOutOfArgv) {
  shell_launcher launcher("sleep 30");
  worker_supervisor sup(options(), launcher);
  auto info = sup.spawn(request());
  EXPECT_EQ(info.state, worker_state::loading);
  EXPECT_GT(info.pid, 0);
  EXPECT_EQ(info.url, "http://127.0.0.1:" + std::to_string(info.port));
  EXPECT_EQ(info.token.size(), 64u);

  ASSERT_EQ(launcher.specs.size(), 1u);
  const auto& spec = launcher.specs[0];
  EXPECT_EQ(spec.env.at("RBEE_WORKER_TOKEN"), info.token);
  EXPECT_EQ(spec.env.at("RBEE_HIVE_TOKEN"), "hive-secret");
  for (const auto& arg : spec.args) {
    EXPECT_EQ(arg.find(info.token), std::string::npos);
    EXPECT_EQ(arg.find("hive-secret"), std::string::npos);
  }
  auto has = [&](std::string flag, std::string value) {
    for (size_t i = 0; i + 1 < spec.args.size(); ++i) {
      if (spec.args[i] == flag && spec.args[i + 1] == value) return true;
    }
    return false;
  };
  EXPECT_TRUE(has("--worker-id", info.worker_id));
  EXPECT_TRUE(has("--port", std::to_string(info.port)));
  EXPECT_TRUE(has("--slots", "2"));
  EXPECT_TRUE(has("--ctx", "512"));
  EXPECT_TRUE(has("--callback-url", "http://127.0.0.1:9/v1/workers/ready"));

  // A second worker gets another port; ready moves loading -> idle.
  auto second = sup.spawn(request());
  EXPECT_NE(second.port, info.port);
  EXPECT_EQ(sup.mark_ready(info.worker_id).state, worker_state::idle);
  EXPECT_EQ(sup.find(info.worker_id)->to_json(false).count("token"), 0u);
  EXPECT_EQ(sup.find(info.worker_id)->to_json(true)["token"], info.token);
  EXPECT_THROW(sup.mark_ready("worker-unknown"), common::http_error);
}

TEST(Workers, ASplitWorkerGetsItsDevicesAndKeepsThemInItsRecord) {
  shell_launcher launcher("sleep 30");
  worker_supervisor sup(options(), launcher);
  auto split = request();
  split.backend = "cuda";
  split.devices = {1, 0};
  split.split = "layer";
  const auto info = sup.spawn(split);
  EXPECT_EQ(info.devices, (std::vector<int>{1, 0}));
  EXPECT_EQ(info.to_json(false)["devices"], nlohmann::json::array({1, 0}));
  ASSERT_EQ(launcher.specs.size(), 1u);
  const auto& args = launcher.specs[0].args;
  const auto devices = std::find(args.begin(), args.end(), "--devices");
  ASSERT_NE(devices, args.end());
  ASSERT_LT(devices + 3, args.end());
  EXPECT_EQ(*(devices + 1), "1,0");
  EXPECT_EQ(*(devices + 2), "--split");
  EXPECT_EQ(*(devices + 3), "layer");
  split.split = "tensor";
  EXPECT_EQ(sup.spawn(split).to_json(false)["split"], "tensor");
  const auto& tensor_args = launcher.specs.back().args;
  EXPECT_NE(std::find(tensor_args.begin(), tensor_args.end(), "tensor"), tensor_args.end());
  EXPECT_EQ(sup.spawn(request()).to_json(false)["devices"], nlohmann::json::array({0}));
}

TEST(Workers, CrashIsNoticedRemovedAndAnnounced) {
  shell_launcher launcher("sleep 30");
  worker_supervisor sup(options(), launcher);
  std::atomic<int> changes{0};
  sup.set_on_change([&] { changes++; });
  auto info = sup.spawn(request());
  int before = changes.load();
  ASSERT_EQ(::kill(info.pid, SIGKILL), 0);
  ASSERT_TRUE(eventually([&] { return !sup.find(info.worker_id); }, 1s));
  // The reaper announces the change after it removed the worker, outside the supervisor's lock.
  EXPECT_TRUE(eventually([&] { return changes.load() > before; }, 1s));
  auto events = sup.recent_events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].reason, "crashed");
  EXPECT_EQ(events[0].exit_status, 128 + SIGKILL);
  EXPECT_EQ(events[0].seq, 1u);
}

TEST(Workers, WorkerWhosePortWasTakenStartsAgainOnAnotherPort) {
  // The first start finds its port taken (the worker's exit status for that); the second runs.
  shell_launcher launcher(
      "if [ -e \"$RBEE_TEST_MARK\" ]; then sleep 30; else touch \"$RBEE_TEST_MARK\"; exit " +
      std::to_string(common::exit_address_in_use) + "; fi");
  auto mark = logs_dir / ("port-taken-" + std::to_string(::getpid()));
  std::filesystem::remove(mark);
  ::setenv("RBEE_TEST_MARK", mark.c_str(), 1);
  worker_supervisor sup(options(), launcher);
  auto info = sup.spawn(request());
  ASSERT_TRUE(eventually(
      [&] {
        std::lock_guard lock(launcher.mutex);
        return launcher.specs.size() == 2;
      },
      2s));
  auto now = sup.find(info.worker_id);
  ASSERT_TRUE(now) << "the worker must stay registered";
  EXPECT_EQ(now->state, worker_state::loading);
  EXPECT_NE(now->port, info.port);
  EXPECT_NE(now->url, info.url);
  EXPECT_TRUE(sup.recent_events().empty()) << "a retried start is not a crash";
  ::unsetenv("RBEE_TEST_MARK");
}

TEST(Workers, LoadingTimeoutKillsAndRecordsTheCode) {
  auto o = options();
  o.loading_timeout = 100ms;
  shell_launcher launcher("sleep 30");
  worker_supervisor sup(o, launcher);
  auto info = sup.spawn(request());
  ASSERT_TRUE(eventually([&] { return !sup.find(info.worker_id); }, 2s));
  auto events = sup.recent_events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].reason, "loading_timeout");
  EXPECT_EQ(events[0].code, "LOADING_TIMEOUT");
}

TEST(Workers, StopAllIsParallelAndForcesWorkersThatIgnoreSigterm) {
  // Ignores SIGTERM: only the SIGKILL after the grace period ends it.
  shell_launcher launcher("trap '' TERM; while true; do sleep 0.05; done");
  worker_supervisor sup(options(), launcher);
  std::vector<pid_t> pids;
  for (int i = 0; i < 3; ++i) pids.push_back(sup.spawn(request()).pid);
  std::this_thread::sleep_for(100ms);  // let the shells install their trap
  auto t0 = std::chrono::steady_clock::now();
  sup.stop_all(300ms);
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_TRUE(sup.list().empty());
  EXPECT_GE(took, 300ms);
  EXPECT_LT(took, 1500ms) << "three workers must be stopped in parallel";
  for (pid_t pid : pids) EXPECT_NE(::kill(pid, 0), 0);
  for (const auto& e : sup.recent_events()) {
    EXPECT_EQ(e.reason, "hive_shutdown");
    EXPECT_EQ(e.exit_status, 128 + SIGKILL);
  }
}

TEST(Workers, IdleTimeoutStopsGracefully) {
  auto o = options();
  o.idle_timeout = 200ms;
  shell_launcher launcher("sleep 30");
  worker_supervisor sup(o, launcher);
  auto info = sup.spawn(request());
  sup.mark_ready(info.worker_id);
  ASSERT_TRUE(eventually([&] { return !sup.find(info.worker_id); }, 2s));
  auto events = sup.recent_events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].reason, "idle_timeout");
  EXPECT_EQ(events[0].exit_status, 128 + SIGTERM);  // sleep dies of the SIGTERM itself
}

TEST(Workers, IdleTimeoutCountsFromTheIdleTimeTheWorkerReports) {
  auto o = options();
  o.idle_timeout = 400ms;
  o.health_interval = 50ms;
  shell_launcher launcher("sleep 30");
  worker_supervisor sup(o, launcher);
  auto info = sup.spawn(request());
  // A stand-in /v1/health on the worker's port answers with the idle time the test sets.
  std::atomic<int64_t> idle_ms{20};
  common::http_server health({.name = "fake-worker", .port = info.port});
  health.get("/v1/health", [&](const httplib::Request&, httplib::Response& res) {
    common::http_server::send_json(res, 200,
                                   {{"status", "healthy"},
                                    {"slots_busy", 0},
                                    {"slots_total", 1},
                                    {"idle_ms", idle_ms.load()}});
  });
  health.start();
  sup.mark_ready(info.worker_id);
  // Used briefly between every two checks: never idle for long, so never stopped.
  std::this_thread::sleep_for(1000ms);
  EXPECT_TRUE(sup.find(info.worker_id)) << "stopped although it was in use";
  idle_ms = 60000;
  ASSERT_TRUE(eventually([&] { return !sup.find(info.worker_id); }, 3s));
  auto events = sup.recent_events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].reason, "idle_timeout");
}

TEST(Report, PayloadCarriesWorkersTokensEventsAndCapabilities) {
  worker_info w;
  w.worker_id = "worker-1";
  w.state = worker_state::idle;
  w.token = "tok";
  worker_event e;
  e.worker_id = "worker-0";
  e.reason = "crashed";
  e.exit_status = 137;
  e.seq = 4;
  report_options ro{
      .queen_url = "http://q", .token = "", .node_name = "n1", .hive_url = "http://h:9200"};
  auto body = queen_reporter::make_report(ro, 7, "change", {w}, {e}, {{"backends", {"cpu"}}});
  EXPECT_EQ(body["node_name"], "n1");
  EXPECT_EQ(body["seq"], 7);
  EXPECT_EQ(body["reason"], "change");
  EXPECT_EQ(body["hive_url"], "http://h:9200");
  EXPECT_EQ(body["workers"][0]["state"], "idle");
  EXPECT_EQ(body["workers"][0]["token"], "tok");
  EXPECT_EQ(body["events"][0]["reason"], "crashed");
  EXPECT_EQ(body["events"][0]["seq"], 4);
  EXPECT_EQ(body["capabilities"]["backends"][0], "cpu");
  EXPECT_FALSE(body["version"].get<std::string>().empty());
}

}  // namespace
}  // namespace rbee::hive
