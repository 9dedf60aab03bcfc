// queen-rbee end to end: real queen, real hive and worker processes on localhost, real HTTP/SSE.
// Scenarios of spec/test-001.md: 8 (unknown node), 10/11 (cold then warm start on localhost),
// 18 + EC6 (queue in order, queue full), EC9 (invalid API key), 56 (SIGTERM cascade).
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <thread>

#include "harness/hub_server.h"
#include "queen/queen_fixture.h"

namespace rbee::e2e {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

#define REQUIRE_INFERENCE_BINARIES()                                                     \
  if (!have_hive_and_worker()) {                                                         \
    GTEST_SKIP() << "rbee-hive / llm-worker-rbee are not built: inference path skipped"; \
  }

json stories_task(int max_tokens = 20) {
  return {{"node", "localhost"},
          {"model", stories_model_ref()},
          {"prompt", "Once upon a time"},
          {"max_tokens", max_tokens},
          {"temperature", 0}};
}

TEST(QueenE2E, HealthAndUnknownNodeIs404WithHint) {
  queen_fixture q;
  q.start();
  auto health = q.client().get("/health");
  ASSERT_EQ(health.status, 200);
  EXPECT_EQ(health.json_body()["status"], "ok");
  EXPECT_EQ(health.json_body()["api_version"], "v2");

  auto s = q.run_task({{"node", "workstation"}, {"model", "m"}, {"prompt", "hi"}});
  EXPECT_EQ(s.status, 404);
  auto err = s.error.json_body()["error"];
  EXPECT_EQ(err["code"], "NODE_NOT_FOUND");
  EXPECT_NE(err["message"].get<std::string>().find("Node 'workstation' not found"),
            std::string::npos);
  EXPECT_NE(err["details"]["hint"].get<std::string>().find("rbee setup add-node"),
            std::string::npos);
}

TEST(QueenE2E, InvalidBodiesAre400NamingTheField) {
  queen_fixture q;
  q.start();
  auto c = q.client();
  auto r = c.post_json("/v2/tasks", {{"model", "m"}, {"prompt", "x"}, {"max_tokens", 0}});
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.json_body()["error"]["details"]["field"], "max_tokens");
  r = c.post_json("/v2/tasks", {{"model", "m"}, {"prompt", "x"}, {"temperature", -1}});
  EXPECT_EQ(r.json_body()["error"]["details"]["field"], "temperature");
  r = c.post_json("/v2/registry/beehives/add", {{"node_name", "w"},
                                                {"ssh_host", "x;touch /tmp/pwned"},
                                                {"ssh_user", "u"},
                                                {"install_path", "/opt/rbee"}});
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.json_body()["error"]["details"]["field"], "ssh_host");
  auto list = c.get("/v2/registry/beehives/list").json_body();
  ASSERT_EQ(list["nodes"].size(), 1u);
  EXPECT_EQ(list["nodes"][0]["node_name"], "localhost");
  auto workers = c.get("/v2/workers/list").json_body();
  EXPECT_EQ(workers, json({{"workers", json::array()}}));
}

TEST(QueenE2E, ApiKeysAreRequiredWhenConfigured) {
  queen_fixture q;
  q.start({}, {{"RBEE_API_KEY", "sekrit"}});
  auto missing = q.client().get("/v2/registry/beehives/list");
  EXPECT_EQ(missing.status, 401);
  EXPECT_EQ(missing.json_body()["error"]["code"], "MISSING_API_KEY");
  auto wrong = q.client("nope").get("/v2/registry/beehives/list");
  EXPECT_EQ(wrong.status, 401);
  EXPECT_EQ(wrong.json_body()["error"]["code"], "INVALID_API_KEY");
  EXPECT_EQ(q.client("sekrit").get("/v2/registry/beehives/list").status, 200);
  EXPECT_EQ(q.client().get("/health").status, 200);  // health stays public
  // The OpenAI routes answer in OpenAI's error shape.
  auto openai = q.client("nope").post_json("/v1/chat/completions", {{"model", "m"}});
  EXPECT_EQ(openai.status, 401);
  EXPECT_EQ(openai.json_body()["error"]["type"], "authentication_error");
  // A hive report needs a node token, not a client key.
  EXPECT_EQ(q.client("sekrit").post_json("/v2/hives/report", {{"workers", json::array()}}).status,
            401);
}

TEST(QueenE2E, RefusesNonLoopbackBindWithoutKeys) {
  temp_home home;
  std::ofstream(home.path() / "config.toml") << "# no api keys\n";
  auto r = run_cli("queen-rbee", {"--addr", "0.0.0.0:" + std::to_string(free_port())},
                   {{"RBEE_HOME", home.str()},
                    {"RBEE_API_KEY", ""},
                    {"RBEE_API_KEYS", ""},
                    {"RBEE_CONFIG", (home.path() / "config.toml").string()}},
                   "", 20s);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("token"), std::string::npos) << r.err;
}

TEST(QueenE2E, ColdThenWarmStartOnLocalhost) {
  REQUIRE_INFERENCE_BINARIES();
  queen_fixture q;
  q.start();
  auto cold = q.run_task(stories_task());
  ASSERT_EQ(cold.status, 200) << cold.error.body;
  ASSERT_FALSE(cold.first("error")) << cold.first("error")->dump();
  EXPECT_TRUE(cold.has_narration("task_accepted"));
  EXPECT_TRUE(cold.has_narration("hive_start"));
  EXPECT_TRUE(cold.has_narration("hive_ready"));
  EXPECT_TRUE(cold.has_narration("worker_spawn"));
  EXPECT_TRUE(cold.has_narration("worker_ready"));
  auto end = cold.first("end");
  ASSERT_TRUE(end);
  EXPECT_EQ(cold.tokens(), (*end)["tokens_out"].get<int>());
  EXPECT_EQ(cold.tokens(), 20);
  EXPECT_EQ(golden_continuation("Once upon a time").rfind(cold.text, 0), 0u)
      << "greedy output must be a prefix of llama.cpp's: " << cold.text;

  auto warm = q.run_task(stories_task());
  ASSERT_EQ(warm.status, 200);
  EXPECT_TRUE(warm.has_narration("worker_selected"));
  EXPECT_FALSE(warm.has_narration("hive_start"));
  EXPECT_FALSE(warm.has_narration("worker_spawn"));
  EXPECT_EQ(warm.text, cold.text);

  auto workers = q.client().get("/v2/workers/list").json_body()["workers"];
  ASSERT_EQ(workers.size(), 1u);
  EXPECT_EQ(workers[0]["node"], "localhost");
  EXPECT_EQ(workers[0]["model_ref"], stories_model_ref());

  auto metrics = q.client().get("/metrics");
  EXPECT_NE(metrics.body.find("rbee_queen_requests_total"), std::string::npos);
  EXPECT_NE(metrics.body.find("rbee_queen_time_to_first_token_seconds"), std::string::npos);
  EXPECT_NE(metrics.body.find("rbee_queen_workers"), std::string::npos);

  // SIGTERM cascades: the queen exits 0 and the hive it started is gone.
  EXPECT_EQ(q.queen().stop(std::chrono::seconds(45)), 0);
  common::client_options o;
  o.connect_timeout = 500ms;
  EXPECT_THROW(common::http_client(q.hive_url(), o).get("/v1/health"), common::connection_error);
}

// Submits a task in the background and waits until the queen narrated `action` for it
// (task_accepted, queued, ...), so submissions happen in a known order. The cold start of the
// first task (hive start + model load) keeps the only slot taken while the others arrive.
struct background_task {
  std::future<task_stream> result;
  std::string task_id;
};

background_task submit(queen_fixture& q, const json& body, const std::string& action,
                       std::function<void()> on_first_token = {}) {
  auto ready = std::make_shared<std::promise<std::string>>();
  background_task t;
  t.result = std::async(std::launch::async, [&q, body, action, ready, on_first_token] {
    std::string id;
    bool signalled = false;
    bool token_seen = false;
    auto s = q.run_task(body, "", [&](const json& e) {
      if (e.value("action", "") == "task_accepted") id = e.value("task_id", "");
      if (!signalled && e.value("action", "") == action) {
        signalled = true;
        ready->set_value(id);
      }
      if (!token_seen && e.value("type", "") == "token") {
        token_seen = true;
        if (on_first_token) on_first_token();
      }
    });
    if (!signalled) ready->set_value("");
    return s;
  });
  auto f = ready->get_future();
  if (f.wait_for(120s) == std::future_status::ready) t.task_id = f.get();
  return t;
}

TEST(QueenE2E, OneSlotServesQueuedTasksInOrderAndAFullQueueIs503) {
  REQUIRE_INFERENCE_BINARIES();
  queen_fixture q;
  q.start({"--slots-per-worker", "1", "--queue-size", "2"});
  std::mutex mutex;
  std::vector<int> order;
  auto mark = [&](int i) {
    return [&, i] {
      std::lock_guard lock(mutex);
      order.push_back(i);
    };
  };
  auto t0 = submit(q, stories_task(16), "cold_start", mark(0));
  auto t1 = submit(q, stories_task(16), "queued", mark(1));
  auto t2 = submit(q, stories_task(16), "queued", mark(2));
  ASSERT_FALSE(t0.task_id.empty());
  ASSERT_FALSE(t1.task_id.empty());
  ASSERT_FALSE(t2.task_id.empty());
  auto extra = q.run_task(stories_task(4));
  EXPECT_EQ(extra.status, 503);
  EXPECT_EQ(extra.error.json_body()["error"]["code"], "QUEUE_FULL");
  EXPECT_FALSE(extra.error.header("Retry-After").empty());
  for (auto* t : {&t0, &t1, &t2}) {
    auto s = t->result.get();
    EXPECT_EQ(s.status, 200);
    EXPECT_TRUE(s.first("end")) << (s.first("error") ? s.first("error")->dump() : "");
  }
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2}));
}

TEST(QueenE2E, DeleteCancelsAQueuedTaskAndIsIdempotent) {
  REQUIRE_INFERENCE_BINARIES();
  queen_fixture q;
  q.start({"--slots-per-worker", "1"});
  auto first = submit(q, stories_task(16), "cold_start");
  auto waiting = submit(q, stories_task(16), "queued");
  ASSERT_FALSE(waiting.task_id.empty());
  EXPECT_EQ(q.client().del("/v2/tasks/" + waiting.task_id).status, 204);
  ASSERT_EQ(waiting.result.wait_for(10s), std::future_status::ready);
  auto s = waiting.result.get();
  EXPECT_EQ(s.tokens(), 0);
  EXPECT_EQ(q.client().del("/v2/tasks/" + waiting.task_id).status, 204);
  EXPECT_EQ(q.client().del("/v2/tasks/task-unknown").status, 204);
  EXPECT_EQ(first.result.get().status, 200);
  EXPECT_EQ(q.client().get("/metrics").body.find("rbee_queen_queue_depth 1"), std::string::npos);
}

TEST(QueenE2E, ColdStartDownloadsFromTheHubWithProgress) {
  REQUIRE_INFERENCE_BINARIES();
  hub_server hub;
  hub.add_file("rbee-test/stories", "stories260K.gguf", stories_model_path());
  hub.set_fault("rbee-test/stories", "stories260K.gguf",
                hub_fault{.chunk_delay = std::chrono::milliseconds(20)});
  hub.start();
  queen_fixture q;
  q.start({}, {{"HF_ENDPOINT", hub.url()}});
  json task = stories_task(12);
  task["model"] = "hf:rbee-test/stories:stories260K.gguf";
  auto s = q.run_task(task);
  ASSERT_EQ(s.status, 200) << s.error.body;
  ASSERT_FALSE(s.first("error")) << s.first("error")->dump();
  EXPECT_TRUE(s.has_narration("download_start"));
  EXPECT_TRUE(s.has_narration("download_progress"));
  EXPECT_TRUE(s.has_narration("download_complete"));
  EXPECT_EQ(golden_continuation("Once upon a time").rfind(s.text, 0), 0u) << s.text;
  EXPECT_EQ(hub.downloads("rbee-test/stories", "stories260K.gguf").size(), 1u);

  // Already in the catalog: a download request says so and fetches nothing.
  std::vector<json> events;
  auto c = q.client();
  int status = c.post_sse("/v2/models/download", {{"node", "localhost"}, {"model", task["model"]}},
                          [&](const common::sse_event& ev) {
                            if (!ev.is_done()) events.push_back(ev.json());
                            return !ev.is_done();
                          });
  EXPECT_EQ(status, 200);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back()["action"], "model_cached");
  EXPECT_EQ(hub.downloads("rbee-test/stories", "stories260K.gguf").size(), 1u);

  // The repository's reference is satisfied by the cached file of that repository: nothing is
  // asked of the hub (before, the queen compared the text and "downloaded" the repo again).
  const size_t hub_requests = hub.requests().size();
  events.clear();
  status =
      c.post_sse("/v2/models/download", {{"node", "localhost"}, {"model", "hf:rbee-test/stories"}},
                 [&](const common::sse_event& ev) {
                   if (!ev.is_done()) events.push_back(ev.json());
                   return !ev.is_done();
                 });
  EXPECT_EQ(status, 200);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back()["action"], "model_cached");
  EXPECT_EQ(hub.requests().size(), hub_requests);

  // A model the hub does not have: an error event with the hive's code.
  events.clear();
  c.post_sse("/v2/models/download",
             {{"node", "localhost"}, {"model", "hf:rbee-test/missing:none.gguf"}},
             [&](const common::sse_event& ev) {
               if (!ev.is_done()) events.push_back(ev.json());
               return !ev.is_done();
             });
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back()["type"], "error");
  EXPECT_EQ(events.back()["code"], "MODEL_NOT_FOUND") << events.back().dump();
}

}  // namespace
}  // namespace rbee::e2e
