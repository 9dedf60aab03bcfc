#pragma once
// The task path (SPEC §2): POST /v2/tasks and the OpenAI routes both end here. A task is
// validated, its node checked, admitted by the scheduler (QUEUE_FULL before any stream),
// then run: dispatch.h finds or starts its worker, relay.h streams the worker's answer event
// by event, and a worker that could not take it makes way for another. Every phase is
// narrated; a task can be cancelled at any point.

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

#include "common/metrics.h"
#include "queen/dispatch.h"
#include "queen/hive_manager.h"
#include "queen/registry.h"
#include "queen/relay.h"
#include "queen/scheduler.h"
#include "queen/task_request.h"

namespace rbee::queen {

struct task_runner_options {
  std::chrono::milliseconds loading_timeout{std::chrono::minutes(5)};
  int max_dispatch_attempts = 3;  // a dispatch that failed before any token moves on
  int max_failovers = 2;  // an answer whose worker was lost mid-stream moves on (docs/failover.md)
  // A worker silent this long mid-answer (no byte, or no token) is taken for lost.
  std::chrono::milliseconds stall_timeout{std::chrono::seconds(30)};
  std::map<std::string, model_settings> models;  // per-model overrides
};

class task_runner {
 public:
  task_runner(task_runner_options options, registry& nodes, hive_manager& hives, scheduler& sched,
              common::metrics_registry& metrics);

  // Before any stream starts: unknown node -> NODE_NOT_FOUND (+hint); admission
  // (QUEUE_FULL / NODE_UNREACHABLE), thrown as queen::error. The admission is consumed by run().
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

 private:
  struct active_task {
    std::atomic<bool> cancelled{false};
    std::mutex mutex;
    std::string worker_url;  // set while dispatched
    std::string worker_token;
    std::string job_id;
  };
  // Dispatches and relays until the task ended, failed (thrown) or was cancelled.
  void dispatch_and_relay(const task_request& request, admission& admitted, active_task& task,
                          std::chrono::steady_clock::time_point accepted_at, const task_sink& send,
                          const token_text_sink& tokens, const std::function<bool()>& cancelled);
  // Narrates and counts the loss of a worker mid-answer before the answer moves on.
  void fail_over(const task_request& request, const worker_info& lost, const relay_result& result,
                 resume_progress& progress, const task_sink& send);
  void count_outcome(const char* outcome);
  void cancel_on_worker(active_task& task);

  task_runner_options options_;
  scheduler& scheduler_;
  common::metrics_registry& metrics_;
  dispatcher dispatch_;
  task_relay relay_;
  mutable std::mutex mutex_;
  std::map<std::string, std::shared_ptr<active_task>> tasks_;
};

}  // namespace rbee::queen
