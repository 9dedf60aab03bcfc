// spec/test-001.md section F, worker preflight, startup and health on `localhost`: scenarios
// 33-38. Slow loading comes from the worker's test-only --debug-load-delay-ms, passed by a hive
// the scenario starts itself (persistent mode) with --worker-arg.
#include <gtest/gtest.h>

#include <future>

#include "harness/scenario_fixture.h"

namespace rbee::e2e::scenario {
namespace {

using nlohmann::json;

class Scenarios_F : public local_node_test {};

TEST_F(Scenarios_F, S33_ram_check) {
  // Passes with the machine's real free RAM...
  q.start();
  auto ok = q.infer(stories_ref(), {"--max-tokens", "2"});
  EXPECT_EQ(ok.exit_code, 0) << ok.err << q.logs();
  q.stop_all();

  // ... fails when the node has (is configured to have) 1 MB free.
  scenario_queen small;
  small.set_env("RBEE_RAM_LIMIT", "1000000");
  small.start();
  auto s = small.run_task(stories_task());
  auto err = error_of(s);
  ASSERT_TRUE(err) << s.status;
  EXPECT_EQ((*err)["code"], "INSUFFICIENT_RAM") << err->dump();
  auto r = small.infer(stories_ref(), {"--max-tokens", "2"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.err, "RAM")) << r.err;
  EXPECT_TRUE(contains(r.err, "1.0 MB") || contains(r.err, "1000000") ||
              contains(r.err, "0.0 GB") || contains(r.err, "available"))
      << "required vs available: " << r.err;
  EXPECT_TRUE(contains(r.err, "quantization")) << "hint: smaller quantization: " << r.err;
  EXPECT_TRUE(small.workers().empty());
  small.stop_all();
}

TEST_F(Scenarios_F, S34_backend_check) {
  q.start();
  auto cpu = q.infer(stories_ref(), {"--backend", "cpu", "--max-tokens", "2"});
  EXPECT_EQ(cpu.exit_code, 0) << cpu.err << q.logs();
  if (have_cuda_device())
    GTEST_SKIP() << "this machine has CUDA: no unavailable backend to ask for";
  auto s = q.run_task({{"node", "localhost"},
                       {"model", stories_ref()},
                       {"prompt", "x"},
                       {"max_tokens", 2},
                       {"backend", "cuda"}});
  auto err = error_of(s);
  ASSERT_TRUE(err) << s.status;
  EXPECT_EQ((*err)["code"], "BACKEND_UNAVAILABLE") << err->dump();
  EXPECT_TRUE(contains(err->dump(), "cpu")) << "lists what exists: " << err->dump();
  auto r = q.infer(stories_ref(), {"--backend", "cuda", "--max-tokens", "2"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.err, "cuda") && contains(r.err, "cpu")) << r.err;
}

TEST_F(Scenarios_F, S35_insufficient_vram) {
  give_hive_a_nearly_full_gpu(q);
  q.start();
  auto s = q.run_task({{"node", "localhost"},
                       {"model", stories_ref()},
                       {"prompt", "x"},
                       {"max_tokens", 2},
                       {"backend", "cuda"},
                       {"device", "0"}});
  auto err = error_of(s);
  ASSERT_TRUE(err) << s.status;
  EXPECT_EQ((*err)["code"], "INSUFFICIENT_VRAM") << err->dump();
  auto r = q.infer(stories_ref(), {"--backend", "cuda", "--device", "0", "--max-tokens", "2"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.err, "VRAM")) << r.err;
}

// Slow loading: the worker answers HTTP while it loads, reports progress, then becomes ready
// and the hive moves it loading -> idle on its callback.
class Scenarios_F_Slow : public Scenarios_F {
 protected:
  void start_slow(int delay_ms, std::vector<std::string> extra = {}) {
    q.start();
    extra.insert(extra.end(), {"--worker-arg=--debug-load-delay-ms=" + std::to_string(delay_ms)});
    q.start_own_hive(extra);
  }
  // The hive's first worker entry, once it has one with a URL.
  std::optional<json> hive_worker() {
    auto r = q.own_hive_client().get("/v1/workers/list");
    if (r.status != 200) return std::nullopt;
    for (const auto& w : r.json_body().value("workers", json::array())) {
      if (!w.value("url", "").empty()) return w;
    }
    return std::nullopt;
  }
};

TEST_F(Scenarios_F_Slow, S36_startup_loading_progress) {
  start_slow(3000);
  auto task = std::async(std::launch::async, [&] { return q.run_task(stories_task()); });
  std::optional<json> w;
  ASSERT_TRUE(eventually([&] { return (w = hive_worker()).has_value(); }, 20s)) << q.logs();
  common::client_options o;
  o.bearer_token = w->value("token", "");
  common::http_client worker(w->value("url", ""), o);
  // The process needs a moment to bind; it must answer long before its 3 s load is done.
  common::http_response ready;
  ASSERT_TRUE(eventually(
      [&] {
        try {
          ready = worker.get("/v1/ready");
          return true;
        } catch (const common::connection_error&) {
          return false;
        }
      },
      1500ms, 20ms));
  ASSERT_EQ(ready.status, 200) << ready.body;
  auto rj = ready.json_body();
  EXPECT_EQ(rj.value("ready", true), false) << rj.dump();
  EXPECT_EQ(rj.value("state", ""), "loading") << rj.dump();
  EXPECT_EQ(rj.value("progress_url", ""), "/v1/loading/progress") << rj.dump();
  std::vector<json> events;
  worker.get_sse("/v1/loading/progress", [&](const common::sse_event& ev) {
    if (ev.is_done()) return false;
    events.push_back(ev.json());
    auto stage = events.back().value("stage", "");
    return stage != "ready" && stage != "error";
  });
  int layer_events = 0;
  for (const auto& e : events) {
    if (e.value("stage", "") == "loading" && e.contains("layers_loaded")) {
      ++layer_events;
      EXPECT_EQ(e.value("layers_total", 0), 5) << e.dump();
    }
  }
  EXPECT_GE(layer_events, 2) << "progress shows the layers";
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().value("stage", ""), "ready");
  auto after = worker.get("/v1/ready").json_body();
  EXPECT_EQ(after.value("ready", false), true) << after.dump();
  auto s = task.get();
  EXPECT_TRUE(s.first("end")) << s.error.body;
  EXPECT_GE(s.count("narration", "loading_progress"), 1);
}

TEST_F(Scenarios_F_Slow, S37_ready_callback_registers_worker) {
  start_slow(2000);
  auto task = std::async(std::launch::async, [&] { return q.run_task(stories_task()); });
  std::optional<json> w;
  ASSERT_TRUE(eventually([&] { return (w = hive_worker()).has_value(); }, 20s)) << q.logs();
  EXPECT_EQ(w->value("state", ""), "loading") << w->dump();
  std::string id = w->value("worker_id", "");
  auto s = task.get();
  ASSERT_TRUE(s.first("end")) << s.error.body << q.logs();
  // The callback moved it to idle in the hive, and the queen lists it idle.
  auto now = hive_worker();
  ASSERT_TRUE(now);
  EXPECT_EQ(now->value("worker_id", ""), id);
  EXPECT_EQ(now->value("state", ""), "idle") << now->dump();
  EXPECT_TRUE(contains(slurp(q.home().logs_dir() / "own-hive.log"), "ready")) << q.logs();
  auto ws = q.workers();
  ASSERT_EQ(ws.size(), 1u);
  EXPECT_EQ(ws[0]["worker_id"], id);
  EXPECT_EQ(ws[0]["state"], "idle");
}

TEST_F(Scenarios_F_Slow, S38_loading_timeout) {
  start_slow(30000, {"--loading-timeout-ms", "1500"});
  auto started = std::chrono::steady_clock::now();
  auto r = q.infer(stories_ref(), {"--max-tokens", "2"}, "localhost", 60s);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 20s);
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_TRUE(contains(r.err, "LOADING_TIMEOUT") || contains(r.err, "did not finish loading"))
      << r.err;
  // The worker was killed and its resources freed.
  EXPECT_TRUE(eventually([&] { return worker_pids(q).empty(); }, 10s));
  EXPECT_TRUE(eventually([&] { return !hive_worker().has_value(); }, 10s));
  EXPECT_TRUE(q.workers().empty()) << q.workers().dump();
  EXPECT_TRUE(q.hive_alive());
}

}  // namespace
}  // namespace rbee::e2e::scenario
