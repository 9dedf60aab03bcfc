#include "queen/tasks.h"

#include <limits>
#include <thread>

#include <spdlog/spdlog.h>

#include "api/model_ref.h"
#include "api/stream_events.h"
#include "common/errors.h"
#include "common/http_client.h"
#include "common/json.h"
#include "common/secrets.h"

namespace rbee::queen {

namespace {

using nlohmann::json;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

// Whether a hive's catalog entry holds the model a request names: its id, or its reference
// satisfies the request's (hf:ORG/REPO is satisfied by any cached file of that repo).
bool catalog_entry_serves(const json& entry, const api::model_ref& wanted) {
  if (wanted.kind == api::ref_kind::alias && entry.value("id", "") == wanted.alias) return true;
  auto stored = api::try_parse_model_ref(entry.value("reference", ""));
  return stored && wanted.is_satisfied_by(*stored);
}

int64_t ms_since(steady::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - t).count();
}

// Raised from the relay when a worker could not take the task and no token was sent yet.
struct dispatch_retry {
  std::string reason;
};

// Gives back a cold-start reservation unless the start completed.
class cold_guard {
 public:
  cold_guard(scheduler& s, std::string id) : scheduler_(s), id_(std::move(id)) {}
  ~cold_guard() {
    if (!id_.empty()) scheduler_.cold_failed(id_);
  }
  void set(std::string id) { id_ = std::move(id); }
  void dismiss() { id_.clear(); }

 private:
  scheduler& scheduler_;
  std::string id_;
};

json error_event(const common::http_error& e) {
  json ev = {{"type", "error"}, {"code", e.code}, {"message", e.message}};
  if (!e.details.is_null()) ev["details"] = e.details;
  return ev;
}

}  // namespace

task_runner::task_runner(task_runner_options options, registry& nodes, hive_manager& hives,
                         scheduler& sched, common::metrics_registry& metrics)
    : options_(options), nodes_(nodes), hives_(hives), scheduler_(sched), metrics_(metrics) {
  metrics_.histogram_define("rbee_queen_time_to_first_token_seconds",
                            "Time from task accepted to first token",
                            {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120});
  metrics_.histogram_define("rbee_queen_tokens_per_second", "Decode speed reported by workers",
                            {1, 5, 10, 25, 50, 100, 250, 500, 1000, 5000});
}

task_key task_runner::key_for(const task_request& r) const {
  return task_key{
      .model = r.model, .node = r.node, .backend = r.backend, .device = r.device, .model_bytes = 0};
}

void task_runner::refresh_view(const task_request& request) {
  std::vector<node_capacity> capacity;
  for (const auto& n : nodes_.list()) {
    node_capacity c{.node = n.node_name,
                    .reachable = n.is_local() || n.status == "reachable" || n.status == "running",
                    .ram_free_bytes = std::nullopt};
    for (const auto& d : n.devices) {
      if (d.is_object() && d.value("backend", "") == "cpu" && d.contains("ram_free_bytes") &&
          d["ram_free_bytes"].is_number_unsigned()) {
        c.ram_free_bytes = d["ram_free_bytes"].get<uint64_t>();
      }
    }
    // Without a request for a node, prefer the built-in one when memory is unknown.
    if (n.is_local()) {
      capacity.insert(capacity.begin(), c);
    } else {
      capacity.push_back(c);
    }
    if (request.node && *request.node != n.node_name) continue;
    if (!hives_.known_endpoint(n.node_name) || !refresh_due(n.node_name)) continue;
    try {
      hives_.refresh_workers(n.node_name);
    } catch (const std::exception& e) {
      spdlog::warn("refreshing workers of {}: {}", n.node_name, e.what());
    }
  }
  scheduler_.set_nodes(std::move(capacity));
}

// A burst of tasks asks each hive for its workers once, not once per task: between two asks
// the hive's reports and the scheduler's own in-flight counts keep the view current.
bool task_runner::refresh_due(const std::string& node) {
  constexpr auto min_interval = 500ms;
  std::lock_guard lock(mutex_);
  auto now = steady::now();
  auto& last = last_refresh_[node];
  if (last != steady::time_point{} && now - last < min_interval) return false;
  last = now;
  return true;
}

admission task_runner::admit(const task_request& request) {
  if (request.node && !nodes_.get(*request.node)) {
    throw common::not_found(
        common::codes::NODE_NOT_FOUND, "Node '" + *request.node + "' not found",
        {{"node", *request.node},
         {"hint", "add it first: rbee setup add-node --name " + *request.node +
                      " --ssh-host <host> --ssh-user <user> --install-path <path>"}});
  }
  refresh_view(request);
  auto a = scheduler_.admit(key_for(request));
  spdlog::debug("task {}: {} (workers known: {}, queue depth {})", request.task_id,
                a.placed ? to_string(a.placed->kind) : "queued", scheduler_.workers().size(),
                scheduler_.queue_depth());
  return a;
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
  auto deliver = [&](bool delivered) -> bool {
    if (!task->cancelled && !delivered) {
      task->cancelled = true;
      cancel_on_worker(*task);
    }
    return !task->cancelled;
  };
  auto send = [&](const json& event) { return deliver(task->cancelled || sink(event)); };
  auto cancelled = [&] {
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
    if (!admitted.placed && admitted.ticket) {
      send(narration(
          "queen-rbee", "queued",
          "All slots busy: waiting in queue (position " + std::to_string(admitted.position) + ")",
          {{"queue_position", admitted.position}}));
    }
    // While queued nothing else is sent; a periodic note tells the client how long it has
    // waited and lets a disconnected client be noticed (the send fails) and leave the queue.
    auto next_note = accepted_at + 2s;
    auto still_waiting = [&] {
      if (!cancelled() && steady::now() >= next_note) {
        next_note = steady::now() + 2s;
        send(narration(
            "queen-rbee", "queue_wait",
            "Still waiting for a slot (" + std::to_string(ms_since(accepted_at) / 1000) + " s)",
            {{"waited_ms", ms_since(accepted_at)}}));
      }
      return cancelled();
    };
    std::optional<lease> l = scheduler_.wait(admitted, still_waiting);
    if (!l) return;
    if (l->kind == decision_kind::cold) {
      bool adopted = false;
      {
        // The reservation goes back if the adoption throws (VERSION_MISMATCH, unreachable).
        cold_guard placeholder(scheduler_, l->placeholder_id);
        adopted = adopted_hive_workers(*l, send);
        if (!adopted) placeholder.dismiss();
      }  // after an adoption it goes back here, and the scheduler decides again
      if (adopted) {
        l = scheduler_.acquire(key_for(request), cancelled);
        if (!l) return;
      }
    }
    for (int attempt = 1;; ++attempt) {
      worker_info w;
      if (l->kind == decision_kind::cold) {
        auto started = cold_start(request, *l, *task, send);
        if (!started) return;
        w = *started;
      } else {
        w = l->worker;
        send(narration("queen-rbee", "worker_selected",
                       "Using idle worker " + w.worker_id + " on node '" + w.node + "' (warm)",
                       {{"worker_id", w.worker_id}, {"node", w.node}, {"warm", true}}));
      }
      std::optional<dispatch_retry> retry;
      {
        std::lock_guard lock(task->mutex);
        task->worker_url = w.url;
        task->worker_token = w.token;
        task->job_id = request.task_id;
      }
      common::client_options o;
      o.connect_timeout = 5s;
      o.read_timeout = 300s;  // longest silence: prompt processing on a slow CPU
      o.bearer_token = w.token;
      o.still_wanted = [&] { return !cancelled(); };
      bool any_token = false;
      bool ended = false;
      common::http_response error_response;
      int status = 0;
      try {
        common::http_client client(w.url, o);
        auto post = [&](const json& body) {
          return client.post_sse(
              "/v1/inference", body,
              [&](const common::sse_event& ev) {
                if (ev.is_done()) return false;
                if (tokens && api::parse_event_type(ev.event) == api::event_type::token) {
                  if (!any_token) {
                    any_token = true;
                    metrics_.histogram_observe("rbee_queen_time_to_first_token_seconds", "",
                                               ms_since(accepted_at) / 1000.0);
                  }
                  return deliver(task->cancelled || tokens(ev.data));
                }
                auto e = json::parse(ev.data, nullptr, false);
                if (!e.is_object()) return !cancelled();
                std::string type = e.value("type", "");
                if (type == "token" && !any_token) {
                  any_token = true;
                  metrics_.histogram_observe("rbee_queen_time_to_first_token_seconds", "",
                                             ms_since(accepted_at) / 1000.0);
                } else if (type == "end" && e.value("stop_reason", "") == "cancelled" &&
                           !cancelled()) {
                  // Not our cancel: the worker stopped (drain, SIGTERM) mid-answer.
                  ended = true;
                  e = error_event(common::unavailable(
                      common::codes::SHUTTING_DOWN,
                      "Worker " + w.worker_id + " stopped the answer early after " +
                          std::to_string(e.value("tokens_out", 0)) + " tokens",
                      5, {{"worker_id", w.worker_id}, {"node", w.node}}));
                } else if (type == "end") {
                  ended = true;
                  if (e.contains("tokens_per_sec") && e["tokens_per_sec"].is_number()) {
                    metrics_.histogram_observe("rbee_queen_tokens_per_second", "",
                                               e["tokens_per_sec"].get<double>());
                  }
                } else if (type == "error") {
                  ended = true;
                }
                send(e);
                return !cancelled();
              },
              &error_response);
        };
        status = post(request.for_worker().to_json());
      } catch (const common::connection_error& e) {
        if (!any_token && !cancelled()) {
          retry = dispatch_retry{std::string("worker unreachable: ") + e.what()};
        } else if (!cancelled()) {
          scheduler_.release(w.worker_id);
          scheduler_.mark_unavailable(w.worker_id);
          throw common::internal_error("Worker " + w.worker_id + " stopped mid-stream: " + e.what(),
                                       {{"worker_id", w.worker_id}, {"node", w.node}});
        }
      }
      {
        std::lock_guard lock(task->mutex);
        task->worker_url.clear();
      }
      if (!retry && status != 0 && status != 200) {
        auto err = error_response.to_http_error();
        if (err.code == common::codes::ALL_SLOTS_BUSY || status == 503) {
          retry = dispatch_retry{err.message};
        } else {
          scheduler_.release(w.worker_id);
          throw err;
        }
      }
      scheduler_.release(w.worker_id);
      if (retry) {
        scheduler_.mark_unavailable(w.worker_id);
        if (attempt >= options_.max_dispatch_attempts) {
          throw common::unavailable(common::codes::ALL_SLOTS_BUSY,
                                    "No worker could take the task: " + retry->reason, 2);
        }
        send(narration("queen-rbee", "dispatch_retry",
                       "Worker " + w.worker_id + " could not take the task (" + retry->reason +
                           "); trying another",
                       {{"worker_id", w.worker_id}}));
        l = scheduler_.acquire(key_for(request), cancelled);
        if (!l) return;
        continue;
      }
      if (cancelled()) {
        metrics_.counter_add("rbee_queen_tasks_total", "Tasks by outcome", 1,
                             {{"outcome", "cancelled"}});
        return;
      }
      if (!ended) {
        throw common::internal_error("Worker " + w.worker_id +
                                     " ended the stream without an end event");
      }
      metrics_.counter_add("rbee_queen_tasks_total", "Tasks by outcome", 1, {{"outcome", "ok"}});
      return;
    }
  } catch (const common::http_error& e) {
    metrics_.counter_add("rbee_queen_tasks_total", "Tasks by outcome", 1, {{"outcome", "error"}});
    send(error_event(e));
  } catch (const std::exception& e) {
    metrics_.counter_add("rbee_queen_tasks_total", "Tasks by outcome", 1, {{"outcome", "error"}});
    spdlog::error("task {} failed: {}", request.task_id, e.what());
    send(error_event(common::internal_error(e.what())));
  }
}

// A queen that restarted knows no workers until a hive reports. Before a cold start it adopts
// the node's hive and reads its workers; the scheduler then decides again, so an idle worker of
// the model is used, not doubled. True when the view of the node's workers was refreshed.
bool task_runner::adopted_hive_workers(const lease& l, const task_sink& sink) {
  if (hives_.known_endpoint(l.node)) return false;  // its workers are in the view already
  auto node = nodes_.get(l.node);
  if (!node) return false;
  hives_.ensure_hive(*node, sink);
  try {
    hives_.refresh_workers(l.node);
  } catch (const std::exception& e) {
    spdlog::warn("workers of {}: {}", l.node, e.what());
    return false;
  }
  return true;
}

std::optional<worker_info> task_runner::cold_start(const task_request& request, const lease& l,
                                                   active_task& task, const task_sink& sink) {
  cold_guard guard(scheduler_, l.placeholder_id);
  auto node = nodes_.get(l.node);
  if (!node) {
    throw common::not_found(common::codes::NODE_NOT_FOUND, "Node '" + l.node + "' not found",
                            {{"node", l.node}});
  }
  sink(narration("queen-rbee", "cold_start",
                 "No idle worker for " + request.model + ": cold start on node '" + l.node + "'",
                 {{"node", l.node}}));
  auto ep = hives_.ensure_hive(*node, sink);
  try {
    hives_.refresh_capabilities(l.node);
  } catch (const std::exception& e) {
    spdlog::warn("capabilities of {}: {}", l.node, e.what());
  }
  if (task.cancelled) return std::nullopt;
  ensure_model(ep, request.model, sink);
  if (task.cancelled) return std::nullopt;

  std::string backend = request.backend.empty() ? "cpu" : request.backend;
  json spawn = {{"model_ref", request.model}, {"backend", backend}};
  spawn["device"] = request.device.value_or(0);
  std::string where = backend;
  if (request.device) where.append(1, ':').append(std::to_string(*request.device));
  sink(narration("rbee-hive", "worker_spawn",
                 "Starting a worker for " + request.model + " on '" + l.node + "' (" + where + ")",
                 {{"node", l.node}, {"backend", backend}}));
  auto started = steady::now();
  auto client = hives_.hive_client(ep, 600s);  // spawn may download first
  auto res = [&] {
    try {
      return client.post_json("/v1/workers/spawn", spawn);
    } catch (const common::connection_error& e) {
      throw common::unavailable(common::codes::NODE_UNREACHABLE,
                                "Lost rbee-hive on '" + l.node + "': " + e.what(), 5,
                                {{"node", l.node}});
    }
  }();
  res.throw_if_error();
  auto body = res.json_body();
  worker_info w = parse_hive_worker(body, l.node);
  if (w.model_ref.empty()) w.model_ref = request.model;
  w.backend = backend;
  w.device = request.device.value_or(0);
  scheduler_.cold_spawned(l.placeholder_id, w);
  guard.set(w.worker_id);
  w = wait_ready(ep, w, task, sink);
  if (task.cancelled) return std::nullopt;
  scheduler_.cold_ready(w);
  guard.dismiss();
  sink(narration(
      "llm-worker-rbee", "worker_ready",
      "Worker " + w.worker_id + " ready on '" + l.node + "' (" + std::to_string(ms_since(started)) +
          " ms)",
      {{"worker_id", w.worker_id}, {"node", l.node}, {"duration_ms", ms_since(started)}}));
  return w;
}

void task_runner::ensure_model(const hive_endpoint& ep, const std::string& model,
                               const task_sink& sink) {
  // Local files need no download: the hive registers them when the worker is spawned.
  if (model.rfind("file:", 0) == 0) return;
  const api::model_ref wanted = api::parse_model_ref(model, "model");
  auto client = hives_.hive_client(ep, 120s);
  auto list = client.get("/v1/models/list");
  if (list.ok()) {
    auto body = json::parse(list.body, nullptr, false);
    const json& models = body.is_object() && body.contains("models") ? body["models"] : body;
    if (models.is_array()) {
      for (const auto& m : models) {
        if (!m.is_object()) continue;
        if (catalog_entry_serves(m, wanted)) {
          sink(narration("rbee-hive", "model_cached",
                         "Model " + model + " is in the catalog of '" + ep.node + "'",
                         {{"node", ep.node}}));
          return;
        }
      }
    }
  }
  sink(narration("rbee-hive", "download_start", "Downloading " + model + " on '" + ep.node + "'",
                 {{"node", ep.node}}));
  auto res = client.post_json("/v1/models/download", {{"model_ref", model}});
  res.throw_if_error();
  std::string id = res.json_body().value("download_id", "");
  if (id.empty()) throw common::internal_error("hive returned no download_id");
  std::optional<common::http_error> failure;
  bool complete = false;
  int last_percent = -1;
  common::http_response err;
  int status = client.get_sse(
      "/v1/models/download/progress?id=" + id,
      [&](const common::sse_event& ev) {
        if (ev.is_done()) return false;
        auto e = json::parse(ev.data, nullptr, false);
        if (!e.is_object()) return true;
        std::string stage = e.value("stage", "");
        if (stage == "downloading") {
          double done = e.value("bytes_downloaded", 0.0), total = e.value("bytes_total", 0.0);
          int percent = total > 0 ? static_cast<int>(100.0 * done / total) : 0;
          if (percent != last_percent) {
            last_percent = percent;
            json extra = e;
            extra["node"] = ep.node;
            extra["percent"] = percent;
            extra.erase("stage");
            sink(narration("rbee-hive", "download_progress",
                           "Downloading " + model + ": " + std::to_string(percent) + "%", extra));
          }
        } else if (stage == "complete") {
          complete = true;
          sink(narration("rbee-hive", "download_complete",
                         "Downloaded " + model + " to " + e.value("local_path", ""),
                         {{"node", ep.node}, {"local_path", e.value("local_path", "")}}));
          return false;
        } else if (stage == "error") {
          std::string code = e.value("code", std::string(common::codes::DOWNLOAD_FAILED));
          failure = common::http_error(common::status_for_code(code), code,
                                       e.value("message", "download failed"),
                                       {{"node", ep.node}, {"model", model}});
          return false;
        }
        return true;
      },
      &err);
  if (status != 200) throw err.to_http_error();
  if (failure) throw *failure;
  if (!complete) throw common::internal_error("download progress stream ended early");
}

namespace {

// Why a worker left while loading, from the hive's exit record: the hive's code where it
// has one (504 LOADING_TIMEOUT), else a failed load (the process exited on its own).
common::http_error loading_failure(const json& exit, const worker_info& spawned,
                                   const std::string& node) {
  // The hive's record is input like any other: fields of the wrong type count as absent.
  auto text = [&](const char* key, const char* def) {
    auto it = exit.find(key);
    return it != exit.end() && it->is_string() ? it->get<std::string>() : std::string(def);
  };
  auto status_it = exit.find("exit_status");
  const int64_t exit_status =
      status_it != exit.end() && status_it->is_number_integer() ? status_it->get<int64_t>() : -1;
  std::string reason = text("reason", "crashed");
  std::string code = text("code", "");
  json details = {{"worker_id", spawned.worker_id},
                  {"node", node},
                  {"model", spawned.model_ref},
                  {"reason", reason},
                  {"exit_status", exit_status}};
  if (code == common::codes::LOADING_TIMEOUT) {
    return common::http_error(common::status_for_code(code), code,
                              "Worker " + spawned.worker_id + " did not finish loading " +
                                  spawned.model_ref + " within the hive's loading timeout",
                              details);
  }
  if (code.empty()) code = std::string(common::codes::MODEL_LOAD_FAILED);
  details["hint"] = "see the worker log on node '" + node + "'";
  return common::http_error(common::status_for_code(code), code,
                            "Worker " + spawned.worker_id + " " +
                                (reason == "crashed" ? "crashed" : "stopped (" + reason + ")") +
                                " while loading " + spawned.model_ref + " (exit status " +
                                std::to_string(exit_status) + ")",
                            details);
}

}  // namespace

worker_info task_runner::wait_ready(const hive_endpoint& ep, const worker_info& spawned,
                                    active_task& task, const task_sink& sink) {
  auto deadline = steady::now() + options_.loading_timeout;
  auto client = hives_.hive_client(ep, 10s);
  bool progress_streamed = false;
  std::optional<common::http_error> load_error;  // the worker's own word on a failed load
  int last_layers = -1;
  int misses = 0;
  while (!task.cancelled) {
    auto res = client.get("/v1/workers/list");
    res.throw_if_error();
    auto body = res.json_body();
    std::optional<worker_info> found;
    std::string failure;
    if (body.contains("workers") && body["workers"].is_array()) {
      for (const auto& j : body["workers"]) {
        if (j.is_object() && j.value("worker_id", "") == spawned.worker_id) {
          found = parse_hive_worker(j, ep.node);
          if (j.contains("error")) failure = j["error"].dump();
        }
      }
    }
    // Gone from the list: the hive tells why (its loading timeout, a crash) in recent_exits.
    if (!found && body.contains("recent_exits") && body["recent_exits"].is_array()) {
      for (const auto& e : body["recent_exits"]) {
        if (e.is_object() && e.value("worker_id", "") == spawned.worker_id) {
          throw loading_failure(e, spawned, ep.node);
        }
      }
    }
    if (found) {
      misses = 0;
      if (found->model_ref.empty()) found->model_ref = spawned.model_ref;
      if (found->state == worker_state::error || found->state == worker_state::stopped) {
        throw common::internal_error("Worker " + spawned.worker_id + " failed to load " +
                                         spawned.model_ref +
                                         (failure.empty() ? "" : ": " + failure),
                                     {{"worker_id", spawned.worker_id}, {"node", ep.node}});
      }
      if (!progress_streamed && !found->url.empty()) {
        common::client_options o;
        o.connect_timeout = 2s;
        o.read_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(
            std::max<steady::duration>(deadline - steady::now(), 1s));
        o.bearer_token = found->token;
        try {
          common::http_client(found->url, o)
              .get_sse("/v1/loading/progress", [&](const common::sse_event& ev) {
                progress_streamed = true;
                if (ev.is_done() || task.cancelled) return false;
                auto e = json::parse(ev.data, nullptr, false);
                if (!e.is_object()) return true;
                const std::string stage = e.value("stage", "");
                if (stage == "loading" || (stage == "ready" && e.contains("layers_total"))) {
                  int layers = e.value("layers_loaded", 0);
                  if (layers != last_layers) {
                    last_layers = layers;
                    json extra = e;
                    extra.erase("stage");
                    extra["node"] = ep.node;
                    extra["worker_id"] = spawned.worker_id;
                    sink(narration("llm-worker-rbee", "loading_progress",
                                   "Loading " + spawned.model_ref + ": layer " +
                                       std::to_string(layers) + "/" +
                                       std::to_string(e.value("layers_total", 0)),
                                   extra));
                  }
                  return true;
                }
                if (stage == "error") {
                  std::string code = e.value("code", std::string(common::codes::MODEL_LOAD_FAILED));
                  load_error = common::http_error(common::status_for_code(code), code,
                                                  "Worker " + spawned.worker_id +
                                                      " could not load " + spawned.model_ref +
                                                      ": " + e.value("message", "no reason given"),
                                                  {{"worker_id", spawned.worker_id},
                                                   {"node", ep.node},
                                                   {"model", spawned.model_ref}});
                }
                return stage != "ready" && stage != "error";
              });
          // The worker answered (events or an error status): no second stream either way.
          progress_streamed = true;
        } catch (const common::connection_error& e) {
          // Not listening yet (the process is still starting): tried again on the next poll,
          // until the loading deadline.
          spdlog::debug("loading progress of {}: {}", spawned.worker_id, e.what());
        }
        if (load_error) throw *load_error;
        if (progress_streamed) continue;
      }
      // Ready only after its progress was relayed: a fast load still shows its last frame.
      if (accepts_tasks(found->state) && !found->url.empty()) return *found;
    } else if (++misses > 50) {
      throw common::internal_error("Worker " + spawned.worker_id + " disappeared while loading",
                                   {{"worker_id", spawned.worker_id}, {"node", ep.node}});
    }
    if (steady::now() >= deadline) {
      try {
        client.post_json("/v1/workers/shutdown", {{"worker_id", spawned.worker_id}});
      } catch (const common::connection_error& e) {
        spdlog::warn("stopping {} after its loading timeout: {}", spawned.worker_id, e.what());
      }
      throw common::gateway_timeout(
          common::codes::LOADING_TIMEOUT,
          "Worker " + spawned.worker_id + " did not finish loading within " +
              std::to_string(options_.loading_timeout.count() / 1000) + " s",
          {{"worker_id", spawned.worker_id}, {"node", ep.node}});
    }
    std::this_thread::sleep_for(100ms);
  }
  return spawned;
}

}  // namespace rbee::queen
