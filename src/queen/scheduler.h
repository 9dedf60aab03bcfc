#pragma once
// The queen's scheduler: pure placement logic (decide) plus the one bounded task queue.
// Resources (the worker view, node devices and memory) and the clock are injected, so unit
// tests drive it without processes.
//
// Placement of a task for model M:
//   warm  - a ready worker with M has free slots: the conversation's worker when it has room
//           (its prefix is there), else the one with the most free slots;
//   cold  - no worker of M exists yet, or all are saturated, the queue for M has reached
//           replica_queue_threshold and fewer than max_replicas exist: start one on the best
//           device (placement below); a placeholder reserves the start so concurrent tasks
//           queue behind it;
//   wait  - workers of M exist but are busy/loading: queue (full -> 503 QUEUE_FULL);
//   none  - no node can run it.
// Placement of a new worker: devices where the model fits (weights + room for its cache), a
// CUDA device before the CPU, a node that has the file before one that must download it, then
// by free memory (policy spread: the most; binpack: the least that fits), then by load.
// Every choice carries its reason ("on workstation cuda:1: 61 GiB free, model cached").
// The queue is fair: among waiters of one model, the lowest priority value goes first, then
// the client (API key) holding the fewest slots, then arrival order; a client at its
// concurrency limit waits without blocking others.
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
#include <utility>
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

// A GPU of a node as its hive's capabilities list it.
struct gpu_capacity {
  int device = 0;
  std::optional<uint64_t> free_bytes;  // nullopt = unknown (assumed to fit)
};

struct node_capacity {
  std::string node;
  bool reachable = true;
  std::optional<uint64_t> ram_free_bytes;  // the CPU's memory; nullopt = unknown (assumed to fit)
  std::vector<gpu_capacity> gpus;          // CUDA devices (none on a CPU-only node)
  // Catalog references and ids of the models whose file is on the node already.
  std::vector<std::string> cached_models;
};

struct task_key {
  std::string model;
  std::optional<std::string> node;  // nullopt = the scheduler picks
  std::string backend;              // "" = any
  std::optional<int> device;        // nullopt = any (a split: its first device)
  std::vector<int> devices;         // a forced split: only a worker on these serves
  std::string split;                // with devices: "layer" or "tensor", as the worker's
  uint64_t model_bytes = 0;         // 0 = unknown
  int slots = 1;                    // slots of one worker the task holds (its n choices)
  std::string client;               // who asked (an API key's id); fairness and limits
  int priority = 0;                 // lower goes first (0 interactive, 100 batch)
  std::string preferred_worker;     // the worker holding the conversation's prefix, if any
  int max_replicas = 0;             // the model's own cap; 0 = scheduler_options.max_replicas
  // Devices ("node/backend:device") whose hive refused the model for lack of memory lately.
  std::vector<std::string> full_devices;
  // Other names of the same file (catalog references and ids of entries with its content
  // hash, on any node): a worker started under any of them serves the task.
  std::vector<std::string> same_file;
  // Workers this task lost mid-answer: never offered to it again, nor counted as replicas.
  std::vector<std::string> avoid_workers;
};

// Whether the worker serves the key's model: its reference satisfies the key's, or it is the
// same file under another name.
bool serves_model(const task_key& key, const worker_info& w);

// "workstation/cuda:1": a device in full_devices.
std::string device_id(const std::string& node, const std::string& backend, int device);

enum class placement_policy { spread, binpack };
std::string_view to_string(placement_policy p);
// nullopt for another name.
std::optional<placement_policy> parse_placement_policy(std::string_view name);

struct scheduler_options {
  size_t queue_size = 64;
  int max_workers_per_model = 1;  // workers of one model per device
  int default_slots = 1;          // when a hive does not report slots_total
  int max_slots_per_worker = 0;   // caps what hives report; 0 = no cap
  int max_replicas = 2;           // workers of one model across the fleet
  // Tasks of a model waiting (the deciding one included) before another replica starts.
  size_t replica_queue_threshold = 2;
  int max_slots_per_client = 0;  // slots one client may hold at once; 0 = no limit
  placement_policy policy = placement_policy::spread;
  std::chrono::milliseconds queue_timeout{std::chrono::minutes(5)};
  int retry_after_s = 2;
};

enum class decision_kind { warm, cold, wait, none };
std::string_view to_string(decision_kind k);

struct decision {
  decision_kind kind = decision_kind::none;
  std::string worker_id;  // warm
  std::string node;       // cold
  std::string backend;    // cold: "cpu" or "cuda"
  int device = 0;         // cold
  std::string reason;     // why this choice (cold, warm) or why none
};

// queued_for_model: tasks of the key's model waiting in the queue (not counting this one).
decision decide(const task_key& key, const std::vector<worker_view>& workers,
                const std::vector<node_capacity>& nodes, const scheduler_options& options,
                size_t queued_for_model = 0);

struct lease {
  decision_kind kind = decision_kind::warm;  // warm or cold
  worker_info worker;                        // warm: the worker whose slot is held
  std::string node;                          // cold: where to start it
  std::string backend = "cpu";               // cold: on which backend and device
  int device = 0;
  std::string placeholder_id;  // cold: pass to cold_spawned/cold_failed
  int slots = 1;               // held on the worker; give them back to release()
  std::string client;          // whose slots they are
  std::string reason;          // the placement's reason, for narration
};

struct queue_ticket {
  task_key key;
  std::optional<lease> placed;
  std::chrono::steady_clock::time_point deadline;
  uint64_t seq = 0;  // arrival order
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
  // The hive's preflight refused `model` on this device for lack of memory, or its node could
  // not be reached to start it: new workers of it go elsewhere for a minute (memory may free
  // up, a node come back).
  void avoid_device(const std::string& node, const std::string& backend, int device,
                    const std::string& model);

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
  void release(const std::string& worker_id, int slots = 1, const std::string& client = {});
  // The hive accepted the spawn: the placeholder becomes worker_id (slot still held).
  void cold_spawned(const std::string& placeholder_id, const worker_info& worker);
  // The started worker is ready (url/token known); its slot stays held by the task.
  void cold_ready(const worker_info& worker);
  // The start failed: drops the placeholder (or spawned worker), gives back the client's
  // slots and wakes the queue.
  void cold_failed(const std::string& id, int slots = 1, const std::string& client = {});

  std::vector<worker_view> workers() const;
  size_t queue_depth() const;
  // Tasks waiting for the model (by the id tasks name it).
  size_t queue_depth(const std::string& model) const;
  const scheduler_options& options() const { return options_; }

 private:
  // Tries to place under the lock; reserves what it returns.
  std::optional<lease> place_locked(const task_key& key, decision& d);
  void pump_locked();
  // The waiter of `model` that goes next (fair order), or queue_.end() when none may.
  std::deque<std::shared_ptr<queue_ticket>>::iterator next_waiter_locked(const std::string& model);
  bool client_at_limit_locked(const task_key& key) const;
  size_t waiting_for_locked(const std::string& model) const;
  void give_back_client_locked(const std::string& client, int slots);
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
  std::map<std::string, int> client_slots_;  // slots each client holds now
  // (model, device id) -> until when its hive's preflight is taken as "no room".
  std::map<std::pair<std::string, std::string>, std::chrono::steady_clock::time_point> no_room_;
  uint64_t next_id_ = 1;
  uint64_t next_seq_ = 1;
};

}  // namespace rbee::queen
