#include "queen/dispatch.h"

#include <thread>

#include <spdlog/spdlog.h>

#include "api/model_ref.h"
#include "common/errors.h"
#include "common/http_client.h"
#include "common/sse.h"
#include "common/text.h"
#include "queen/narration.h"

namespace rbee::queen {

namespace {

using nlohmann::json;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

// "cpu", "cuda:1".
std::string device_label(const std::string& backend, int device) {
  return backend == "cuda" ? backend + ":" + std::to_string(device) : backend;
}

// Whether a catalog entry holds the model a task names: its id, or its reference satisfies the
// task's (hf:ORG/REPO is satisfied by any cached file of that repository).
bool serves(const catalog_model& entry, const std::string& model) {
  return entry.id == model || api::reference_satisfied_by(model, entry.reference);
}

int64_t ms_since(steady::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - t).count();
}

// Gives back a cold-start reservation unless the start completed.
class cold_guard {
 public:
  cold_guard(scheduler& s, const lease& l)
      : scheduler_(s), id_(l.placeholder_id), slots_(l.slots), client_(l.client) {}
  ~cold_guard() {
    if (!id_.empty()) scheduler_.cold_failed(id_, slots_, client_);
  }
  cold_guard(const cold_guard&) = delete;
  cold_guard& operator=(const cold_guard&) = delete;
  void set(std::string id) { id_ = std::move(id); }
  void dismiss() { id_.clear(); }

 private:
  scheduler& scheduler_;
  std::string id_;
  int slots_;
  std::string client_;
};

// Why a worker left while loading, from the hive's exit record: the hive's code where it
// has one (LOADING_TIMEOUT), else a failed load (the process exited on its own).
error loading_failure(const worker_exit& exit, const worker_info& spawned,
                      const std::string& node) {
  json details = {{"worker_id", spawned.worker_id},
                  {"node", node},
                  {"model", spawned.model_ref},
                  {"reason", exit.reason},
                  {"exit_status", exit.exit_status}};
  if (exit.code == common::codes::LOADING_TIMEOUT) {
    return error(exit.code,
                 "Worker " + spawned.worker_id + " did not finish loading " + spawned.model_ref +
                     " within the hive's loading timeout",
                 details);
  }
  std::string code = exit.code.empty() ? std::string(common::codes::MODEL_LOAD_FAILED) : exit.code;
  details["hint"] = "see the worker log on node '" + node + "'";
  return error(code,
               "Worker " + spawned.worker_id + " " +
                   (exit.reason == "crashed" ? "crashed" : "stopped (" + exit.reason + ")") +
                   " while loading " + spawned.model_ref + " (exit status " +
                   std::to_string(exit.exit_status) + ")",
               details);
}

std::string percent_text(int percent) {
  return std::to_string(percent) + "%";
}

}  // namespace

void ensure_model(hive_client& hive, const std::string& model, const api::hub_access& hub,
                  const task_sink& sink) {
  // Local files need no download: the hive registers them when the worker is spawned.
  if (model.rfind("file:", 0) == 0) return;
  const std::string& node = hive.endpoint().node;
  std::vector<catalog_model> catalog;
  try {
    catalog = hive.list_models();
  } catch (const error& e) {
    spdlog::debug("catalog of {}: {}", node, e.what());  // downloading tells the real cause
  }
  for (const auto& m : catalog) {
    if (serves(m, model)) {
      sink(narration("rbee-hive", "model_cached",
                     "Model " + model + " is in the catalog of '" + node + "'", {{"node", node}}));
      return;
    }
  }
  sink(narration("rbee-hive", "download_start", "Downloading " + model + " on '" + node + "'",
                 {{"node", node}}));
  const std::string id = hive.start_download(model, hub);
  std::optional<error> failure;
  bool complete = false;
  int last_percent = -1;
  hive.follow_download(id, [&](const download_event& e) {
    using stage = download_event::stage_kind;
    if (e.stage == stage::downloading) {
      int percent = e.bytes_total > 0
                        ? static_cast<int>(100.0 * static_cast<double>(e.bytes_downloaded) /
                                           static_cast<double>(e.bytes_total))
                        : 0;
      if (percent != last_percent) {
        last_percent = percent;
        sink(narration("rbee-hive", "download_progress",
                       "Downloading " + model + ": " + percent_text(percent),
                       {{"node", node},
                        {"percent", percent},
                        {"bytes_downloaded", e.bytes_downloaded},
                        {"bytes_total", e.bytes_total},
                        {"speed_mbps", e.speed_mbps},
                        {"attempt", e.attempt}}));
      }
    } else if (e.stage == stage::complete) {
      complete = true;
      sink(narration("rbee-hive", "download_complete",
                     "Downloaded " + model + " to " + e.local_path,
                     {{"node", node}, {"local_path", e.local_path}}));
      return false;
    } else if (e.stage == stage::error) {
      failure = error(e.code, e.message, {{"node", node}, {"model", model}});
      return false;
    } else if (e.stage == stage::narration && !e.message.empty()) {
      sink(narration("rbee-hive", "download_note", e.message, {{"node", node}}));
    }
    return true;
  });
  if (failure) throw *failure;
  if (!complete) throw internal("download progress stream ended early");
}

uint64_t conversation_id(const task_request& request) {
  // The system prompt and the first user turn name a chat; a prompt's first 512 bytes name a
  // completion's document. Less than that is too little to tell two users apart.
  constexpr size_t identifying_bytes = 512;
  common::fnv1a h;
  h.add(request.model);
  const auto& messages = request.generation.messages;
  if (!messages.empty()) {
    size_t identifying = 0;
    for (const auto& m : messages) {
      h.add(m.role);
      h.add(m.content);
      if (m.role == "user") {
        identifying = messages.size() > 1 ? 1 : 0;
        break;
      }
    }
    return identifying ? h.value : 0;
  }
  const auto& prompt = request.generation.prompt;
  if (prompt.size() < identifying_bytes) return 0;
  h.add(std::string_view(prompt).substr(0, identifying_bytes));
  return h.value;
}

dispatcher::dispatcher(std::chrono::milliseconds loading_timeout, registry& nodes,
                       hive_manager& hives, scheduler& sched,
                       std::map<std::string, model_settings> settings)
    : loading_timeout_(loading_timeout),
      nodes_(nodes),
      hives_(hives),
      scheduler_(sched),
      settings_(std::move(settings)) {}

task_key dispatcher::key_for(const task_request& r) {
  task_key key{
      .model = r.model,
      .node = r.node,
      .backend = r.backend,
      .device = r.worker.devices.empty() ? r.device : std::optional(r.worker.devices.front()),
      .devices = r.worker.devices,
      .split = r.worker.split,
      .model_bytes = known_model_bytes(r.model),
      .slots = r.generation.n,
      .client = r.client,
      .priority = r.priority,
      .preferred_worker = {},
      .max_replicas = settings_for(r.model).max_replicas,
      .full_devices = {},
      .same_file = names_of_same_file(r.model),
      .avoid_workers = {}};
  if (uint64_t id = conversation_id(r)) {
    std::lock_guard lock(mutex_);
    if (auto it = conversation_worker_.find(id); it != conversation_worker_.end()) {
      key.preferred_worker = it->second;
    }
  }
  return key;
}

void dispatcher::remember_conversation(const task_request& request, const std::string& worker_id) {
  uint64_t id = conversation_id(request);
  if (id == 0) return;
  constexpr size_t max_remembered = 10000;
  std::lock_guard lock(mutex_);
  // Bounded: when full, the oldest ids by value go first (any eviction order will do).
  if (conversation_worker_.size() >= max_remembered) {
    conversation_worker_.erase(conversation_worker_.begin());
  }
  conversation_worker_[id] = worker_id;
}

std::vector<std::string> dispatcher::names_of_same_file(const std::string& model) {
  std::lock_guard lock(mutex_);
  std::vector<std::string> hashes;
  for (const auto& [node, view] : catalogs_) {
    for (const auto& m : view.models) {
      if (serves(m, model) && !m.sha256.empty()) hashes.push_back(m.sha256);
    }
  }
  std::vector<std::string> names;
  for (const auto& [node, view] : catalogs_) {
    for (const auto& m : view.models) {
      if (std::find(hashes.begin(), hashes.end(), m.sha256) == hashes.end()) continue;
      names.push_back(m.reference);
      names.push_back(m.id);
    }
  }
  return names;
}

uint64_t dispatcher::known_model_bytes(const std::string& model) {
  std::lock_guard lock(mutex_);
  for (const auto& [node, view] : catalogs_) {
    for (const auto& m : view.models) {
      if (serves(m, model) && m.size_bytes > 0) return m.size_bytes;
    }
  }
  return 0;
}

model_settings dispatcher::settings_for(const std::string& model) {
  if (auto it = settings_.find(model); it != settings_.end()) return it->second;
  // Settings may name the catalog id of the file a reference resolves to.
  std::lock_guard lock(mutex_);
  for (const auto& [node, view] : catalogs_) {
    for (const auto& m : view.models) {
      auto it = settings_.find(m.id);
      if (it != settings_.end() && serves(m, model)) return it->second;
    }
  }
  return {};
}

void dispatcher::refresh_catalog(const std::string& node) {
  auto ep = hives_.known_endpoint(node);
  if (!ep) return;
  try {
    auto models = hive_client(*ep, 5s).list_models();
    std::lock_guard lock(mutex_);
    catalogs_[node] = catalog_view{std::move(models), steady::now()};
  } catch (const std::exception& e) {
    spdlog::debug("catalog of {}: {}", node, e.what());
  }
}

void dispatcher::refresh_view(const task_request& request) {
  std::vector<node_capacity> capacity;
  for (const auto& n : nodes_.list()) {
    node_capacity c{.node = n.node_name,
                    .reachable = n.is_local() || n.status == "reachable" || n.status == "running",
                    .ram_free_bytes = std::nullopt,
                    .gpus = {},
                    .cached_models = {}};
    for (const auto& d : n.devices) {
      if (!d.is_object()) continue;
      const std::string backend = d.value("backend", "");
      const char* free_key = backend == "cuda" ? "vram_free_bytes" : "ram_free_bytes";
      std::optional<uint64_t> free;
      if (d.contains(free_key) && d[free_key].is_number_unsigned())
        free = d[free_key].get<uint64_t>();
      if (backend == "cpu") c.ram_free_bytes = free;
      // A hive's list is input: a device index beyond any real machine's is skipped.
      if (backend == "cuda" && d.contains("device") && d["device"].is_number_unsigned() &&
          d["device"].get<uint64_t>() <= 1024) {
        c.gpus.push_back(
            {.device = static_cast<int>(d["device"].get<uint64_t>()), .free_bytes = free});
      }
    }
    bool due = hives_.known_endpoint(n.node_name) && refresh_due(n.node_name);
    if (due && (!request.node || *request.node == n.node_name)) {
      try {
        hives_.refresh_workers(n.node_name);
      } catch (const std::exception& e) {
        spdlog::warn("refreshing workers of {}: {}", n.node_name, e.what());
      }
    }
    if (due) refresh_catalog(n.node_name);
    {
      std::lock_guard lock(mutex_);
      if (auto it = catalogs_.find(n.node_name); it != catalogs_.end()) {
        for (const auto& m : it->second.models) {
          c.cached_models.push_back(m.reference);
          c.cached_models.push_back(m.id);
        }
      }
    }
    // Without a request for a node, prefer the built-in one when all else is equal.
    if (n.is_local()) {
      capacity.insert(capacity.begin(), c);
    } else {
      capacity.push_back(c);
    }
  }
  scheduler_.set_nodes(std::move(capacity));
}

// A burst of tasks asks each hive for its workers once, not once per task: between two asks
// the hive's reports and the scheduler's own in-flight counts keep the view current.
bool dispatcher::refresh_due(const std::string& node) {
  constexpr auto min_interval = 500ms;
  std::lock_guard lock(mutex_);
  auto now = steady::now();
  auto& last = last_refresh_[node];
  if (last != steady::time_point{} && now - last < min_interval) return false;
  last = now;
  return true;
}

admission dispatcher::admit(const task_request& request) {
  if (request.node && !nodes_.get(*request.node)) {
    throw error(common::codes::NODE_NOT_FOUND, "Node '" + *request.node + "' not found",
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

std::optional<lease> dispatcher::first_lease(const task_request& request, admission& admitted,
                                             const task_sink& send,
                                             const std::function<bool()>& cancelled) {
  const auto accepted_at = steady::now();
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
  if (!l || l->kind != decision_kind::cold) return l;
  bool adopted = false;
  {
    // The reservation goes back if the adoption throws (VERSION_MISMATCH, unreachable).
    cold_guard placeholder(scheduler_, *l);
    adopted = adopted_hive_workers(*l, send);
    if (!adopted) placeholder.dismiss();
  }  // after an adoption it goes back here, and the scheduler decides again
  if (!adopted) return l;
  refresh_view(request);  // the node's devices and catalog as its hive now reports them
  return scheduler_.acquire(key_for(request), cancelled);
}

std::optional<lease> dispatcher::next_lease(const task_request& request,
                                            const std::function<bool()>& cancelled,
                                            const std::vector<std::string>& avoid_workers) {
  refresh_view(request);  // a lost worker's node may be gone with it
  task_key key = key_for(request);
  key.avoid_workers = avoid_workers;
  return scheduler_.acquire(key, cancelled);
}

std::optional<worker_info> dispatcher::worker_for(const task_request& request, const lease& l,
                                                  const std::atomic<bool>& cancelled,
                                                  const task_sink& sink) {
  if (l.kind == decision_kind::cold) return cold_start(request, l, cancelled, sink);
  const worker_info& w = l.worker;
  sink(narration("queen-rbee", "worker_selected",
                 "Using worker " + w.worker_id + " on node '" + w.node + "' (" +
                     device_label(w.backend, w.device) + ", warm: " + l.reason + ")",
                 {{"worker_id", w.worker_id},
                  {"node", w.node},
                  {"backend", w.backend},
                  {"device", w.device},
                  {"warm", true},
                  {"reason", l.reason}}));
  return w;
}

// A queen that restarted knows no workers until a hive reports. Before a cold start it adopts
// the node's hive and reads its workers; the scheduler then decides again, so an idle worker of
// the model is used, not doubled. True when the view of the node's workers was refreshed.
bool dispatcher::adopted_hive_workers(const lease& l, const task_sink& sink) {
  if (hives_.known_endpoint(l.node)) return false;  // its workers are in the view already
  auto node = nodes_.get(l.node);
  if (!node) return false;
  hives_.ensure_hive(*node, sink);
  // Its devices too: the first placement on a node whose hive was not running could not know
  // its GPUs.
  try {
    hives_.refresh_capabilities(l.node);
  } catch (const std::exception& e) {
    spdlog::warn("capabilities of {}: {}", l.node, e.what());
  }
  try {
    hives_.refresh_workers(l.node);
  } catch (const std::exception& e) {
    spdlog::warn("workers of {}: {}", l.node, e.what());
    return false;
  }
  return true;
}

std::optional<worker_info> dispatcher::cold_start(const task_request& request, const lease& l,
                                                  const std::atomic<bool>& cancelled,
                                                  const task_sink& sink) {
  cold_guard guard(scheduler_, l);
  auto node = nodes_.get(l.node);
  if (!node) {
    throw error(common::codes::NODE_NOT_FOUND, "Node '" + l.node + "' not found",
                {{"node", l.node}});
  }
  sink(narration(
      "queen-rbee", "cold_start",
      "No free worker for " + request.model + ": cold start " + l.reason,
      {{"node", l.node}, {"backend", l.backend}, {"device", l.device}, {"reason", l.reason}}));
  auto ep = hives_.ensure_hive(*node, sink);
  try {
    hives_.refresh_capabilities(l.node);
  } catch (const std::exception& e) {
    spdlog::warn("capabilities of {}: {}", l.node, e.what());
  }
  if (cancelled) return std::nullopt;
  hive_client catalog(ep, 120s);
  ensure_model(catalog, request.model, request.hub, sink);
  if (cancelled) return std::nullopt;

  // Slots: the request's, else the model's setting, else the queen's cap, else as many as fit
  // on the device (the hive sizes them); never fewer than the task's choices.
  auto settings = settings_for(request.model);
  const api::worker_overrides& asked = request.worker;
  if (asked.ctx) settings.ctx = *asked.ctx;
  if (asked.slots) settings.slots = *asked.slots;
  if (asked.keep_alive_s) settings.keep_alive_s = *asked.keep_alive_s;
  int slots = settings.slots > 0 ? settings.slots : scheduler_.options().max_slots_per_worker;
  if (slots > 0) slots = std::max(slots, request.generation.n);
  spawn_request spawn{.model_ref = request.model,
                      .backend = l.backend,
                      .device = l.device,
                      .slots = slots,
                      .min_slots = request.generation.n,
                      .ctx = settings.ctx,
                      .keep_alive_s = settings.keep_alive_s,
                      .devices = request.worker.devices,
                      .split = request.worker.split};
  sink(narration("rbee-hive", "worker_spawn",
                 "Starting a worker for " + request.model + " on '" + l.node + "' (" +
                     device_label(spawn.backend, l.device) + ")",
                 {{"node", l.node}, {"backend", spawn.backend}, {"device", l.device}}));
  auto started = steady::now();
  hive_client spawner(ep, 600s);  // spawn may download first
  auto spawn_once = [&] {
    try {
      return spawner.spawn_worker(spawn);
    } catch (const common::connection_error& e) {
      throw unavailable(common::codes::NODE_UNREACHABLE,
                        "Lost rbee-hive on '" + l.node + "': " + e.what(), 5, {{"node", l.node}});
    }
  };
  worker_info w = [&] {
    try {
      return spawn_once();
    } catch (const error& e) {
      // The queen chose the GPU from the file's size; the hive's preflight knows the whole need.
      // A GPU the client did not ask for that turns out too small leaves the model to the CPU.
      if (e.code != common::codes::INSUFFICIENT_VRAM || !request.backend.empty() ||
          !spawn.devices.empty())
        throw;
      sink(narration("queen-rbee", "placement_fallback",
                     device_label(spawn.backend, l.device) + " on '" + l.node +
                         "' is too small for " + request.model + " (" + e.message +
                         "): on its CPU instead",
                     {{"node", l.node}, {"backend", "cpu"}}));
      spawn.backend = "cpu";
      spawn.device = 0;
      return spawn_once();
    }
  }();
  scheduler_.cold_spawned(l.placeholder_id, w);
  guard.set(w.worker_id);
  refresh_catalog(l.node);  // the spawn may have added the file: its names now serve the model
  hive_client poller(ep, 10s);
  w = wait_ready(poller, w, cancelled, sink);
  if (cancelled) return std::nullopt;
  scheduler_.cold_ready(w);
  guard.dismiss();
  sink(narration("llm-worker-rbee", "worker_ready",
                 "Worker " + w.worker_id + " ready on '" + l.node + "' (" +
                     std::to_string(ms_since(started)) + " ms; " + std::to_string(w.slots_total) +
                     " slots of " + std::to_string(w.ctx) + " tokens)",
                 {{"worker_id", w.worker_id},
                  {"node", l.node},
                  {"duration_ms", ms_since(started)},
                  {"slots", w.slots_total},
                  {"ctx", w.ctx}}));
  return w;
}

worker_info dispatcher::wait_ready(hive_client& hive, const worker_info& spawned,
                                   const std::atomic<bool>& cancelled, const task_sink& sink) {
  const std::string& node = hive.endpoint().node;
  auto deadline = steady::now() + loading_timeout_;
  bool progress_streamed = false;
  int last_layers = -1;
  int misses = 0;
  while (!cancelled) {
    auto list = hive.list_workers();
    std::optional<worker_info> found;
    for (const auto& w : list.workers) {
      if (w.worker_id == spawned.worker_id) found = w;
    }
    // Gone from the list: the hive tells why (its loading timeout, a crash) in recent_exits.
    if (!found) {
      for (const auto& e : list.recent_exits) {
        if (e.worker_id == spawned.worker_id) throw loading_failure(e, spawned, node);
      }
    }
    if (found) {
      misses = 0;
      if (found->model_ref.empty()) found->model_ref = spawned.model_ref;
      if (found->state == worker_state::error || found->state == worker_state::stopped) {
        auto failure = list.load_errors.find(spawned.worker_id);
        throw internal("Worker " + spawned.worker_id + " failed to load " + spawned.model_ref +
                           (failure == list.load_errors.end() ? "" : ": " + failure->second),
                       {{"worker_id", spawned.worker_id}, {"node", node}});
      }
      if (!progress_streamed && !found->url.empty()) {
        progress_streamed =
            relay_loading_progress(*found, spawned, node, deadline, cancelled, sink, last_layers);
        if (progress_streamed) continue;
      }
      // Ready only after its progress was relayed: a fast load still shows its last frame.
      if (accepts_tasks(found->state) && !found->url.empty()) return *found;
    } else if (++misses > 50) {
      throw internal("Worker " + spawned.worker_id + " disappeared while loading",
                     {{"worker_id", spawned.worker_id}, {"node", node}});
    }
    if (steady::now() >= deadline) {
      try {
        hive.stop_worker(spawned.worker_id);
      } catch (const std::exception& e) {
        spdlog::warn("stopping {} after its loading timeout: {}", spawned.worker_id, e.what());
      }
      throw error(common::codes::LOADING_TIMEOUT,
                  "Worker " + spawned.worker_id + " did not finish loading within " +
                      std::to_string(loading_timeout_.count() / 1000) + " s",
                  {{"worker_id", spawned.worker_id}, {"node", node}});
    }
    std::this_thread::sleep_for(100ms);
  }
  return spawned;
}

bool dispatcher::relay_loading_progress(const worker_info& found, const worker_info& spawned,
                                        const std::string& node, steady::time_point deadline,
                                        const std::atomic<bool>& cancelled, const task_sink& sink,
                                        int& last_layers) {
  common::client_options o;
  o.connect_timeout = 2s;
  o.read_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::max<steady::duration>(deadline - steady::now(), 1s));
  o.bearer_token = found.token;
  std::optional<error> load_error;  // the worker's own word on a failed load
  bool answered = false;
  try {
    common::http_client(found.url, o)
        .get_sse("/v1/loading/progress", [&](const common::sse_event& ev) {
          answered = true;
          if (ev.is_done() || cancelled) return false;
          auto e = json::parse(ev.data, nullptr, false);
          if (!e.is_object()) return true;
          const std::string stage = e.value("stage", "");
          if (stage == "loading" || (stage == "ready" && e.contains("layers_total"))) {
            int layers = e.value("layers_loaded", 0);
            if (layers != last_layers) {
              last_layers = layers;
              json extra = e;
              extra.erase("stage");
              extra["node"] = node;
              extra["worker_id"] = spawned.worker_id;
              sink(narration("llm-worker-rbee", "loading_progress",
                             "Loading " + spawned.model_ref + ": layer " + std::to_string(layers) +
                                 "/" + std::to_string(e.value("layers_total", 0)),
                             extra));
            }
            return true;
          }
          if (stage == "error") {
            load_error = error(
                e.value("code", std::string(common::codes::MODEL_LOAD_FAILED)),
                "Worker " + spawned.worker_id + " could not load " + spawned.model_ref + ": " +
                    e.value("message", "no reason given"),
                {{"worker_id", spawned.worker_id}, {"node", node}, {"model", spawned.model_ref}});
          }
          return stage != "ready" && stage != "error";
        });
    answered = true;  // events or an error status: no second stream either way
  } catch (const common::connection_error& e) {
    // Not listening yet (the process is still starting): tried again on the next poll, until
    // the loading deadline.
    spdlog::debug("loading progress of {}: {}", spawned.worker_id, e.what());
  }
  if (load_error) throw *load_error;
  return answered;
}

}  // namespace rbee::queen
