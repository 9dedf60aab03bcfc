#pragma once
// A worker as every process names it (SPEC §3): its lifecycle states and the record a hive
// reports for it (GET /v1/workers, the spawn answer), which the queen keeps and schedules on.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace rbee::api {

// One lifecycle for all three views of a worker:
//   spawning (the queen asked a hive) -> loading -> idle <-> busy -> draining -> stopped
//   stopping: the hive is ending the process; error: loading failed.
// The worker reports loading..stopped, a hive loading, idle and stopping.
enum class worker_state { spawning, loading, idle, busy, draining, stopping, stopped, error };

std::string_view to_string(worker_state s);
// nullopt for a name no process writes.
std::optional<worker_state> parse_worker_state(std::string_view s);
// idle and busy take requests while slots are free.
bool accepts_tasks(worker_state s);

struct worker_record {
  std::string worker_id;
  std::string node;       // the node whose hive runs it (the queen's view; not on the hive's wire)
  std::string model_ref;  // as requested
  std::string model_id;   // the hive's catalog id
  std::string url;        // http://<advertised host>:<port>
  std::string token;      // the worker's bearer token; only to authenticated callers
  std::string backend = "cpu";
  int device = 0;
  std::vector<int> devices;  // a split's devices, in part order; empty: `device` alone
  std::string split;         // with devices: "layer" or "tensor"
  int port = 0;
  int64_t pid = -1;
  worker_state state = worker_state::loading;
  int slots_total = 0;  // 0 = not reported
  int slots_busy = 0;
  int ctx = 0;                     // context per slot
  uint64_t memory_bytes = 0;       // the preflight's estimate
  uint64_t memory_used_bytes = 0;  // measured (RSS on the CPU, device memory on a GPU); 0 = not yet
  double tokens_per_second = 0;    // of the most recently finished stream
  int keep_alive_s = 0;            // idle seconds before its hive unloads it
  int64_t started_at_unix = 0;
  int64_t ready_at_unix = 0;   // 0 while loading
  int64_t unload_at_unix = 0;  // idle: when its hive stops it unless a job comes; 0 otherwise

  // The hive's JSON of this record; the token only when include_token.
  nlohmann::json to_json(bool include_token) const;
  // Reads a hive's record (untrusted): throws common::http_error 400 INVALID_REQUEST naming the
  // field for a record without worker_id, a wrong type or an unknown state; absent fields keep
  // their defaults.
  static worker_record from_json(const nlohmann::json& j);
};

// A worker that left (a hive's GET /v1/workers "recent_exits", and its report to the queen).
struct worker_exit {
  std::string worker_id;
  std::string model_ref;
  // "crashed" (exited on its own), "health_check_failed", "loading_timeout", "idle_timeout",
  // "shutdown_requested", "hive_shutdown"
  std::string reason = "crashed";
  std::string code;          // error code where one applies ("LOADING_TIMEOUT"), else ""
  int64_t exit_status = -1;  // exit code, or 128+signal
  int64_t at_unix = 0;
  uint64_t seq = 0;  // increases by one per exit a hive process records

  nlohmann::json to_json() const;
  // Reads a hive's record leniently: a field absent or of another type keeps its default.
  static worker_exit from_json(const nlohmann::json& j);
};

}  // namespace rbee::api
