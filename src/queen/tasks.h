#pragma once
// The task path (SPEC §2): POST /v2/tasks and the OpenAI routes both end here. A task is
// validated, its node checked, admitted by the scheduler (503 QUEUE_FULL before any stream),
// then run: hive start, model download, worker spawn and loading for a cold start, and the
// worker's token stream relayed event by event. Every phase is narrated.

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/requests.h"
#include "common/metrics.h"
#include "queen/hive_manager.h"
#include "queen/registry.h"
#include "queen/scheduler.h"

namespace rbee::queen {

// A task as the contract defines it (api/requests.h): validated once, by its from_json.
using task_request = api::task_request;

struct task_runner_options {
  std::chrono::milliseconds loading_timeout{std::chrono::minutes(5)};
  int max_dispatch_attempts = 3;  // a dispatch that failed before any token moves on
};

// Returns false when the consumer is gone (the task is then cancelled).
using task_sink = std::function<bool(const nlohmann::json& event)>;
// Takes the worker's token events as the worker wrote them (compact JSON text), for relays
// that forward them unchanged: no parse and re-serialisation per token.
using token_text_sink = std::function<bool(std::string_view event_json)>;
// Whether the consumer is still there, asked while nothing is sent (queued, a silent worker):
// a consumer that left cancels the task without waiting for the next event.
using consumer_probe = std::function<bool()>;

class task_runner {
 public:
  task_runner(task_runner_options options, registry& nodes, hive_manager& hives, scheduler& sched,
              common::metrics_registry& metrics);

  // Before any stream starts: unknown node -> 404 NODE_NOT_FOUND (+hint); admission
  // (503 QUEUE_FULL / NODE_UNREACHABLE). The admission is consumed by run().
  admission admit(const task_request& request);
  // Runs an admitted task, sending narration and the worker's events to sink (errors become
  // {"type":"error","code","message","details"} events); token events go to `tokens` as text
  // when it is set. Does not send [DONE]. A worker that ends the answer early for any reason
  // but this task's cancel is an error event, never an end (no silent truncation).
  void run(const task_request& request, admission admitted, const task_sink& sink,
           const token_text_sink& tokens = {}, const consumer_probe& consumer_present = {});
  // Cancels a running task (idempotent; false when it is unknown or finished).
  bool cancel(const std::string& task_id);
  // Cancels every task (queen shutdown) and waits up to budget for them to end.
  void cancel_all(std::chrono::milliseconds budget);
  size_t active() const;
  // Makes sure the model is in the catalog of ep's node, downloading it with progress
  // narration when it is not (file: references are left to the hive).
  void ensure_model(const hive_endpoint& ep, const std::string& model, const task_sink& sink);

 private:
  struct active_task {
    std::atomic<bool> cancelled{false};
    std::mutex mutex;
    std::string worker_url;  // set while dispatched
    std::string worker_token;
    std::string job_id;
  };
  std::optional<worker_info> cold_start(const task_request& request, const lease& l,
                                        active_task& task, const task_sink& sink);
  worker_info wait_ready(const hive_endpoint& ep, const worker_info& spawned, active_task& task,
                         const task_sink& sink);
  bool adopted_hive_workers(const lease& l, const task_sink& sink);
  void cancel_on_worker(active_task& task);
  task_key key_for(const task_request& request) const;
  void refresh_view(const task_request& request);
  bool refresh_due(const std::string& node);

  task_runner_options options_;
  registry& nodes_;
  hive_manager& hives_;
  scheduler& scheduler_;
  common::metrics_registry& metrics_;
  mutable std::mutex mutex_;
  std::map<std::string, std::shared_ptr<active_task>> tasks_;
  std::map<std::string, std::chrono::steady_clock::time_point> last_refresh_;
};

}  // namespace rbee::queen
