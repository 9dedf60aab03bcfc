// llm-worker-rbee lifecycle over real HTTP: loading progress and readiness, the ready
// callback, load failures, bad input, auth, SIGTERM and admin shutdown.
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <thread>

#include <httplib.h>

#include "worker_fixture.h"

namespace rbee::e2e::worker_test {
namespace {

class WorkerLifecycle : public ::testing::Test {
 protected:
  void SetUp() override { ignore_sigpipe(); }

  // Waits for the process to exit by itself; returns its status (-1 on timeout).
  static int wait_exit(daemon_process& p, std::chrono::seconds timeout) {
    auto deadline = steady::now() + timeout;
    while (steady::now() < deadline) {
      if (auto status = p.exit_status()) return *status;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return -1;
  }

  temp_home home_;
};

TEST_F(WorkerLifecycle, LoadingProgressThenReady) {
  // Test-only delay: the 1 MB model would otherwise load before we can look.
  worker_process worker(home_, {"--model", stories, "--debug-load-delay-ms", "1500"});
  auto client = worker.client();

  json ready = client.get("/v1/ready").json_body();
  EXPECT_EQ(ready["state"], "loading") << ready.dump();
  EXPECT_EQ(ready["ready"], false);
  EXPECT_EQ(ready["model_loaded"], false);
  EXPECT_EQ(ready["progress_url"], "/v1/loading/progress");
  json health = client.get("/v1/health").json_body();
  EXPECT_EQ(health["status"], "loading");
  EXPECT_EQ(health["worker_id"], "w-test");
  EXPECT_EQ(health["model_ref"], "file:" + stories);
  EXPECT_FALSE(health.value("version", "").empty());
  EXPECT_FALSE(health.contains("idle_ms")) << "no slots exist while loading";

  stream_result early = infer(client, greedy("Once", 4));
  EXPECT_EQ(early.status, 503);
  EXPECT_EQ(early.error.json_body()["error"]["code"], "LOADING");
  EXPECT_NE(early.error.header("Retry-After"), "");

  std::vector<json> events;
  bool done = false;
  int status =
      client.get_sse(ready["progress_url"].get<std::string>(), [&](const common::sse_event& e) {
        if (e.is_done()) {
          done = true;
          return false;
        }
        events.push_back(e.json());
        return true;
      });
  ASSERT_EQ(status, 200);
  EXPECT_TRUE(done);
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events.back()["stage"], "ready");
  int last_layers = -1, distinct = 0;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    ASSERT_EQ(events[i]["stage"], "loading") << events[i].dump();
    int layers = events[i]["layers_loaded"];
    EXPECT_GE(layers, last_layers);
    if (layers != last_layers) ++distinct;
    last_layers = layers;
    EXPECT_EQ(events[i]["layers_total"], 5);
    EXPECT_LE(events[i]["bytes_loaded"].get<uint64_t>(), events[i]["bytes_total"].get<uint64_t>());
  }
  EXPECT_GE(distinct, 2) << "progress did not increase";

  ready = client.get("/v1/ready").json_body();
  EXPECT_EQ(ready["state"], "idle");
  EXPECT_EQ(ready["ready"], true);
  EXPECT_EQ(ready["model_loaded"], true);

  // Idle accounting for the hive: idle since loading, then counted from the last job's end.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  json idle = client.get("/v1/health").json_body();
  EXPECT_EQ(idle["status"], "healthy");
  EXPECT_EQ(idle["slots_busy"], 0);
  EXPECT_GE(idle["slots_total"].get<int>(), 1);
  EXPECT_GE(idle["idle_ms"].get<int64_t>(), 250);
  auto job_start = std::chrono::steady_clock::now();
  EXPECT_EQ(infer(client, greedy("Once", 4)).status, 200);
  json after = client.get("/v1/health").json_body();
  auto since_job = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - job_start);
  EXPECT_LE(after["idle_ms"].get<int64_t>(), since_job.count());
}

TEST_F(WorkerLifecycle, ReadyCallbackReachesTheHive) {
  httplib::Server hive;
  std::mutex mutex;
  json received;
  std::string auth;
  hive.Post("/v1/workers/ready", [&](const httplib::Request& req, httplib::Response& res) {
    std::lock_guard lock(mutex);
    received = json::parse(req.body);
    auth = req.get_header_value("Authorization");
    res.set_content("{}", "application/json");
  });
  int hive_port = hive.bind_to_any_port("127.0.0.1");
  std::thread serve([&] { hive.listen_after_bind(); });

  {
    worker_process worker(
        home_,
        {"--model", stories, "--model-ref", "hf:test/stories:stories260K.gguf", "--callback-url",
         "http://127.0.0.1:" + std::to_string(hive_port) + "/v1/workers/ready"},
        {{"RBEE_HIVE_TOKEN", "hive-secret"}});
    worker.wait_ready();
    auto deadline = steady::now() + std::chrono::seconds(10);
    while (steady::now() < deadline) {
      {
        std::lock_guard lock(mutex);
        if (!received.is_null()) break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    std::lock_guard lock(mutex);
    EXPECT_EQ(received["worker_id"], "w-test");
    EXPECT_EQ(received["url"], worker.url());
    EXPECT_EQ(received["model_ref"], "hf:test/stories:stories260K.gguf");
    EXPECT_EQ(received["backend"], "cpu");
    EXPECT_EQ(received["device"], 0);
    EXPECT_EQ(auth, "Bearer hive-secret");
  }
  hive.stop();
  serve.join();
}

TEST_F(WorkerLifecycle, CorruptModelIsReportedThenTheWorkerExits) {
  auto path = home_.file("models/corrupt.gguf");
  {
    std::ofstream out(path, std::ios::binary);
    out << "GGUF this is not a model";
  }
  worker_process worker(home_, {"--model", path.string()});
  auto client = worker.client();
  json ready = wait_for_error_state(client);
  EXPECT_EQ(ready["state"], "error") << ready.dump();
  EXPECT_EQ(ready["ready"], false);
  EXPECT_EQ(ready["error"]["code"], "MODEL_CORRUPT") << ready.dump();
  EXPECT_FALSE(ready["error"].value("message", "").empty());
  EXPECT_EQ(client.get("/v1/health").json_body()["status"], "unhealthy");
  EXPECT_EQ(wait_exit(worker.process(), std::chrono::seconds(15)), 1)
      << worker.process().log_text();
}

TEST_F(WorkerLifecycle, MissingModelFileFailsTheProgressStream) {
  worker_process worker(
      home_, {"--model", (home_.path() / "absent.gguf").string(), "--debug-load-delay-ms", "0"});
  auto client = worker.client();
  std::vector<json> events;
  int status = client.get_sse("/v1/loading/progress", [&](const common::sse_event& e) {
    if (e.is_done()) return false;
    events.push_back(e.json());
    return true;
  });
  ASSERT_EQ(status, 200);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back()["stage"], "error");
  EXPECT_EQ(events.back()["code"], "MODEL_NOT_FOUND") << events.back().dump();
  EXPECT_EQ(wait_exit(worker.process(), std::chrono::seconds(15)), 1);
}

TEST_F(WorkerLifecycle, MissingBackendIsAnErrorNamingWhatExists) {
  // No silent GPU -> CPU fallback (SPEC §5).
  worker_process worker(home_, {"--model", stories, "--backend", "cuda", "--device", "99"});
  auto client = worker.client();
  json ready = wait_for_error_state(client);
  ASSERT_EQ(ready["state"], "error") << ready.dump();
  EXPECT_EQ(ready["error"]["code"], "BACKEND_UNAVAILABLE");
  EXPECT_NE(ready["error"].value("message", "").find("cpu"), std::string::npos) << ready.dump();
  EXPECT_EQ(wait_exit(worker.process(), std::chrono::seconds(15)), 1);
}

TEST_F(WorkerLifecycle, TokenFromFile) {
  auto token_file = home_.file("secrets/worker.token");
  {
    std::ofstream out(token_file);
    out << "file-secret\n";
  }
  worker_process worker(home_, {"--model", stories, "--token-file", token_file.string()});
  worker.wait_ready();
  EXPECT_EQ(worker.client().get("/metrics").status, 401);
  EXPECT_EQ(worker.client("file-secret").get("/metrics").status, 200);
}

TEST_F(WorkerLifecycle, BadInputGetsTheRightErrorAndTheWorkerKeepsServing) {
  worker_process worker(home_, {"--model", stories, "--ctx", "256"},
                        {{"RBEE_WORKER_TOKEN", "worker-secret"}});
  worker.wait_ready();
  auto client = worker.client("worker-secret");

  struct bad_case {
    std::string body;
    std::string field;  // "" when the error names no field
  };
  std::string huge_prompt;
  for (int i = 0; i < 300; ++i) huge_prompt += "Once upon a time ";
  const std::vector<bad_case> cases = {
      {"{not json", ""},
      {"[1,2,3]", ""},
      {R"({})", "prompt"},
      {R"({"prompt": 42})", "prompt"},
      {R"({"prompt": ""})", "prompt"},
      {R"({"prompt": "hi", "max_tokens": 0})", "max_tokens"},
      {R"({"prompt": "hi", "max_tokens": 100000})", "max_tokens"},
      {R"({"prompt": "hi", "max_tokens": "ten"})", "max_tokens"},
      {R"({"prompt": "hi", "temperature": -1})", "temperature"},
      {R"({"prompt": "hi", "temperature": 3})", "temperature"},
      {R"({"prompt": "hi", "top_p": 1.5})", "top_p"},
      {R"({"prompt": "hi", "top_k": -3})", "top_k"},
      {R"({"prompt": "hi", "min_p": 2})", "min_p"},
      {R"({"prompt": "hi", "repeat_penalty": 0})", "repeat_penalty"},
      {R"({"prompt": "hi", "seed": "abc"})", "seed"},
      {R"({"prompt": "hi", "stop": ["a","b","c","d","e"]})", "stop"},
      {R"({"prompt": "hi", "stop": 5})", "stop"},
      {R"({"prompt": "hi", "job_id": "bad id/with slash"})", "job_id"},
      {json{{"prompt", huge_prompt}}.dump(), "prompt"},
      {R"({"prompt": "Once upon a time", "max_tokens": 255})", "max_tokens"},
      {R"({"messages": []})", "messages"},
      {R"({"messages": [{"role": "user", "content": "hi"}, {"role": "robot", "content": "x"}]})",
       "messages[1].role"},
      {R"({"messages": [{"role": "user"}]})", "messages[0].content"},
      {R"({"prompt": "hi", "messages": [{"role": "user", "content": "hi"}]})", "messages"},
  };
  for (const auto& c : cases) {
    // Raw bodies: malformed JSON cannot go through the JSON client.
    httplib::Client raw("127.0.0.1", worker.port());
    raw.set_bearer_token_auth("worker-secret");
    auto res = raw.Post("/v1/inference", c.body, "application/json");
    ASSERT_TRUE(res) << c.body;
    EXPECT_EQ(res->status, 400) << c.body << " -> " << res->body;
    json error = json::parse(res->body)["error"];
    EXPECT_EQ(error["code"], "INVALID_REQUEST") << c.body;
    EXPECT_FALSE(error.value("message", "").empty());
    if (!c.field.empty()) {
      EXPECT_EQ(error["details"]["field"], c.field) << c.body << " -> " << res->body;
    }
  }

  // An unknown chat_template override is refused, and the error names the field.
  {
    stream_result r = infer(
        client, {{"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"chat_template", "nope"}});
    EXPECT_EQ(r.status, 400) << r.error.body;
    json error = r.error.json_body()["error"];
    EXPECT_EQ(error["code"], "CHAT_TEMPLATE_UNKNOWN") << r.error.body;
    EXPECT_EQ(error["details"]["field"], "chat_template") << r.error.body;
    EXPECT_NE(error.value("message", "").find("chat_template"), std::string::npos) << r.error.body;
  }

  // Unknown fields are ignored.
  json extra = greedy("Once upon a time", 4);
  extra["unknown_field"] = {{"nested", true}};
  stream_result ok = infer(client, extra);
  EXPECT_EQ(ok.status, 200) << ok.error.body;
  EXPECT_EQ(ok.end.value("tokens_out", 0), 4);

  // Auth: health is public, inference is not.
  auto anonymous = worker.client();
  EXPECT_EQ(anonymous.get("/v1/health").status, 200);
  stream_result missing = infer(anonymous, greedy("hi", 2));
  EXPECT_EQ(missing.status, 401);
  EXPECT_EQ(missing.error.json_body()["error"]["code"], "MISSING_API_KEY");
  auto wrong_client = worker.client("wrong-secret");
  stream_result wrong = infer(wrong_client, greedy("hi", 2));
  EXPECT_EQ(wrong.status, 401);
  EXPECT_EQ(wrong.error.json_body()["error"]["code"], "INVALID_API_KEY");
  EXPECT_EQ(wrong_client.del("/v1/inference/x").status, 401);

  // Still serving.
  stream_result after = infer(client, greedy("The cat", 8));
  EXPECT_EQ(after.status, 200);
  EXPECT_EQ(after.end.value("stop_reason", ""), "max_tokens");
}

TEST_F(WorkerLifecycle, SigtermDuringAStreamEndsItAndExitsZero) {
  worker_process worker(home_, {"--model", synth_tiny, "--ctx", "2048"});
  worker.wait_ready();
  auto client = worker.client();
  bool signalled = false;
  stream_result r = infer(client, greedy("Once upon a time", 2000), [&](const json& e) {
    if (!signalled && e.value("type", "") == "token") {
      signalled = true;
      ::kill(worker.process().pid(), SIGTERM);
    }
    return true;
  });
  ASSERT_TRUE(signalled);
  ASSERT_EQ(r.status, 200);
  EXPECT_TRUE(r.done);
  std::string type = r.end.value("type", "");
  EXPECT_TRUE(type == "end" || type == "error") << r.end.dump();
  if (type == "end") {
    EXPECT_EQ(r.end.value("stop_reason", ""), "cancelled");
  }
  EXPECT_EQ(wait_exit(worker.process(), std::chrono::seconds(15)), 0)
      << worker.process().log_text();
}

TEST_F(WorkerLifecycle, AdminShutdownExitsZero) {
  worker_process worker(home_, {"--model", stories});
  worker.wait_ready();
  auto client = worker.client();
  auto r = client.post_json("/v1/admin/shutdown", json::object());
  EXPECT_EQ(r.status, 202);
  EXPECT_EQ(wait_exit(worker.process(), std::chrono::seconds(15)), 0)
      << worker.process().log_text();
}

// True while `pid` runs (a zombie nobody reaped counts as exited).
bool process_alive(pid_t pid) {
  if (::kill(pid, 0) != 0) return false;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string pid_field, name, state;
  stat >> pid_field >> name >> state;
  return state != "Z";
}

TEST_F(WorkerLifecycle, ExitsWhenItsParentDies) {
  // A shell stands in for the hive: it starts the worker, then dies.
  auto pid_file = home_.path() / "worker.pid";
  auto log = home_.logs_dir() / "orphan.log";
  std::filesystem::create_directories(home_.logs_dir());
  std::string script =
      "\"$0\" \"$@\" >'" + log.string() + "' 2>&1 & echo $! >'" + pid_file.string() + "'; sleep 2";
  cli_result parent = run_cli(
      "/bin/sh", {"-c", script, binary_path("llm-worker-rbee").string(), "--model", stories,
                  "--port", std::to_string(free_port()), "--threads", "1", "--die-with-parent"});
  ASSERT_EQ(parent.exit_code, 0) << parent.err;
  std::ifstream in(pid_file);
  pid_t pid = 0;
  ASSERT_TRUE(in >> pid);
  auto deadline = steady::now() + std::chrono::seconds(10);
  while (process_alive(pid) && steady::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_FALSE(process_alive(pid)) << "worker outlived its parent";
  if (process_alive(pid)) ::kill(pid, SIGKILL);
  std::ifstream log_in(log);
  std::string text((std::istreambuf_iterator<char>(log_in)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("listening on"), std::string::npos) << text;
  EXPECT_NE(text.find("stopped"), std::string::npos) << text;
}

TEST_F(WorkerLifecycle, RefusesNonLoopbackWithoutToken) {
  cli_result r =
      run_cli("llm-worker-rbee",
              {"--model", stories, "--host", "0.0.0.0", "--port", std::to_string(free_port())},
              {{"RBEE_WORKER_TOKEN", ""}});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("token"), std::string::npos) << r.err;
}

TEST_F(WorkerLifecycle, VersionFlag) {
  cli_result r = run_cli("llm-worker-rbee", {"--version"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find('.'), std::string::npos) << r.out;
}

}  // namespace
}  // namespace rbee::e2e::worker_test
