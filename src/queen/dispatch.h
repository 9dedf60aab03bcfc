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

// Makes sure the model is in the catalog of the hive's node, downloading it with progress
// narration when it is not (file: references are left to the hive).
void ensure_model(hive_client& hive, const std::string& model, const task_sink& sink);

class dispatcher {
 public:
  dispatcher(std::chrono::milliseconds loading_timeout, registry& nodes, hive_manager& hives,
             scheduler& sched);

  // Before any stream starts: an unknown node is NODE_NOT_FOUND (+hint); the scheduler's
  // answer (QUEUE_FULL / NODE_UNREACHABLE) is thrown as queen::error.
  admission admit(const task_request& request);
  // The lease of an admitted task, after the queue when it waited (narrated through send,
  // which also tells when the consumer left). nullopt when cancelled() became true.
  std::optional<lease> first_lease(const task_request& request, admission& admitted,
                                   const task_sink& send, const std::function<bool()>& cancelled);
  // Another lease after a worker could not take the task; nullopt when cancelled.
  std::optional<lease> next_lease(const task_request& request,
                                  const std::function<bool()>& cancelled);
  // The worker for a lease: the warm one, or one started and loaded now. nullopt when the
  // task was cancelled meanwhile.
  std::optional<worker_info> worker_for(const task_request& request, const lease& l,
                                        const std::atomic<bool>& cancelled, const task_sink& sink);

 private:
  task_key key_for(const task_request& request) const;
  void refresh_view(const task_request& request);
  bool refresh_due(const std::string& node);
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
  std::mutex mutex_;
  std::map<std::string, std::chrono::steady_clock::time_point> last_refresh_;
};

}  // namespace rbee::queen
