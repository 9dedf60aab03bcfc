#pragma once
// The queen's typed client of one rbee-hive's HTTP API: every request and answer is a struct
// here, and the JSON field names of the hive's API live only in hive_client.cpp. A hive's
// error answer becomes a queen::error with the hive's code; a hive that cannot be reached
// throws common::connection_error.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/hub_access.h"
#include "api/model_entry.h"
#include "common/http_client.h"
#include "queen/errors.h"
#include "queen/scheduler.h"

namespace rbee::queen {

// Where a hive answers and how to authenticate to it.
struct hive_endpoint {
  std::string node;
  std::string base_url;
  std::string token;
  std::string version;
};

// Parses one worker of a hive's list/report (lenient about missing fields); throws
// invalid_field for an entry without a worker id.
worker_info parse_hive_worker(const nlohmann::json& j, const std::string& node);

// Why a worker left, from the hive's recent_exits.
using api::worker_exit;

struct hive_worker_list {
  std::vector<worker_info> workers;
  std::map<std::string, std::string> load_errors;  // worker id -> the hive's error, as JSON
  std::vector<worker_exit> recent_exits;
};

struct spawn_request {
  std::string model_ref;
  std::string backend;
  std::optional<int> device;  // unset = device 0
  int slots = 0;              // sequences the worker serves at once; 0 = as many as fit
  int min_slots = 1;          // fewer is a failure (the task's n choices)
  int ctx = 0;                // context per slot; 0 = the hive's default
  int keep_alive_s = -1;      // idle seconds before the hive unloads it; -1 = the hive's default
  std::vector<int> devices;   // a split across these devices (docs/multi-gpu.md); empty: none
  std::string split;          // with devices: "layer" or "tensor"
};

// One model of a hive's catalog, as the contract defines it.
using catalog_model = api::model_entry;

// One event of a download's progress stream.
struct download_event {
  enum class stage_kind { downloading, complete, error, narration, other };
  stage_kind stage = stage_kind::other;
  uint64_t bytes_downloaded = 0;
  uint64_t bytes_total = 0;
  double speed_mbps = 0;
  int attempt = 0;
  std::string local_path;  // complete
  std::string code;        // error
  std::string message;     // error, narration (the hive's words: a retry and its cause)
};

struct hive_capabilities {
  std::vector<std::string> backends;
  nlohmann::json devices = nlohmann::json::array();
};

struct log_request {
  std::string worker_id;  // "" = the hive's own log
  bool follow = false;
  uint64_t tail = 0;       // the last N existing lines (0 = all the hive keeps at hand)
  int64_t since_unix = 0;  // only lines written since then (0 = any time)
};

class hive_client {
 public:
  // still_wanted as in common::client_options: a long wait ends once it returns false.
  explicit hive_client(hive_endpoint endpoint,
                       std::chrono::milliseconds read_timeout = std::chrono::seconds(30),
                       std::function<bool()> still_wanted = {});

  // The version a hive at base_url reports on /v1/health (no token needed), or nullopt when
  // nothing answers there.
  static std::optional<std::string> probe_version(const std::string& base_url,
                                                  std::chrono::milliseconds timeout);

  const hive_endpoint& endpoint() const { return endpoint_; }

  hive_worker_list list_workers();
  // Spawns a worker (the hive may download the model first). The answer's worker, with the
  // request's model, backend and device where the hive left them out.
  worker_info spawn_worker(const spawn_request& request);
  void stop_worker(const std::string& worker_id);

  std::vector<catalog_model> list_models();
  void remove_model(const std::string& model);
  // Starts a download from the request's hub (empty: the hive's own); returns its id for
  // follow_download.
  std::string start_download(const std::string& model_ref, const api::hub_access& hub = {});
  // Streams the download's events until on_event returns false or the stream ends.
  void follow_download(const std::string& download_id,
                       const std::function<bool(const download_event&)>& on_event);

  hive_capabilities capabilities();
  // Asks the hive to exit; false when it did not accept.
  bool shutdown();
  // Streams log events (JSON objects; a plain line becomes {"line": text}) until on_event
  // returns false or the stream ends.
  void follow_logs(const log_request& request,
                   const std::function<bool(const nlohmann::json& event)>& on_event);

 private:
  hive_endpoint endpoint_;
  common::http_client http_;
};

}  // namespace rbee::queen
