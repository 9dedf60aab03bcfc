#pragma once
// A real queen-rbee on free ports with its own RBEE_HOME, for the queen, CLI and OpenAI e2e
// tests. The built-in node `localhost` gets its hive on another free port.

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/http_client.h"
#include "harness/daemon.h"
#include "harness/ports.h"
#include "harness/temp_home.h"

namespace rbee::e2e {

inline std::string stories_model_path() {
  return std::string(RBEE_SHARED_MODELS_DIR) + "/stories260K.gguf";
}
inline std::string stories_model_ref() {
  return "file:" + stories_model_path();
}

// The greedy continuation llama.cpp produced for a prompt (golden-stories260K.json).
inline std::string golden_continuation(const std::string& prompt) {
  std::ifstream in(std::string(RBEE_SHARED_MODELS_DIR) + "/golden-stories260K.json");
  auto golden = nlohmann::json::parse(in);
  for (const auto& c : golden["cases"]) {
    if (c["prompt"] == prompt) return c["continuation"];
  }
  return {};
}

// The inference path needs the hive and worker binaries of the other parts of rbee.
inline bool have_hive_and_worker() {
  return std::filesystem::exists(binary_path("rbee-hive")) &&
         std::filesystem::exists(binary_path("llm-worker-rbee"));
}

struct task_stream {
  int status = 0;
  common::http_response error;  // when status != 200
  std::vector<nlohmann::json> events;
  std::string text;  // tokens joined

  bool has_narration(const std::string& action) const {
    for (const auto& e : events) {
      if (e.value("type", "") == "narration" && e.value("action", "") == action) return true;
    }
    return false;
  }
  std::optional<nlohmann::json> first(const std::string& type) const {
    for (const auto& e : events) {
      if (e.value("type", "") == type) return e;
    }
    return std::nullopt;
  }
  int tokens() const {
    int n = 0;
    for (const auto& e : events) n += e.value("type", "") == "token";
    return n;
  }
};

class queen_fixture {
 public:
  // An empty config file keeps the machine's own config out of the test.
  queen_fixture() : port_(free_port()), hive_port_(free_port()) {
    std::ofstream(home_.path() / "config.toml") << "# e2e test\n";
  }

  void start(std::vector<std::string> args = {}, std::map<std::string, std::string> env = {}) {
    args.insert(args.begin(), {"--addr", bind_host_ + ":" + std::to_string(port_), "--hive-port",
                               std::to_string(hive_port_)});
    auto e = this->env();
    for (const auto& [k, v] : env) e[k] = v;
    queen_ =
        std::make_unique<daemon_process>("queen-rbee", args, e, home_.logs_dir() / "queen.log");
    queen_->wait_healthy(port_, "/health");
  }

  // What a CLI run against this queen needs.
  std::map<std::string, std::string> env() const {
    return {{"RBEE_HOME", home_.str()},
            {"RBEE_QUEEN_URL", url()},
            {"RBEE_HIVE_PORT", std::to_string(hive_port_)},
            {"RBEE_CONFIG", (home_.path() / "config.toml").string()}};
  }

  // Listen beyond loopback (needs an API key), e.g. for hives in test-host namespaces.
  void set_bind_host(std::string host) { bind_host_ = std::move(host); }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::string hive_url() const { return "http://127.0.0.1:" + std::to_string(hive_port_); }
  int port() const { return port_; }
  const temp_home& home() const { return home_; }
  daemon_process& queen() { return *queen_; }

  common::http_client client(const std::string& token = "") const {
    common::client_options o;
    o.bearer_token = token;
    o.read_timeout = std::chrono::seconds(120);
    return common::http_client(url(), o);
  }

  task_stream run_task(const nlohmann::json& body, const std::string& token = "",
                       const std::function<void(const nlohmann::json&)>& on_event = {}) const {
    task_stream s;
    auto c = client(token);
    s.status = c.post_sse(
        "/v2/tasks", body,
        [&](const common::sse_event& ev) {
          if (ev.is_done()) return false;
          auto e = ev.json();
          if (e.value("type", "") == "token") s.text += e.value("t", "");
          s.events.push_back(e);
          if (on_event) on_event(e);
          return true;
        },
        &s.error);
    return s;
  }

 private:
  temp_home home_;
  std::string bind_host_ = "127.0.0.1";
  int port_;
  int hive_port_;
  std::unique_ptr<daemon_process> queen_;
};

}  // namespace rbee::e2e
