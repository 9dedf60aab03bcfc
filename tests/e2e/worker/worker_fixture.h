#pragma once
// Shared by the worker e2e tests: start a real llm-worker-rbee on a free port and speak
// HTTP/SSE to it.

#include <signal.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/http_client.h"
#include "harness/daemon.h"
#include "harness/ports.h"
#include "harness/temp_home.h"

namespace rbee::e2e::worker_test {

using nlohmann::json;
using steady = std::chrono::steady_clock;

inline std::string shared_model(const std::string& name) {
  return std::string(RBEE_SHARED_MODELS_DIR) + "/" + name;
}
inline const std::string stories = shared_model("stories260K.gguf");
// Random weights: greedy output never meets EOS early, so streams run as long as asked.
inline const std::string synth_tiny = shared_model("synth-tiny-f16.gguf");

// A client that disconnects must not kill the test process.
inline void ignore_sigpipe() {
  ::signal(SIGPIPE, SIG_IGN);
}

struct stream_result {
  int status = 0;
  common::http_response error;  // for non-200
  std::vector<json> events;     // every JSON event, in order
  std::vector<steady::time_point> token_times;
  std::string text;   // concatenated token text
  json end;           // the end or error event (null if none)
  bool done = false;  // [DONE] seen
};

// POST /v1/inference and read the whole stream. on_event may return false to disconnect.
inline stream_result infer(common::http_client& client, const json& body,
                           const std::function<bool(const json&)>& on_event = {}) {
  stream_result r;
  r.status = client.post_sse(
      "/v1/inference", body,
      [&](const common::sse_event& e) {
        if (e.is_done()) {
          r.done = true;
          return false;
        }
        json event = e.json();
        r.events.push_back(event);
        std::string type = event.value("type", "");
        if (type == "token") {
          r.text += event.at("t").get<std::string>();
          r.token_times.push_back(steady::now());
        } else if (type == "end" || type == "error") {
          r.end = event;
        }
        return on_event ? on_event(event) : true;
      },
      &r.error);
  return r;
}

class worker_process {
 public:
  // Starts the worker with `args` (model, slots, ...) on a free port and waits for /v1/health.
  worker_process(const temp_home& home, std::vector<std::string> args,
                 std::map<std::string, std::string> env = {})
      : port_(free_port()) {
    args.insert(args.end(), {"--port", std::to_string(port_), "--worker-id", "w-test"});
    // One engine thread: test machines are small and shared, and a busy thread pool there
    // makes decode times erratic; the tests measure behaviour, not speed.
    if (std::find(args.begin(), args.end(), "--threads") == args.end()) {
      args.insert(args.end(), {"--threads", "1"});
    }
    process_ = std::make_unique<daemon_process>("llm-worker-rbee", args, env,
                                                home.logs_dir() / "worker.log");
    process_->wait_healthy(port_, "/v1/health");
  }

  int port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  daemon_process& process() { return *process_; }

  common::http_client client(std::string token = "") const {
    common::client_options o;
    o.bearer_token = std::move(token);
    o.read_timeout = std::chrono::seconds(60);
    return common::http_client(url(), o);
  }

  // Polls /v1/ready until the model is loaded; fails the test on an error state or timeout.
  void wait_ready(std::chrono::seconds timeout = std::chrono::seconds(60)) {
    auto c = client();
    auto deadline = steady::now() + timeout;
    while (steady::now() < deadline) {
      auto r = c.get("/v1/ready");
      if (r.ok()) {
        json body = r.json_body();
        if (body.value("ready", false)) return;
        ASSERT_NE(body.value("state", ""), "error") << body.dump() << process_->log_text();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    FAIL() << "worker not ready in time\n" << process_->log_text();
  }

 private:
  int port_;
  std::unique_ptr<daemon_process> process_;
};

// Polls /v1/ready until the worker reports its load error (or stops answering); the last
// answer.
inline json wait_for_error_state(common::http_client& client) {
  json ready;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    auto r = client.get("/v1/ready");
    if (!r.ok()) break;
    ready = r.json_body();
    if (ready["state"] == "error") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return ready;
}

inline json greedy(const std::string& prompt, int max_tokens) {
  return {
      {"prompt", prompt}, {"max_tokens", max_tokens}, {"temperature", 0}, {"repeat_penalty", 1.0}};
}

}  // namespace rbee::e2e::worker_test
