#include "queen/scheduler.h"

#include <algorithm>
#include <set>
#include <tuple>

#include "api/model_ref.h"
#include "common/errors.h"
#include "queen/errors.h"

namespace rbee::queen {

std::string_view to_string(decision_kind k) {
  switch (k) {
    case decision_kind::warm:
      return "warm";
    case decision_kind::cold:
      return "cold";
    case decision_kind::wait:
      return "wait";
    case decision_kind::none:
      return "none";
  }
  return "none";
}

nlohmann::json to_json(const worker_view& w) {
  nlohmann::json j = {
      {"worker_id", w.info.worker_id},
      {"node", w.info.node},
      {"model_ref", w.info.model_ref},
      {"state", w.pending ? "spawning" : to_string(w.info.state)},
      {"url", w.info.url},
      {"backend", w.info.backend},
      {"device", w.info.device},
      {"devices", w.info.devices.empty() ? std::vector<int>{w.info.device} : w.info.devices},
      {"slots_total", w.info.slots_total},
      {"slots_busy", std::max(w.info.slots_busy, w.in_flight)},
      {"model_id", w.info.model_id},
      {"ctx", w.info.ctx},
      {"memory_bytes", w.info.memory_bytes},
      {"memory_used_bytes", w.info.memory_used_bytes},
      {"tokens_per_second", w.info.tokens_per_second},
      {"keep_alive_s", w.info.keep_alive_s},
      {"started_at_unix", w.info.started_at_unix},
      {"ready_at_unix", w.info.ready_at_unix},
      {"unload_at_unix", w.in_flight > 0 ? 0 : w.info.unload_at_unix}};
  if (!w.info.devices.empty()) j["split"] = w.info.split;  // "layer" or "tensor"
  return j;
}

std::string_view to_string(placement_policy p) {
  return p == placement_policy::binpack ? "binpack" : "spread";
}

std::optional<placement_policy> parse_placement_policy(std::string_view name) {
  if (name == "spread") return placement_policy::spread;
  if (name == "binpack") return placement_policy::binpack;
  return std::nullopt;
}

std::string device_id(const std::string& node, const std::string& backend, int device) {
  return node + "/" + (backend == "cuda" ? "cuda:" + std::to_string(device) : backend);
}

bool serves_model(const task_key& key, const worker_info& w) {
  // A worker of hf:ORG/REPO:FILE serves a task for hf:ORG/REPO.
  if (api::reference_satisfied_by(key.model, w.model_ref)) return true;
  auto named = [&](const std::string& name) {
    return !name.empty() &&
           std::find(key.same_file.begin(), key.same_file.end(), name) != key.same_file.end();
  };
  return named(w.model_ref) || named(w.model_id);
}

namespace {

bool avoided(const task_key& key, const worker_info& w) {
  return std::find(key.avoid_workers.begin(), key.avoid_workers.end(), w.worker_id) !=
         key.avoid_workers.end();
}

bool matches(const task_key& key, const worker_info& w) {
  if (!serves_model(key, w) || avoided(key, w)) return false;
  if (key.node && w.node != *key.node) return false;
  if (!key.backend.empty() && w.backend != key.backend) return false;
  if (key.device && w.device != *key.device) return false;
  if (!key.devices.empty() && (w.devices != key.devices || w.split != key.split)) return false;
  return true;
}

// Still (or soon) able to serve: counts against the replica and per-device caps.
bool alive(const worker_view& w) {
  return w.pending || w.info.state == worker_state::spawning ||
         w.info.state == worker_state::loading || accepts_tasks(w.info.state);
}

int effective_slots(const worker_view& w, const scheduler_options& o) {
  int slots = w.info.slots_total > 0 ? w.info.slots_total : o.default_slots;
  return o.max_slots_per_worker > 0 ? std::min(slots, o.max_slots_per_worker) : slots;
}

std::string human_bytes(uint64_t bytes) {
  constexpr uint64_t mib = uint64_t{1} << 20, gib = uint64_t{1} << 30;
  if (bytes >= gib) return std::to_string(bytes / gib) + " GiB";
  return std::to_string(bytes / mib) + " MiB";
}

// A device a new worker could start on.
struct candidate {
  const node_capacity* node = nullptr;
  std::string backend;
  int device = 0;
  std::optional<uint64_t> free_bytes;
  bool cached = false;
  int load = 0;  // the queen's tasks in flight on the node

  std::string label() const {
    return backend == "cuda" ? "cuda:" + std::to_string(device) : std::string("cpu");
  }
};

bool model_cached(const node_capacity& n, const std::string& model) {
  return std::any_of(n.cached_models.begin(), n.cached_models.end(), [&](const std::string& c) {
    return c == model || api::reference_satisfied_by(model, c);
  });
}

// Whether `a` is the better place for a new worker: a GPU, the model's file already there,
// then memory by policy, then the lighter load. Ties keep the fleet's order.
bool better_place(const candidate& a, const candidate& b, placement_policy policy) {
  bool a_gpu = a.backend == "cuda", b_gpu = b.backend == "cuda";
  if (a_gpu != b_gpu) return a_gpu;
  if (a.cached != b.cached) return a.cached;
  if (a.free_bytes != b.free_bytes) {
    // Unknown memory is assumed to fit but ranks after any known amount.
    if (!a.free_bytes || !b.free_bytes) return a.free_bytes.has_value();
    return policy == placement_policy::spread ? *a.free_bytes > *b.free_bytes
                                              : *a.free_bytes < *b.free_bytes;
  }
  return a.load < b.load;
}

std::string place_reason(const candidate& c, const task_key& key) {
  std::string reason = "on " + c.node->node + " " + c.label();
  reason += c.free_bytes ? ": " + human_bytes(*c.free_bytes) + " free" : ": memory unknown";
  // A file: reference names a path on the node: nothing is downloaded.
  reason += c.cached                           ? ", model cached"
            : key.model.rfind("file:", 0) == 0 ? ", model file on the node"
                                               : ", model to download";
  return reason;
}

// Devices of the allowed nodes where a worker of the key's model may start, and why others
// were left out.
struct candidate_search {
  std::vector<candidate> found;
  // Devices the queen's view rules out (too little memory by its numbers, or a backend or
  // device the node did not list): when nothing else may start, the hive's preflight on one of
  // them gives the client the precise answer (507 with the sizes, 400 with the devices there).
  std::vector<candidate> ruled_out;
  // Devices left out because they hold as many workers of the model as a device may, by name
  // (when nothing may start, they are why).
  std::vector<std::string> held;
  bool any_reachable = false;
};

candidate_search find_candidates(const task_key& key, const std::vector<worker_view>& workers,
                                 const std::vector<node_capacity>& nodes,
                                 const scheduler_options& options) {
  candidate_search out;
  for (const auto& n : nodes) {
    if (key.node && n.node != *key.node) continue;
    // A named node is tried even when it looked unreachable: its hive may be back.
    if (!n.reachable && !key.node) continue;
    out.any_reachable = true;
    int load = 0;
    for (const auto& w : workers) {
      if (w.info.node == n.node) load += w.in_flight;
    }
    std::vector<candidate> devices;
    if (key.backend.empty() || key.backend == "cuda") {
      for (const auto& g : n.gpus) devices.push_back({&n, "cuda", g.device, g.free_bytes});
    }
    if (key.backend.empty() || key.backend == "cpu") {
      devices.push_back({&n, "cpu", 0, n.ram_free_bytes});
    }
    bool device_listed = false;
    for (auto& c : devices) {
      if (key.device && c.device != *key.device) continue;
      device_listed = true;
      int on_device = 0;
      std::string holders;
      for (const auto& w : workers) {
        // A worker too small for the task does not hold the device against a larger one.
        bool here = w.info.node == n.node && w.info.backend == c.backend &&
                    w.info.device == c.device && alive(w) &&
                    effective_slots(w, options) >= key.slots;
        if (here && serves_model(key, w.info) && !avoided(key, w.info)) {
          ++on_device;
          holders += (holders.empty() ? "" : ", ") + w.info.worker_id;
        }
      }
      if (on_device >= options.max_workers_per_model) {
        out.held.push_back(n.node + " " + c.label() + " (" + holders + ")");
        continue;
      }
      // The weights and an eighth more for the cache and scratch of at least one slot.
      uint64_t needed = key.model_bytes + key.model_bytes / 8;
      c.cached = model_cached(n, key.model);
      c.load = load;
      bool refused = std::find(key.full_devices.begin(), key.full_devices.end(),
                               device_id(n.node, c.backend, c.device)) != key.full_devices.end();
      bool fits = !refused && (key.model_bytes == 0 || !c.free_bytes || *c.free_bytes >= needed);
      (fits ? out.found : out.ruled_out).push_back(c);
    }
    if (!device_listed) {
      out.ruled_out.push_back({&n, key.backend.empty() ? "cpu" : key.backend,
                               key.device.value_or(0), std::nullopt, model_cached(n, key.model),
                               load});
    }
  }
  return out;
}

}  // namespace

decision decide(const task_key& key, const std::vector<worker_view>& workers,
                const std::vector<node_capacity>& nodes, const scheduler_options& options,
                size_t queued_for_model) {
  decision d;
  // Warm: the conversation's worker when it has room, else the one with the most free slots.
  const worker_view* best = nullptr;
  int best_free = 0;
  bool best_preferred = false;
  int alive_count = 0;
  bool start_pending = false;
  for (const auto& w : workers) {
    if (!matches(key, w.info)) continue;
    // A worker with fewer slots than the task's choices can never take it: it does not count
    // against the replica cap, so a large enough one may be started.
    if (effective_slots(w, options) < key.slots) continue;
    if (alive(w)) ++alive_count;
    if (w.pending || w.info.state == worker_state::spawning) start_pending = true;
    if (w.pending || !accepts_tasks(w.info.state)) continue;
    int free = effective_slots(w, options) - w.in_flight;
    if (free < key.slots || best_preferred) continue;
    bool preferred = !key.preferred_worker.empty() && w.info.worker_id == key.preferred_worker;
    if (preferred || free > best_free) {
      best = &w;
      best_free = free;
      best_preferred = preferred;
    }
  }
  if (best) {
    d.kind = decision_kind::warm;
    d.worker_id = best->info.worker_id;
    d.reason = best_preferred ? "it holds the conversation"
                              : std::to_string(best_free) + " of " +
                                    std::to_string(effective_slots(*best, options)) + " slots free";
    return d;
  }
  // Cold: the first worker of the model, or another replica once the queue has grown.
  const size_t waiting = queued_for_model + 1;
  const int replicas = std::max(1, key.max_replicas > 0 ? key.max_replicas : options.max_replicas);
  bool may_start = alive_count == 0 || (alive_count < replicas && !start_pending &&
                                        waiting >= options.replica_queue_threshold);
  auto search = find_candidates(key, workers, nodes, options);
  // Only the first worker of a model goes where the view says it cannot: its hive then tells why.
  const bool to_preflight = search.found.empty() && alive_count == 0;
  const auto& pool = to_preflight ? search.ruled_out : search.found;
  if (may_start && !pool.empty()) {
    const candidate* target = &pool.front();
    for (const auto& c : pool) {
      if (better_place(c, *target, options.policy)) target = &c;
    }
    d.kind = decision_kind::cold;
    d.node = target->node->node;
    d.backend = target->backend;
    d.device = target->device;
    d.reason = to_preflight ? "on " + target->node->node + " " + target->label() +
                                  ": nothing fits by the queen's view; the hive's preflight decides"
                            : place_reason(*target, key);
    if (alive_count > 0) {
      d.reason += " (replica " + std::to_string(alive_count + 1) + " of " +
                  std::to_string(replicas) + ": " + std::to_string(waiting) + " tasks waiting)";
    }
    return d;
  }
  if (alive_count > 0) {
    d.kind = decision_kind::wait;
    return d;
  }
  d.kind = decision_kind::none;
  if (!search.any_reachable) {
    d.reason = key.node ? "node '" + *key.node + "' is not reachable" : "no node is reachable";
  } else if (!search.held.empty()) {
    // Workers of the model that cannot take this task (another split or devices, too few
    // slots for it) hold every device it may use.
    std::string held;
    for (const auto& h : search.held) held += (held.empty() ? "" : "; ") + h;
    d.reason = "every device that may run " + key.model +
               " already holds a worker of it that cannot take this task: " + held +
               "; stop one (rbee workers shutdown --worker ID) or start the queen with a "
               "higher --max-workers-per-model";
  } else {
    d.reason = "no node may start a worker for " + key.model;
  }
  return d;
}

scheduler::scheduler(scheduler_options options, const common::clock& clock)
    : options_(std::move(options)), clock_(clock) {}

void scheduler::update_node_workers(const std::string& node,
                                    const std::vector<worker_info>& workers) {
  std::lock_guard lock(mutex_);
  std::set<std::string> seen;
  for (const auto& info : workers) {
    seen.insert(info.worker_id);
    bool first_sight = !workers_.count(info.worker_id);
    auto& w = workers_[info.worker_id];
    std::string token = w.info.token;
    w.info = info;
    w.info.node = node;
    // Reports to unauthenticated callers omit tokens; keep what an earlier list gave.
    if (w.info.token.empty()) w.info.token = token;
    w.pending = false;
    if (first_sight) claim_placeholder_locked(w);
  }
  for (auto it = workers_.begin(); it != workers_.end();) {
    const auto& w = it->second;
    bool spawned_not_listed = w.in_flight > 0 && !accepts_tasks(w.info.state);
    if (w.info.node == node && !w.pending && !seen.count(it->first) && !spawned_not_listed) {
      it = workers_.erase(it);
    } else {
      ++it;
    }
  }
  pump_locked();
}

void scheduler::claim_placeholder_locked(worker_view& fresh) {
  for (auto it = workers_.begin(); it != workers_.end(); ++it) {
    const auto& p = it->second;
    bool same_start = p.pending && p.info.node == fresh.info.node &&
                      p.info.backend == fresh.info.backend &&
                      api::reference_satisfied_by(p.info.model_ref, fresh.info.model_ref);
    if (!same_start) continue;
    fresh.in_flight += p.in_flight;
    claimed_by_[it->first] = claim{fresh.info.worker_id, p.in_flight};
    workers_.erase(it);
    return;
  }
}

void scheduler::drop_placeholder_locked(const std::string& placeholder_id) {
  auto claimed = claimed_by_.find(placeholder_id);
  if (claimed == claimed_by_.end()) {
    workers_.erase(placeholder_id);
    return;
  }
  auto it = workers_.find(claimed->second.worker_id);
  if (it != workers_.end()) {
    it->second.in_flight = std::max(0, it->second.in_flight - claimed->second.slots);
  }
  claimed_by_.erase(claimed);
}

void scheduler::drop_node_workers(const std::string& node) {
  std::lock_guard lock(mutex_);
  for (auto it = workers_.begin(); it != workers_.end();) {
    if (it->second.info.node == node && !it->second.pending) {
      it = workers_.erase(it);
    } else {
      ++it;
    }
  }
  pump_locked();
}

void scheduler::set_nodes(std::vector<node_capacity> nodes) {
  std::lock_guard lock(mutex_);
  nodes_ = std::move(nodes);
  pump_locked();
}

void scheduler::mark_unavailable(const std::string& worker_id) {
  std::lock_guard lock(mutex_);
  auto it = workers_.find(worker_id);
  if (it != workers_.end()) it->second.info.state = worker_state::error;
  pump_locked();
}

void scheduler::avoid_device(const std::string& node, const std::string& backend, int device,
                             const std::string& model) {
  std::lock_guard lock(mutex_);
  no_room_[{model, device_id(node, backend, device)}] = clock_.now() + std::chrono::minutes(1);
}

std::optional<lease> scheduler::place_locked(const task_key& asked, decision& d) {
  task_key key = asked;
  for (auto it = no_room_.begin(); it != no_room_.end();) {
    if (it->second <= clock_.now()) {
      it = no_room_.erase(it);
      continue;
    }
    if (it->first.first == key.model) key.full_devices.push_back(it->first.second);
    ++it;
  }
  std::vector<worker_view> view;
  view.reserve(workers_.size());
  for (const auto& [id, w] : workers_) view.push_back(w);
  size_t others_waiting = waiting_for_locked(key.model);
  if (others_waiting > 0) --others_waiting;  // a queued task does not wait behind itself
  d = decide(key, view, nodes_, options_, others_waiting);
  if (d.kind == decision_kind::warm) {
    auto& w = workers_.at(d.worker_id);
    w.in_flight += key.slots;
    client_slots_[key.client] += key.slots;
    return lease{.kind = decision_kind::warm,
                 .worker = w.info,
                 .node = w.info.node,
                 .backend = w.info.backend,
                 .device = w.info.device,
                 .placeholder_id = {},
                 .slots = key.slots,
                 .client = key.client,
                 .reason = d.reason};
  }
  if (d.kind == decision_kind::cold) {
    std::string id = "pending-" + std::to_string(next_id_++);
    worker_view placeholder;
    placeholder.pending = true;
    placeholder.in_flight = key.slots;
    placeholder.info.worker_id = id;
    placeholder.info.node = d.node;
    placeholder.info.model_ref = key.model;
    placeholder.info.backend = d.backend;
    placeholder.info.device = d.device;
    placeholder.info.state = worker_state::spawning;
    placeholder.info.slots_total = std::max(key.slots, std::max(1, options_.max_slots_per_worker));
    workers_[id] = placeholder;
    client_slots_[key.client] += key.slots;
    return lease{.kind = decision_kind::cold,
                 .worker = {},
                 .node = d.node,
                 .backend = d.backend,
                 .device = d.device,
                 .placeholder_id = id,
                 .slots = key.slots,
                 .client = key.client,
                 .reason = d.reason};
  }
  return std::nullopt;
}

bool scheduler::client_at_limit_locked(const task_key& key) const {
  if (options_.max_slots_per_client <= 0) return false;
  auto it = client_slots_.find(key.client);
  int held = it == client_slots_.end() ? 0 : it->second;
  // A task larger than the limit still runs once the client holds nothing else.
  return held > 0 && held + key.slots > options_.max_slots_per_client;
}

size_t scheduler::waiting_for_locked(const std::string& model) const {
  return static_cast<size_t>(std::count_if(queue_.begin(), queue_.end(),
                                           [&](const auto& t) { return t->key.model == model; }));
}

std::deque<std::shared_ptr<queue_ticket>>::iterator scheduler::next_waiter_locked(
    const std::string& model) {
  auto held = [&](const std::string& client) {
    auto it = client_slots_.find(client);
    return it == client_slots_.end() ? 0 : it->second;
  };
  auto next = queue_.end();
  for (auto it = queue_.begin(); it != queue_.end(); ++it) {
    const auto& t = **it;
    if (t.key.model != model || client_at_limit_locked(t.key)) continue;
    if (next == queue_.end()) {
      next = it;
      continue;
    }
    const auto& n = **next;
    auto rank = [&](const queue_ticket& q) {
      return std::make_tuple(q.key.priority, held(q.key.client), q.seq);
    };
    if (rank(t) < rank(n)) next = it;
  }
  return next;
}

void scheduler::give_back_client_locked(const std::string& client, int slots) {
  auto it = client_slots_.find(client);
  if (it == client_slots_.end()) return;
  it->second -= slots;
  if (it->second <= 0) client_slots_.erase(it);
}

void scheduler::pump_locked() {
  // Each model's waiters in fair order until one cannot be placed: a waiter that must wait
  // means the model has no room, so later ones of the same model are not tried.
  std::vector<std::string> models;
  for (const auto& t : queue_) {
    if (std::find(models.begin(), models.end(), t->key.model) == models.end()) {
      models.push_back(t->key.model);
    }
  }
  for (const auto& model : models) {
    for (auto it = next_waiter_locked(model); it != queue_.end(); it = next_waiter_locked(model)) {
      decision d;
      auto placed = place_locked((*it)->key, d);
      if (!placed) break;
      (*it)->placed = std::move(placed);
      queue_.erase(it);
    }
  }
  cv_.notify_all();
}

admission scheduler::admit(const task_key& key) {
  if (options_.max_slots_per_worker > 0 && key.slots > options_.max_slots_per_worker) {
    throw invalid_field("n",
                        std::to_string(key.slots) + " choices need " + std::to_string(key.slots) +
                            " slots of one worker; workers have at most " +
                            std::to_string(options_.max_slots_per_worker) +
                            " (queen --slots-per-worker)",
                        {{"slots_per_worker", options_.max_slots_per_worker}});
  }
  std::lock_guard lock(mutex_);
  admission a;
  if (waiting_for_locked(key.model) == 0 && !client_at_limit_locked(key)) {
    decision d;
    a.placed = place_locked(key, d);
    if (a.placed) return a;
    if (d.kind == decision_kind::none) {
      throw unavailable(common::codes::NODE_UNREACHABLE,
                        "Cannot schedule " + key.model + ": " + d.reason, options_.retry_after_s,
                        {{"model", key.model}});
    }
  }
  if (queue_.size() >= options_.queue_size) {
    throw unavailable(
        common::codes::QUEUE_FULL,
        "Queue full (" + std::to_string(options_.queue_size) + " tasks waiting); try again later",
        options_.retry_after_s, {{"queue_size", options_.queue_size}});
  }
  a.ticket = std::make_shared<queue_ticket>(
      queue_ticket{key, std::nullopt, clock_.now() + options_.queue_timeout, next_seq_++});
  queue_.push_back(a.ticket);
  a.position = waiting_for_locked(key.model);
  // Waiters are served in fair order, which may put this one ahead of earlier ones.
  pump_locked();
  if (a.ticket->placed) {
    a.placed = std::move(a.ticket->placed);
    a.ticket.reset();
    a.position = 0;
  }
  return a;
}

std::optional<lease> scheduler::wait(admission& a, const std::function<bool()>& cancelled) {
  // Taking the lease out leaves nothing for a later abandon() to give back.
  auto take = [](std::optional<lease>& from) {
    std::optional<lease> out = std::move(from);
    from.reset();
    return out;
  };
  if (a.placed) return take(a.placed);
  std::unique_lock lock(mutex_);
  auto& t = *a.ticket;
  while (!t.placed) {
    cv_.wait_for(lock, std::chrono::milliseconds(50));
    if (t.placed) break;
    bool give_up = cancelled && cancelled();
    if (!give_up && clock_.now() < t.deadline) continue;
    auto it = std::find(queue_.begin(), queue_.end(), a.ticket);
    if (it != queue_.end()) queue_.erase(it);
    pump_locked();
    if (give_up) return std::nullopt;
    throw unavailable(common::codes::ALL_SLOTS_BUSY,
                      "All slots for " + t.key.model + " stayed busy for " +
                          std::to_string(options_.queue_timeout.count() / 1000) + " s",
                      options_.retry_after_s, {{"model", t.key.model}});
  }
  auto placed = take(t.placed);
  a.ticket.reset();
  return placed;
}

void scheduler::abandon(admission& a) {
  std::lock_guard lock(mutex_);
  if (a.ticket && a.ticket->placed) a.placed = std::move(a.ticket->placed);
  if (a.placed) {
    // Give back what was reserved.
    if (a.placed->kind == decision_kind::cold) {
      drop_placeholder_locked(a.placed->placeholder_id);
    } else if (auto it = workers_.find(a.placed->worker.worker_id); it != workers_.end()) {
      it->second.in_flight = std::max(0, it->second.in_flight - a.placed->slots);
    }
    give_back_client_locked(a.placed->client, a.placed->slots);
    a.placed.reset();
  }
  if (a.ticket) {
    auto it = std::find(queue_.begin(), queue_.end(), a.ticket);
    if (it != queue_.end()) queue_.erase(it);
    a.ticket.reset();
  }
  pump_locked();
}

std::optional<lease> scheduler::acquire(const task_key& key, const std::function<bool()>& cancelled,
                                        const std::function<void(size_t)>& on_queued) {
  auto a = admit(key);
  if (!a.placed && on_queued) on_queued(a.position);
  return wait(a, cancelled);
}

void scheduler::release(const std::string& worker_id, int slots, const std::string& client) {
  std::lock_guard lock(mutex_);
  auto it = workers_.find(worker_id);
  if (it != workers_.end()) it->second.in_flight = std::max(0, it->second.in_flight - slots);
  give_back_client_locked(client, slots);
  pump_locked();
}

void scheduler::cold_spawned(const std::string& placeholder_id, const worker_info& worker) {
  std::lock_guard lock(mutex_);
  int in_flight = 1;
  if (auto it = workers_.find(placeholder_id); it != workers_.end()) {
    in_flight = it->second.in_flight;
    workers_.erase(it);
  } else if (auto claimed = claimed_by_.find(placeholder_id); claimed != claimed_by_.end()) {
    // A report already moved the slots to a worker; they belong to this one.
    in_flight = 0;
    if (claimed->second.worker_id != worker.worker_id) {
      in_flight = claimed->second.slots;
      drop_placeholder_locked(placeholder_id);
    }
    claimed_by_.erase(placeholder_id);
  }
  auto& w = workers_[worker.worker_id];
  std::string token = w.info.token;
  w.info = worker;
  if (w.info.token.empty()) w.info.token = token;
  w.in_flight += in_flight;
  w.pending = false;
  pump_locked();
}

void scheduler::cold_ready(const worker_info& worker) {
  std::lock_guard lock(mutex_);
  auto& w = workers_[worker.worker_id];
  if (w.in_flight == 0) w.in_flight = 1;
  std::string token = w.info.token;
  w.info = worker;
  if (w.info.token.empty()) w.info.token = token;
  w.pending = false;
  pump_locked();
}

void scheduler::cold_failed(const std::string& id, int slots, const std::string& client) {
  std::lock_guard lock(mutex_);
  drop_placeholder_locked(id);
  give_back_client_locked(client, slots);
  pump_locked();
}

std::vector<worker_view> scheduler::workers() const {
  std::lock_guard lock(mutex_);
  std::vector<worker_view> out;
  for (const auto& [id, w] : workers_) out.push_back(w);
  return out;
}

size_t scheduler::queue_depth() const {
  std::lock_guard lock(mutex_);
  return queue_.size();
}

size_t scheduler::queue_depth(const std::string& model) const {
  std::lock_guard lock(mutex_);
  return waiting_for_locked(model);
}

}  // namespace rbee::queen
