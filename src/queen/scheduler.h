#pragma once
// The queen's scheduler: pure placement logic (decide) plus the one bounded FIFO task queue.
// Resources (the worker view, node memory) and the clock are injected, so unit tests drive it
// without processes.
//
// Placement of a task for model M:
//   warm  - a ready worker with M has a free slot: take it;
//   cold  - no worker may take it, but a node may start another one (fewer than
//           max_workers_per_model workers of M there, and the model fits in free memory):
//           a placeholder reserves the start so concurrent tasks queue behind it;
//   wait  - workers of M exist but are busy/loading: queue (full -> 503 QUEUE_FULL);
//   none  - no node can run it.
// Worker entries carry the queen's own count of in-flight tasks; hive reports may lag, so the
// scheduler never hands out more than slots_total.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/worker_record.h"
#include "common/clock.h"

namespace rbee::queen {

// Workers as hives report them: the contract's record (api/worker_record.h).
using api::worker_state;
using worker_info = api::worker_record;

// Worker as the scheduler sees it.
struct worker_view {
  worker_info info;
  int in_flight = 0;     // tasks the queen is running on it right now
  bool pending = false;  // placeholder for a worker being started for a task
};

nlohmann::json to_json(const worker_view& w);

struct node_capacity {
  std::string node;
  bool reachable = true;
  std::optional<uint64_t> ram_free_bytes;  // nullopt = unknown (assumed to fit)
};

struct task_key {
  std::string model;
  std::optional<std::string> node;  // nullopt = the scheduler picks
  std::string backend;              // "" = any
  std::optional<int> device;        // nullopt = any
  uint64_t model_bytes = 0;         // 0 = unknown
  int slots = 1;                    // slots of one worker the task holds (its n choices)
};

struct scheduler_options {
  size_t queue_size = 64;
  int max_workers_per_model = 1;  // per node
  int default_slots = 1;          // when a hive does not report slots_total
  int max_slots_per_worker = 0;   // caps what hives report; 0 = no cap
  std::chrono::milliseconds queue_timeout{std::chrono::minutes(5)};
  int retry_after_s = 2;
};

enum class decision_kind { warm, cold, wait, none };
std::string_view to_string(decision_kind k);

struct decision {
  decision_kind kind = decision_kind::none;
  std::string worker_id;  // warm
  std::string node;       // cold
  std::string reason;     // none: why not
};

decision decide(const task_key& key, const std::vector<worker_view>& workers,
                const std::vector<node_capacity>& nodes, const scheduler_options& options);

struct lease {
  decision_kind kind = decision_kind::warm;  // warm or cold
  worker_info worker;                        // warm: the worker whose slot is held
  std::string node;                          // cold: where to start it
  std::string placeholder_id;                // cold: pass to cold_spawned/cold_failed
  int slots = 1;                             // held on the worker; give them back to release()
};

struct queue_ticket {
  task_key key;
  std::optional<lease> placed;
  std::chrono::steady_clock::time_point deadline;
};

// The result of admit(): placed at once, or waiting in the queue at `position` (1-based).
struct admission {
  std::optional<lease> placed;
  std::shared_ptr<queue_ticket> ticket;
  size_t position = 0;
};

class scheduler {
 public:
  scheduler(scheduler_options options, const common::clock& clock);

  // Replaces what is known about one node's workers, keeping in-flight counts and
  // placeholders. Workers missing from the list are gone.
  void update_node_workers(const std::string& node, const std::vector<worker_info>& workers);
  // A hive that stopped answering: its workers are no longer offered.
  void drop_node_workers(const std::string& node);
  void set_nodes(std::vector<node_capacity> nodes);
  // A worker that failed a dispatch is not offered again until a hive report lists it.
  void mark_unavailable(const std::string& worker_id);

  // Places a task at once or queues it (FIFO per model). Throws queen::error QUEUE_FULL (with
  // retry_after_s) when the queue is full, NODE_UNREACHABLE when no node can take it.
  admission admit(const task_key& key);
  // Waits until a queued admission is placed. nullopt when cancelled() became true (the ticket
  // leaves the queue). Throws queen::error ALL_SLOTS_BUSY after queue_timeout.
  std::optional<lease> wait(admission& a, const std::function<bool()>& cancelled = {});
  // Takes a still-queued admission out of the queue (the client went away).
  void abandon(admission& a);
  // admit + wait; on_queued is told the queue position when the task had to wait.
  std::optional<lease> acquire(const task_key& key, const std::function<bool()>& cancelled = {},
                               const std::function<void(size_t position)>& on_queued = {});
  // A warm or (after cold_ready) cold task is done with its slots.
  void release(const std::string& worker_id, int slots = 1);
  // The hive accepted the spawn: the placeholder becomes worker_id (slot still held).
  void cold_spawned(const std::string& placeholder_id, const worker_info& worker);
  // The started worker is ready (url/token known); its slot stays held by the task.
  void cold_ready(const worker_info& worker);
  // The start failed: drops the placeholder (or spawned worker) and wakes the queue.
  void cold_failed(const std::string& id);

  std::vector<worker_view> workers() const;
  size_t queue_depth() const;
  const scheduler_options& options() const { return options_; }

 private:
  // Tries to place under the lock; reserves what it returns.
  std::optional<lease> place_locked(const task_key& key, decision& d);
  void pump_locked();
  // A worker first seen in a report while a start for its model is pending on its node is that
  // start's worker (the hive's report can beat its answer to the spawn): it takes over the
  // placeholder's slot, so no queued task is handed a slot the cold task already holds.
  void claim_placeholder_locked(worker_view& fresh);
  // Gives back a placeholder's reservation, wherever a report moved it.
  void drop_placeholder_locked(const std::string& placeholder_id);

  scheduler_options options_;
  const common::clock& clock_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::map<std::string, worker_view> workers_;  // by worker_id (or placeholder id)
  std::vector<node_capacity> nodes_;
  std::deque<std::shared_ptr<queue_ticket>> queue_;
  // A placeholder a report's worker took over: the worker, and the slots it holds for the start.
  struct claim {
    std::string worker_id;
    int slots = 1;
  };
  std::map<std::string, claim> claimed_by_;  // by placeholder id
  uint64_t next_id_ = 1;
};

}  // namespace rbee::queen
