// Workers under a real rbee-hive: spawn, ready callback, supervision and shutdown with real
// llm-worker-rbee processes (test-001 B11, C16/17/19, F33-F38, G42/G48, H49-H52).
#include <signal.h>
#include <sys/types.h>

#include <mutex>

#include "common/sqlite.h"
#include "hive_fixture.h"

namespace rbee::e2e::hive_test {
namespace {

bool process_alive(pid_t pid) {
  return ::kill(pid, 0) == 0;
}

// A stand-in queen that records the hive's reports (POST /v2/hives/report).
class report_sink {
 public:
  report_sink() {
    server_.Post("/v2/hives/report", [this](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard lock(mutex_);
      reports_.push_back({std::chrono::steady_clock::now(), json::parse(req.body),
                          req.get_header_value("Authorization")});
      res.set_content("{}", "application/json");
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~report_sink() {
    server_.stop();
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  struct report {
    std::chrono::steady_clock::time_point at;
    json body;
    std::string authorization;
  };
  std::vector<report> reports() const {
    std::lock_guard lock(mutex_);
    return reports_;
  }
  // The first report received after `since` with an event for worker_id.
  std::optional<report> removal_of(const std::string& worker_id) const {
    for (const auto& r : reports()) {
      for (const auto& e : r.body.at("events")) {
        if (e.at("worker_id") == worker_id) return r;
      }
    }
    return std::nullopt;
  }

 private:
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
  mutable std::mutex mutex_;
  std::vector<report> reports_;
};

class HiveWorkers : public hive_fixture {
 protected:
  void SetUp() override {
    hive_fixture::SetUp();
    if (!std::filesystem::exists(worker_binary())) {
      GTEST_SKIP() << "no worker binary at " << worker_binary()
                   << " (build llm-worker-rbee or set RBEE_WORKER_BINARY)";
    }
  }

  json spawn(const std::string& ref, const json& extra = json::object()) {
    json body = {{"model_ref", ref}, {"backend", "cpu"}, {"device", 0}};
    body.update(extra);
    auto res = client(120s).post_json("/v1/workers/spawn", body);
    EXPECT_EQ(res.status, 200) << res.body;
    return res.ok() ? res.json_body() : json::object();
  }
  std::optional<json> worker(const std::string& id) {
    for (const auto& w : workers()) {
      if (w["worker_id"] == id) return w;
    }
    return std::nullopt;
  }
  bool wait_state(const std::string& id, const std::string& state,
                  std::chrono::milliseconds timeout = 30s) {
    return eventually(
        [&] {
          auto w = worker(id);
          return w && (*w)["state"] == state;
        },
        timeout);
  }
  // The recorded exit of a worker; an empty object when there is none.
  json exit_of(const std::string& id) {
    json list = get("/v1/workers/list").json_body();
    for (const auto& e : list.at("recent_exits")) {
      if (e.at("worker_id") == id) return e;
    }
    return json::object();
  }
  std::string local_ref() const { return "file:" + (shared_models / "stories260K.gguf").string(); }
};

TEST_F(HiveWorkers, ColdSpawnDownloadsVerifiesAndTheWorkerBecomesIdle) {
  start_hive();
  EXPECT_EQ(get("/v1/workers/list").json_body()["workers"], json::array());  // C16

  auto spawned = spawn(test_ref);
  ASSERT_EQ(spawned["state"], "loading");
  std::string id = spawned["worker_id"];
  EXPECT_TRUE(spawned["url"].get<std::string>().starts_with("http://127.0.0.1:"));
  EXPECT_EQ(spawned["model"]["sha256"], hub.sha256(test_repo, test_file));
  EXPECT_EQ(spawned["model"]["quantization"], "Q4_K_M");
  EXPECT_EQ(hub.downloads(test_repo, test_file).size(), 1u);

  ASSERT_TRUE(wait_state(id, "idle")) << "worker never called back ready";
  auto w = *worker(id);
  EXPECT_EQ(w["model_ref"], test_ref);
  EXPECT_EQ(w["backend"], "cpu");
  EXPECT_GT(w["pid"].get<int>(), 0);
  EXPECT_FALSE(w["token"].get<std::string>().empty());  // authenticated caller: the queen needs it
  EXPECT_GT(w["ready_at_unix"].get<int64_t>(), 0);

  // The worker answers at its URL with its own token (and not without).
  common::http_client direct(w["url"].get<std::string>(),
                             {.bearer_token = w["token"].get<std::string>()});
  EXPECT_EQ(direct.get("/v1/health").status, 200);

  // D22: the second spawn of the same model downloads nothing.
  auto second = spawn(test_ref);
  EXPECT_NE(second["worker_id"], id);
  EXPECT_NE(second["port"], w["port"]);
  EXPECT_EQ(hub.downloads(test_repo, test_file).size(), 1u);
  EXPECT_TRUE(wait_state(second["worker_id"], "idle"));

  // Its log is kept and served, also as a follow stream.
  auto lines = sse("/v1/logs?worker=" + id);
  EXPECT_FALSE(lines.empty());
  EXPECT_EQ(lines.front()["worker_id"], id);
  json first_followed;
  auto c = client(10s);
  c.get_sse("/v1/logs?worker=" + id + "&follow=1", [&](const common::sse_event& e) {
    first_followed = e.json();
    return false;  // leaving the stream ends it
  });
  EXPECT_EQ(first_followed["line"], lines.front()["line"]);

  auto metrics = get("/metrics").body;
  EXPECT_NE(metrics.find("rbee_hive_workers{state=\"idle\"} 2"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("rbee_hive_downloads_total{result=\"ok\"} 1"), std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("rbee_hive_download_bytes_total"), std::string::npos);
}

TEST_F(HiveWorkers, KilledWorkerIsRemovedAndReportedWithinOneSecond) {
  report_sink queen;
  start_hive(
      {"--queen-url", queen.url(), "--node-name", "testnode", "--report-interval-ms", "60000"});
  auto spawned = spawn(local_ref());
  std::string id = spawned["worker_id"];
  ASSERT_TRUE(wait_state(id, "idle"));
  ASSERT_TRUE(eventually(
      [&] {
        auto r = queen.reports();
        if (r.empty()) return false;
        const auto& w = r.back().body.at("workers");
        return w.size() == 1 && w[0].at("state") == "idle";
      },
      5s));

  auto killed_at = std::chrono::steady_clock::now();
  ASSERT_EQ(::kill(spawned["pid"].get<pid_t>(), SIGKILL), 0);
  EXPECT_TRUE(eventually([&] { return !worker(id); }, 1s)) << "still listed after 1 s";
  ASSERT_TRUE(eventually([&] { return queen.removal_of(id).has_value(); }, 1s))
      << "not reported within 1 s";
  auto report = *queen.removal_of(id);
  EXPECT_LT(report.at - killed_at, 1s);
  EXPECT_EQ(report.body["node_name"], "testnode");
  EXPECT_EQ(report.authorization, "Bearer " + token);
  EXPECT_TRUE(report.body["workers"].empty());
  EXPECT_EQ(report.body["events"][0]["reason"], "crashed");
  EXPECT_EQ(report.body["events"][0]["exit_status"], 128 + SIGKILL);
  EXPECT_EQ(report.body["capabilities"]["backends"][0], "cpu");
  EXPECT_EQ(exit_of(id).value("reason", ""), "crashed");

  // G42: the next spawn works.
  auto next = spawn(local_ref());
  EXPECT_TRUE(wait_state(next["worker_id"], "idle"));

  // The last report on shutdown says the node has no workers left.
  EXPECT_EQ(hive->stop(20s), 0);
  auto final_report = queen.reports().back().body;
  EXPECT_EQ(final_report["reason"], "shutdown");
  EXPECT_TRUE(final_report["workers"].empty());
  // The removal went out with the last report or the change report just before it.
  auto removal = queen.removal_of(next["worker_id"]);
  ASSERT_TRUE(removal);
  for (const auto& e : removal->body["events"]) {
    if (e["worker_id"] == next["worker_id"]) {
      EXPECT_EQ(e["reason"], "hive_shutdown");
    }
  }
}

TEST_F(HiveWorkers, HungWorkerIsRemovedAfterThreeFailedHealthChecks) {
  start_hive({"--health-interval-ms", "200"});
  auto spawned = spawn(local_ref());
  std::string id = spawned["worker_id"];
  pid_t pid = spawned["pid"];
  ASSERT_TRUE(wait_state(id, "idle"));
  std::this_thread::sleep_for(700ms);
  ASSERT_TRUE(worker(id)) << "a healthy worker was removed";

  ASSERT_EQ(::kill(pid, SIGSTOP), 0);
  auto stopped_at = std::chrono::steady_clock::now();
  ASSERT_TRUE(eventually([&] { return !worker(id); }, 5s));
  // Three failures at ~200 ms apart (each waiting up to the 200 ms timeout) take > 400 ms.
  EXPECT_GT(std::chrono::steady_clock::now() - stopped_at, 400ms);
  EXPECT_EQ(exit_of(id).value("reason", ""), "health_check_failed");
  EXPECT_TRUE(eventually([&] { return !process_alive(pid); }, 2s));
  EXPECT_TRUE(hive->running());
}

TEST_F(HiveWorkers, IdleTimeoutStopsTheWorkerAndTheHiveLives) {
  start_hive({"--idle-timeout-ms", "1500", "--health-interval-ms", "300"});
  auto spawned = spawn(local_ref());
  std::string id = spawned["worker_id"];
  ASSERT_TRUE(wait_state(id, "idle"));
  std::this_thread::sleep_for(500ms);
  EXPECT_TRUE(worker(id)) << "stopped before the idle timeout";
  ASSERT_TRUE(eventually([&] { return !worker(id); }, 10s));
  auto exit = exit_of(id);
  EXPECT_EQ(exit["reason"], "idle_timeout");
  EXPECT_EQ(exit["exit_status"], 0);  // graceful
  EXPECT_FALSE(process_alive(spawned["pid"]));
  EXPECT_EQ(get("/v1/health").json_body()["status"], "alive");
  // EC10: the next request is a cold start.
  EXPECT_TRUE(wait_state(spawn(local_ref())["worker_id"], "idle"));
}

TEST_F(HiveWorkers, LoadingTimeoutKillsTheWorker) {
  // The worker's test-only load delay keeps it loading past the hive's timeout.
  start_hive(
      {"--loading-timeout-ms", "500", "--worker-arg=--debug-load-delay-ms", "--worker-arg=5000"});
  auto spawned = spawn(local_ref());
  std::string id = spawned["worker_id"];
  ASSERT_TRUE(eventually([&] { return !worker(id); }, 5s));
  auto exit = exit_of(id);
  EXPECT_EQ(exit["reason"], "loading_timeout");
  EXPECT_EQ(exit["code"], "LOADING_TIMEOUT");
  EXPECT_FALSE(process_alive(spawned["pid"]));
  EXPECT_TRUE(hive->running());
}

TEST_F(HiveWorkers, ShutdownRequestStopsOneWorker) {
  start_hive();
  auto spawned = spawn(local_ref());
  std::string id = spawned["worker_id"];
  ASSERT_TRUE(wait_state(id, "idle"));
  auto res = post("/v1/workers/shutdown", {{"worker_id", id}});
  ASSERT_EQ(res.status, 200) << res.body;
  ASSERT_TRUE(eventually([&] { return !worker(id); }, 10s));
  EXPECT_EQ(exit_of(id).value("reason", ""), "shutdown_requested");
  EXPECT_EQ(post("/v1/workers/shutdown", {{"worker_id", id}}).status, 404);
}

TEST_F(HiveWorkers, SigtermWithThreeWorkersStopsAllAndExitsZero) {
  start_hive({"--stop-grace-ms", "5000"});
  std::vector<pid_t> pids;
  for (const auto& ref : {test_ref, local_ref(), local_ref()}) {
    auto spawned = spawn(ref);
    pids.push_back(spawned["pid"]);
    ASSERT_TRUE(wait_state(spawned["worker_id"], "idle"));
  }
  ASSERT_EQ(workers().size(), 3u);

  auto t0 = std::chrono::steady_clock::now();
  int status = hive->stop(20s);  // SIGTERM, SIGKILL only after 20 s
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(status, 0);
  EXPECT_LT(took, 8s) << "the shutdown is bounded by the 5 s grace";
  for (pid_t pid : pids) EXPECT_TRUE(eventually([&] { return !process_alive(pid); }, 1s)) << pid;

  // H52: the catalog is intact and readable.
  auto db = common::database::open(home.path() / "models.db");
  auto st = db.prepare("SELECT reference, sha256 FROM models ORDER BY reference");
  std::vector<std::string> refs;
  while (st.step()) refs.push_back(st.column_text(0));
  EXPECT_EQ(refs, (std::vector<std::string>{local_ref(), test_ref}));
  auto check = db.prepare("PRAGMA integrity_check");
  ASSERT_TRUE(check.step());
  EXPECT_EQ(check.column_text(0), "ok");
}

}  // namespace
}  // namespace rbee::e2e::hive_test
