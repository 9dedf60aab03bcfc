#pragma once
// Shared by the hive end-to-end tests: a real rbee-hive daemon with its own RBEE_HOME, a
// stand-in hub as HF_ENDPOINT, and small helpers for its HTTP/SSE API.

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/http_client.h"
#include "harness/daemon.h"
#include "harness/hub_server.h"
#include "harness/ports.h"
#include "harness/temp_home.h"

namespace rbee::e2e::hive_test {

using nlohmann::json;
using namespace std::chrono_literals;

inline const std::filesystem::path shared_models = RBEE_SHARED_MODELS_DIR;
inline const std::string test_repo = "rbee-test/synth-tiny-GGUF";
inline const std::string test_file = "synth-tiny-Q4_K_M.gguf";
inline const std::string test_ref = "hf:" + test_repo + ":" + test_file;

// The worker the hive starts: $RBEE_WORKER_BINARY (e.g. another build's), else the bin dir's.
inline std::filesystem::path worker_binary() {
  if (const char* p = std::getenv("RBEE_WORKER_BINARY"); p && *p) return p;
  return binary_path("llm-worker-rbee");
}

class hive_fixture : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const auto& f :
         {"synth-tiny-Q4_K_M.gguf", "synth-tiny-Q8_0.gguf", "synth-tiny-Q5_K_M.gguf"}) {
      hub.add_file(test_repo, f, shared_models / f);
    }
    hub.start();
    std::filesystem::create_directories(home.path() / "empty-config");
    config_file = home.path() / "empty-config" / "config.toml";
    std::ofstream(config_file) << "# no settings: tests pass everything explicitly\n";
  }
  void TearDown() override {
    if (hive && HasFailure()) std::cerr << "---- hive log ----\n" << hive->log_text() << "\n";
  }

  // Starts rbee-hive daemon on a free loopback port with the given extra flags and env.
  void start_hive(std::vector<std::string> extra_args = {},
                  std::map<std::string, std::string> extra_env = {}) {
    port = free_port();
    std::vector<std::string> args = {"daemon",
                                     "--addr",
                                     "127.0.0.1:" + std::to_string(port),
                                     "--worker-binary",
                                     worker_binary().string(),
                                     "--download-backoff-ms",
                                     "20",
                                     "--worker-port-start",
                                     std::to_string(free_port())};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    std::map<std::string, std::string> env = {{"RBEE_HOME", home.str()},
                                              {"RBEE_CONFIG", config_file.string()},
                                              {"HF_ENDPOINT", hub.url()},
                                              {"RBEE_HIVE_TOKEN", token},
                                              {"RBEE_LOG", "debug"}};
    for (auto& [k, v] : extra_env) env[k] = v;
    hive =
        std::make_unique<daemon_process>("rbee-hive", args, env, home.path() / "hive-stdout.log");
    hive->wait_healthy(port, "/v1/health", 20s);
  }

  common::http_client client(std::chrono::milliseconds read_timeout = 60s) const {
    return common::http_client(
        "http://127.0.0.1:" + std::to_string(port),
        {.connect_timeout = 2s, .read_timeout = read_timeout, .bearer_token = token});
  }
  common::http_response post(const std::string& path, const json& body) const {
    return client().post_json(path, body);
  }
  common::http_response get(const std::string& path) const { return client().get(path); }

  // Every SSE event of a stream (until [DONE]) as JSON.
  std::vector<json> sse(const std::string& path) const {
    std::vector<json> events;
    auto c = client();
    int status = c.get_sse(path, [&](const common::sse_event& e) {
      if (e.is_done()) return false;
      events.push_back(e.json());
      return true;
    });
    EXPECT_EQ(status, 200) << path;
    return events;
  }

  // POST /v1/models/download then follow its progress stream to the end.
  std::vector<json> download(const std::string& ref) const {
    auto res = post("/v1/models/download", {{"model_ref", ref}});
    EXPECT_EQ(res.status, 202) << res.body;
    if (res.status != 202) return {};
    return sse("/v1/models/download/progress?id=" +
               res.json_body()["download_id"].get<std::string>());
  }

  json models() const { return get("/v1/models/list").json_body()["models"]; }
  json workers() const { return get("/v1/workers/list").json_body()["workers"]; }

  // Polls until pred() holds or the timeout passes; returns pred()'s last value.
  template <class Pred>
  static bool eventually(Pred pred, std::chrono::milliseconds timeout,
                         std::chrono::milliseconds step = 20ms) {
    auto until = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < until) {
      if (pred()) return true;
      std::this_thread::sleep_for(step);
    }
    return pred();
  }

  temp_home home;
  hub_server hub;
  std::filesystem::path config_file;
  std::string token = "hive-test-token-0123456789";
  int port = 0;
  std::unique_ptr<daemon_process> hive;
};

}  // namespace rbee::e2e::hive_test
