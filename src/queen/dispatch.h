#pragma once
// Dispatch: from an admitted task to a worker that is ready for it. Admission asks the
// scheduler (after refreshing its view of the nodes), a queued task waits for its lease with
// a periodic note, and a cold lease starts a worker: the node's hive, the model (downloaded
// with progress narration when the hive's catalog lacks it), the spawn and its loading
// progress. Relaying the answer is relay.h's part.

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "queen/errors.h"
#include "queen/hive_client.h"
#include "queen/hive_manager.h"
#include "queen/registry.h"
#include "queen/scheduler.h"
#include "queen/task_request.h"

namespace rbee::queen {

// Per-model overrides from config ([models.<id>]): 0 / -1 keep the defaults.
struct model_settings {
  int ctx = 0;            // context per slot of its workers
  int slots = 0;          // slots per worker
  int keep_alive_s = -1;  // idle seconds before an idle worker unloads
  int max_replicas = 0;   // workers across the fleet
};

// Makes sure the model is in the catalog of the hive's node, downloading it from `hub` (the
// caller's; empty: the hive's own) with progress narration when it is not (file: references
// are left to the hive).
void ensure_model(hive_client& hive, const std::string& model, const api::hub_access& hub,
                  const task_sink& sink);

class dispatcher {
 public:
  dispatcher(std::chrono::milliseconds loading_timeout, registry& nodes, hive_manager& hives,
             scheduler& sched, std::map<std::string, model_settings> settings = {});

  // Before any stream starts: an unknown node is NODE_NOT_FOUND (+hint); the scheduler's
  // answer (QUEUE_FULL / NODE_UNREACHABLE) is thrown as queen::error.
  admission admit(const task_request& request);
  // The lease of an admitted task, after the queue when it waited (narrated through send,
  // which also tells when the consumer left). nullopt when cancelled() became true.
  std::optional<lease> first_lease(const task_request& request, admission& admitted,
                                   const task_sink& send, const std::function<bool()>& cancelled);
  // Another lease after a worker could not take the task, or was lost mid-answer (those in
  // avoid_workers are not offered again); nullopt when cancelled.
  std::optional<lease> next_lease(const task_request& request,
                                  const std::function<bool()>& cancelled,
                                  const std::vector<std::string>& avoid_workers = {});
  // The worker for a lease: the warm one, or one started and loaded now. nullopt when the
  // task was cancelled meanwhile.
  std::optional<worker_info> worker_for(const task_request& request, const lease& l,
                                        const std::atomic<bool>& cancelled, const task_sink& sink);
  // A finished task's worker holds its conversation's prefix: the next turn goes there when
  // it has room.
  void remember_conversation(const task_request& request, const std::string& worker_id);

 private:
  // What the queen knows of a node's catalog (refreshed with its workers).
  struct catalog_view {
    std::vector<catalog_model> models;
    std::chrono::steady_clock::time_point fetched{};
  };

  task_key key_for(const task_request& request);
  void refresh_view(const task_request& request);
  bool refresh_due(const std::string& node);
  void refresh_catalog(const std::string& node);
  // The size of the model's file from any node's catalog; 0 when no node has it.
  uint64_t known_model_bytes(const std::string& model);
  // Every catalog name (reference, id) of a file with the model's content hash, on any node.
  std::vector<std::string> names_of_same_file(const std::string& model);
  model_settings settings_for(const std::string& model);
  bool adopted_hive_workers(const lease& l, const task_sink& sink);
  std::optional<worker_info> cold_start(const task_request& request, const lease& l,
                                        const std::atomic<bool>& cancelled, const task_sink& sink);
  worker_info wait_ready(hive_client& hive, const worker_info& spawned,
                         const std::atomic<bool>& cancelled, const task_sink& sink);
  // Relays the worker's /v1/loading/progress as narration; true once the worker answered
  // (events or an error status). Throws the worker's own word on a failed load.
  bool relay_loading_progress(const worker_info& found, const worker_info& spawned,
                              const std::string& node,
                              std::chrono::steady_clock::time_point deadline,
                              const std::atomic<bool>& cancelled, const task_sink& sink,
                              int& last_layers);

  std::chrono::milliseconds loading_timeout_;
  registry& nodes_;
  hive_manager& hives_;
  scheduler& scheduler_;
  std::map<std::string, model_settings> settings_;
  std::mutex mutex_;
  std::map<std::string, std::chrono::steady_clock::time_point> last_refresh_;
  std::map<std::string, catalog_view> catalogs_;         // by node
  std::map<uint64_t, std::string> conversation_worker_;  // conversation id -> worker id
};

// A conversation's id: the model and its first messages (or the prompt's start), so every turn
// of one chat has the same id. 0 for a request too short to tell conversations apart.
uint64_t conversation_id(const task_request& request);

}  // namespace rbee::queen
