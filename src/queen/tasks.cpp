#include "queen/tasks.h"

#include <thread>

#include <spdlog/spdlog.h>

#include "common/errors.h"
#include "common/http_client.h"
#include "queen/narration.h"

namespace rbee::queen {

using nlohmann::json;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

task_runner::task_runner(task_runner_options options, registry& nodes, hive_manager& hives,
                         scheduler& sched, common::metrics_registry& metrics)
    : options_(options),
      scheduler_(sched),
      metrics_(metrics),
      dispatch_(options.loading_timeout, nodes, hives, sched, options.models),
      relay_(metrics) {}

admission task_runner::admit(const task_request& request) {
  return dispatch_.admit(request);
}

size_t task_runner::active() const {
  std::lock_guard lock(mutex_);
  return tasks_.size();
}

bool task_runner::cancel(const std::string& task_id) {
  std::shared_ptr<active_task> task;
  {
    std::lock_guard lock(mutex_);
    auto it = tasks_.find(task_id);
    if (it == tasks_.end()) return false;
    task = it->second;
  }
  task->cancelled = true;
  cancel_on_worker(*task);
  return true;
}

void task_runner::cancel_all(std::chrono::milliseconds budget) {
  std::vector<std::string> ids;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [id, t] : tasks_) ids.push_back(id);
  }
  for (const auto& id : ids) cancel(id);
  auto deadline = steady::now() + budget;
  while (active() > 0 && steady::now() < deadline) std::this_thread::sleep_for(20ms);
}

void task_runner::cancel_on_worker(active_task& task) {
  std::string url, token, job;
  {
    std::lock_guard lock(task.mutex);
    url = task.worker_url;
    token = task.worker_token;
    job = task.job_id;
  }
  if (url.empty()) return;
  try {
    common::client_options o;
    o.connect_timeout = 2s;
    o.read_timeout = 5s;
    o.bearer_token = token;
    common::http_client(url, o).del("/v1/inference/" + job);
  } catch (const std::exception& e) {
    spdlog::warn("cancelling {} on {}: {}", job, url, e.what());
  }
}

void task_runner::count_outcome(const char* outcome) {
  metrics_.counter_add("rbee_queen_tasks_total", "Tasks by outcome", 1, {{"outcome", outcome}});
}

void task_runner::run(const task_request& request, admission admitted, const task_sink& sink,
                      const token_text_sink& tokens, const consumer_probe& consumer_present) {
  auto task = std::make_shared<active_task>();
  {
    std::lock_guard lock(mutex_);
    tasks_[request.task_id] = task;
  }
  struct unregister {
    task_runner* self;
    const std::string& id;
    ~unregister() {
      std::lock_guard lock(self->mutex_);
      self->tasks_.erase(id);
    }
  } unregister_guard{this, request.task_id};

  const auto accepted_at = steady::now();
  // A consumer that is gone (a failed delivery, a probe that says so) cancels the task.
  auto deliver = [&](bool delivered) -> bool {
    if (!task->cancelled && !delivered) {
      task->cancelled = true;
      cancel_on_worker(*task);
    }
    return !task->cancelled;
  };
  task_sink send = [&](const json& event) { return deliver(task->cancelled || sink(event)); };
  token_text_sink token_text;
  if (tokens) {
    token_text = [&](std::string_view t) { return deliver(task->cancelled || tokens(t)); };
  }
  std::function<bool()> cancelled = [&] {
    if (!task->cancelled && consumer_present && !consumer_present()) deliver(false);
    return task->cancelled.load();
  };

  send(narration("queen-rbee", "task_accepted",
                 "Task " + request.task_id + ": " + request.model +
                     (request.node ? " on node '" + *request.node + "'" : ""),
                 {{"task_id", request.task_id},
                  {"model", request.model},
                  {"node", request.node ? json(*request.node) : json()}}));
  try {
    dispatch_and_relay(request, admitted, *task, accepted_at, send, token_text, cancelled);
  } catch (const error& e) {
    count_outcome("error");
    send(error_event(e));
  } catch (const std::exception& e) {
    count_outcome("error");
    spdlog::error("task {} failed: {}", request.task_id, e.what());
    send(error_event(internal(e.what())));
  }
}

void task_runner::dispatch_and_relay(const task_request& request, admission& admitted,
                                     active_task& task, steady::time_point accepted_at,
                                     const task_sink& send, const token_text_sink& tokens,
                                     const std::function<bool()>& cancelled) {
  resume_progress progress;
  progress.resumable = request.generation.n == 1 && options_.max_failovers > 0;
  std::vector<std::string> lost_workers;
  std::optional<lease> l = dispatch_.first_lease(request, admitted, send, cancelled);
  for (int attempt = 1; l; ++attempt) {
    std::optional<worker_info> w;
    try {
      w = dispatch_.worker_for(request, *l, task.cancelled, send);
    } catch (const error& e) {
      // A device the queen chose whose hive has no room for the model, or a node it cannot
      // reach (gone with a lost worker): another may take it.
      bool no_room =
          e.code == common::codes::INSUFFICIENT_RAM || e.code == common::codes::INSUFFICIENT_VRAM;
      bool unreachable = e.code == common::codes::NODE_UNREACHABLE;
      if (!(no_room || unreachable) || l->kind != decision_kind::cold || request.node ||
          attempt >= options_.max_dispatch_attempts) {
        throw;
      }
      scheduler_.avoid_device(l->node, l->backend, l->device, request.model);
      send(narration("queen-rbee", "placement_retry",
                     "'" + l->node + "' " +
                         (no_room ? "has no room for " : "cannot be reached to start ") +
                         request.model + " (" + e.message + "); placing it elsewhere",
                     {{"node", l->node}, {"code", e.code}}));
      l = dispatch_.next_lease(request, cancelled, lost_workers);
      continue;
    }
    if (!w) return;
    if (progress.lost_at) {
      send(narration(
          "queen-rbee", "failover_resume",
          "Resuming the answer on worker " + w->worker_id + " on '" + w->node + "' after " +
              std::to_string(progress.generated.size()) + " tokens",
          {{"worker_id", w->worker_id}, {"node", w->node}, {"tokens", progress.generated.size()}}));
    }
    {
      std::lock_guard lock(task.mutex);
      task.worker_url = w->url;
      task.worker_token = w->token;
      task.job_id = request.task_id;
    }
    relay_result result = relay_.run(request, *w, accepted_at, send, tokens, cancelled, progress,
                                     options_.stall_timeout);
    {
      std::lock_guard lock(task.mutex);
      task.worker_url.clear();
    }
    scheduler_.release(w->worker_id, request.generation.n, request.client);
    if (result.retry_reason || result.worker_lost) scheduler_.mark_unavailable(w->worker_id);
    if (result.ended) dispatch_.remember_conversation(request, w->worker_id);
    if (result.worker_lost && !cancelled()) {
      if (!progress.can_resume() ||
          lost_workers.size() >= static_cast<size_t>(options_.max_failovers))
        throw *result.failure;
      lost_workers.push_back(w->worker_id);
      fail_over(request, *w, result, progress, send);
      attempt = 0;  // the move gets its own dispatch attempts
      l = dispatch_.next_lease(request, cancelled, lost_workers);
      continue;
    }
    if (result.failure) throw *result.failure;
    if (!result.retry_reason) {
      if (cancelled()) {
        count_outcome("cancelled");
      } else if (!result.ended) {
        throw internal("Worker " + w->worker_id + " ended the stream without an end event");
      } else {
        count_outcome("ok");
      }
      return;
    }
    if (attempt >= options_.max_dispatch_attempts) {
      throw unavailable(common::codes::ALL_SLOTS_BUSY,
                        "No worker could take the task: " + *result.retry_reason, 2);
    }
    send(narration("queen-rbee", "dispatch_retry",
                   "Worker " + w->worker_id + " could not take the task (" + *result.retry_reason +
                       "); trying another",
                   {{"worker_id", w->worker_id}}));
    l = dispatch_.next_lease(request, cancelled, lost_workers);
  }
}

void task_runner::fail_over(const task_request& request, const worker_info& lost,
                            const relay_result& result, resume_progress& progress,
                            const task_sink& send) {
  progress.lost_at = steady::now();
  metrics_.counter_add(
      "rbee_queen_failovers_total",
      "Answers moved to another worker after losing theirs mid-stream", 1,
      {{"model", request.model}, {"node", lost.node}, {"reason", result.lost_reason}});
  spdlog::warn("task {}: worker {} on {} lost after {} tokens ({}: {}); failing over",
               request.task_id, lost.worker_id, lost.node, progress.generated.size(),
               result.lost_reason, result.failure ? result.failure->message : "");
  send(narration("queen-rbee", "failover",
                 "Worker " + lost.worker_id + " on '" + lost.node + "' was lost after " +
                     std::to_string(progress.generated.size()) + " tokens (" + result.lost_reason +
                     "); moving the answer to another worker",
                 {{"worker_id", lost.worker_id},
                  {"node", lost.node},
                  {"reason", result.lost_reason},
                  {"tokens", progress.generated.size()}}));
}

}  // namespace rbee::queen
