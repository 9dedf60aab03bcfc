#include "queen/scheduler.h"

#include <algorithm>
#include <set>

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
  return {{"worker_id", w.info.worker_id},
          {"node", w.info.node},
          {"model_ref", w.info.model_ref},
          {"state", w.pending ? "spawning" : to_string(w.info.state)},
          {"url", w.info.url},
          {"backend", w.info.backend},
          {"device", w.info.device},
          {"slots_total", w.info.slots_total},
          {"slots_busy", std::max(w.info.slots_busy, w.in_flight)}};
}

namespace {

bool matches(const task_key& key, const worker_info& w) {
  // A worker of hf:ORG/REPO:FILE serves a task for hf:ORG/REPO.
  if (!api::reference_satisfied_by(key.model, w.model_ref)) return false;
  if (key.node && w.node != *key.node) return false;
  if (!key.backend.empty() && w.backend != key.backend) return false;
  if (key.device && w.device != *key.device) return false;
  return true;
}

// Still (or soon) able to serve: counts against max_workers_per_model.
bool alive(const worker_view& w) {
  return w.pending || w.info.state == worker_state::spawning ||
         w.info.state == worker_state::loading || accepts_tasks(w.info.state);
}

int effective_slots(const worker_view& w, const scheduler_options& o) {
  int slots = w.info.slots_total > 0 ? w.info.slots_total : o.default_slots;
  return o.max_slots_per_worker > 0 ? std::min(slots, o.max_slots_per_worker) : slots;
}

}  // namespace

decision decide(const task_key& key, const std::vector<worker_view>& workers,
                const std::vector<node_capacity>& nodes, const scheduler_options& options) {
  decision d;
  // Warm: the ready worker with the most free slots.
  const worker_view* best = nullptr;
  int best_free = 0;
  std::map<std::string, int> alive_per_node;
  for (const auto& w : workers) {
    if (!matches(key, w.info)) continue;
    // A worker with fewer slots than the task's choices can never take it: it does not count
    // against max_workers_per_model, so a large enough one may be started.
    if (effective_slots(w, options) < key.slots) continue;
    if (alive(w)) ++alive_per_node[w.info.node];
    if (w.pending || !accepts_tasks(w.info.state)) continue;
    int free = effective_slots(w, options) - w.in_flight;
    if (free >= key.slots && free > best_free) {
      best = &w;
      best_free = free;
    }
  }
  if (best) {
    d.kind = decision_kind::warm;
    d.worker_id = best->info.worker_id;
    return d;
  }
  // Cold: a node that may start another worker of this model and has the memory.
  const node_capacity* target = nullptr;
  bool any_reachable = false;
  bool memory_short = false;
  for (const auto& n : nodes) {
    if (key.node && n.node != *key.node) continue;
    // A named node is tried even when it looked unreachable: its hive may be back.
    if (!n.reachable && !key.node) continue;
    any_reachable = true;
    if (alive_per_node[n.node] >= options.max_workers_per_model) continue;
    if (key.model_bytes > 0 && n.ram_free_bytes && *n.ram_free_bytes < key.model_bytes) {
      memory_short = true;
      continue;
    }
    auto free_of = [](const node_capacity* c) { return c->ram_free_bytes.value_or(0); };
    if (!target || free_of(&n) > free_of(target)) target = &n;
  }
  if (target) {
    d.kind = decision_kind::cold;
    d.node = target->node;
    return d;
  }
  int alive_total = 0;
  for (const auto& [node, count] : alive_per_node) alive_total += count;
  if (alive_total > 0) {
    d.kind = decision_kind::wait;
    return d;
  }
  d.kind = decision_kind::none;
  if (memory_short) {
    d.reason = "no node has enough free memory for " + key.model;
  } else if (!any_reachable) {
    d.reason = key.node ? "node '" + *key.node + "' is not reachable" : "no node is reachable";
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

std::optional<lease> scheduler::place_locked(const task_key& key, decision& d) {
  std::vector<worker_view> view;
  view.reserve(workers_.size());
  for (const auto& [id, w] : workers_) view.push_back(w);
  d = decide(key, view, nodes_, options_);
  if (d.kind == decision_kind::warm) {
    auto& w = workers_.at(d.worker_id);
    w.in_flight += key.slots;
    return lease{.kind = decision_kind::warm,
                 .worker = w.info,
                 .node = w.info.node,
                 .placeholder_id = {},
                 .slots = key.slots};
  }
  if (d.kind == decision_kind::cold) {
    std::string id = "pending-" + std::to_string(next_id_++);
    worker_view placeholder;
    placeholder.pending = true;
    placeholder.in_flight = key.slots;
    placeholder.info.worker_id = id;
    placeholder.info.node = d.node;
    placeholder.info.model_ref = key.model;
    placeholder.info.backend = key.backend.empty() ? "cpu" : key.backend;
    placeholder.info.device = key.device.value_or(0);
    placeholder.info.state = worker_state::spawning;
    placeholder.info.slots_total = std::max(key.slots, std::max(1, options_.max_slots_per_worker));
    workers_[id] = placeholder;
    return lease{.kind = decision_kind::cold,
                 .worker = {},
                 .node = d.node,
                 .placeholder_id = id,
                 .slots = key.slots};
  }
  return std::nullopt;
}

void scheduler::pump_locked() {
  std::set<std::string> blocked_models;  // FIFO per model: no overtaking an earlier waiter
  for (auto it = queue_.begin(); it != queue_.end();) {
    auto& t = *it;
    if (blocked_models.count(t->key.model)) {
      ++it;
      continue;
    }
    decision d;
    auto placed = place_locked(t->key, d);
    if (placed) {
      t->placed = std::move(placed);
      it = queue_.erase(it);
    } else {
      blocked_models.insert(t->key.model);
      ++it;
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
  bool model_waiting = std::any_of(queue_.begin(), queue_.end(),
                                   [&](const auto& t) { return t->key.model == key.model; });
  if (!model_waiting) {
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
      queue_ticket{key, std::nullopt, clock_.now() + options_.queue_timeout});
  queue_.push_back(a.ticket);
  a.position = queue_.size();
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

void scheduler::release(const std::string& worker_id, int slots) {
  std::lock_guard lock(mutex_);
  auto it = workers_.find(worker_id);
  if (it != workers_.end()) it->second.in_flight = std::max(0, it->second.in_flight - slots);
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

void scheduler::cold_failed(const std::string& id) {
  std::lock_guard lock(mutex_);
  drop_placeholder_locked(id);
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

}  // namespace rbee::queen
