#pragma once
// The one way the CLI (and the tests) talk to queen-rbee: typed calls over its HTTP API.
// HTTP error statuses throw common::http_error (with the server's code, message, details and
// Retry-After); an unreachable queen throws common::connection_error.

#include <chrono>
#include <functional>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "api/hub_access.h"
#include "api/node_spec.h"

#include "common/errors.h"
#include "common/http_client.h"

namespace rbee::client {

struct client_config {
  std::string queen_url = "http://127.0.0.1:8080";
  std::optional<std::string> api_key;
  std::chrono::milliseconds connect_timeout{3000};
  std::chrono::milliseconds read_timeout{std::chrono::minutes(10)};
  // Sent with tasks and downloads: the hive that downloads the model uses this hub.
  api::hub_access hub;
};

using api::node_spec;

// Called for each event of a stream; return false to stop reading (the server sees a cancel).
using event_fn = std::function<bool(const nlohmann::json& event)>;

class queen_client {
 public:
  explicit queen_client(client_config config);

  const client_config& config() const { return config_; }

  nlohmann::json health();                          // GET /health
  bool healthy(std::chrono::milliseconds timeout);  // true when /health answers 200

  nlohmann::json add_node(const node_spec& node);  // {node, message}
  nlohmann::json list_nodes();                     // {"nodes":[...]}
  nlohmann::json remove_node(const std::string& node_name);
  void install(const std::string& node_name, const event_fn& on_event);

  nlohmann::json list_workers();
  nlohmann::json workers_health(const std::string& node);
  nlohmann::json shutdown_worker(const std::string& worker_id);

  // POST /v2/tasks: events (narration, token, end, error) until [DONE]. The config's hub is
  // added to the request.
  void run_task(const nlohmann::json& request, const event_fn& on_event,
                const std::function<bool()>& still_wanted = {});
  void cancel_task(const std::string& task_id);  // DELETE /v2/tasks/{id}

  // POST /v1/chat/completions with stream: true: each OpenAI chunk (or {"error":...}) until
  // [DONE]. still_wanted is asked whenever bytes arrive (keep-alives included): false leaves
  // the stream, which the queen takes as a cancel.
  void chat_completion(const nlohmann::json& body, const event_fn& on_chunk,
                       const std::function<bool()>& still_wanted = {});

  void download_model(const std::string& node, const std::string& model, const event_fn& on_event);
  nlohmann::json list_models(const std::string& node);
  nlohmann::json remove_model(const std::string& node, const std::string& model);

  // GET /v2/logs: a node's hive log or one worker's, the last `tail` lines (0 = all at hand)
  // written since `since_unix` (0 = any time), then new ones while `follow`.
  struct log_query {
    std::string node;
    std::string worker;
    bool follow = false;
    uint64_t tail = 0;
    int64_t since_unix = 0;
  };
  void logs(const log_query& query, const event_fn& on_event);

  nlohmann::json start_hive(const std::string& node);
  nlohmann::json stop_hive(const std::string& node);
  nlohmann::json hive_status(const std::string& node);

  void shutdown_queen();  // POST /v2/admin/shutdown

 private:
  common::http_client client(std::chrono::milliseconds read_timeout,
                             const std::function<bool()>& still_wanted = {}) const;
  nlohmann::json expect_json(const common::http_response& res) const;
  void stream(const std::string& method, const std::string& path, const nlohmann::json& body,
              const event_fn& on_event, const std::function<bool()>& still_wanted = {});

  client_config config_;
};

}  // namespace rbee::client
