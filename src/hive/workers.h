#pragma once
// The hive's workers: spawning llm-worker-rbee through a process_launcher, tracking their
// state, and supervising them (SPEC §5).
//
//   spawn ──> loading ──(POST /v1/workers/ready)──> idle ──(stop: shutdown request, idle
//                │                                   │      timeout, hive shutdown)──> stopping
//                └─(loading timeout: SIGKILL)         └─(3 failed health checks: SIGKILL)
//   any state ──(process exits, noticed within ~50 ms by the reaper)──> removed + worker_event
//
// Idleness: the time since the ready callback or the last activity the worker reported in a
// health answer (`idle_ms`, else `state: "busy"` / `slots_busy > 0`).
// A worker being stopped gets SIGTERM (the worker finishes or cancels its streams and exits)
// and SIGKILL when the grace period ends. Every removal is recorded as a worker_event and
// announced through the change callback (the queen reporter pushes it).

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/worker_record.h"
#include "common/metrics.h"
#include "common/process.h"

namespace rbee::hive {

using api::worker_state;

// The wire record plus what only the hive knows.
struct worker_info : api::worker_record {
  std::string model_path;
  std::string log_path;
};

// A worker that left: why, and how it exited (the contract's record).
using worker_event = api::worker_exit;

struct supervisor_options {
  std::string worker_binary;  // path of llm-worker-rbee
  std::filesystem::path logs_dir;
  std::string bind_host = "127.0.0.1";       // worker --host
  std::string advertise_host = "127.0.0.1";  // host part of the worker's URL
  int port_start = 8001;
  std::string callback_url;  // the hive's /v1/workers/ready (or set_callback_url later)
  std::string hive_token;    // given to workers (RBEE_HIVE_TOKEN) to authenticate the callback
  std::chrono::milliseconds health_interval{30000};
  int health_failures = 3;
  std::chrono::milliseconds loading_timeout{300000};
  std::chrono::milliseconds idle_timeout{300000};
  std::chrono::milliseconds stop_grace{30000};
  int threads_per_worker = 0;           // --threads; 0 = the worker's default
  std::vector<std::string> extra_args;  // appended to the worker's command line
};

struct spawn_request {
  std::string model_ref;
  std::string model_id;
  std::string model_path;
  std::string backend;
  int device = 0;
  std::vector<int> devices;  // a split's devices (docs/multi-gpu.md); empty: `device`
  std::string split;         // with devices: "layer" or "tensor"
  int slots = 1;
  int ctx = 0;
  uint64_t memory_bytes = 0;
  // Idle time before the worker is unloaded; nullopt = supervisor_options.idle_timeout.
  std::optional<std::chrono::seconds> keep_alive;
};

class worker_supervisor {
 public:
  worker_supervisor(supervisor_options options, common::process_launcher& launcher,
                    common::metrics_registry* metrics = nullptr);
  ~worker_supervisor();  // stop_all(stop_grace), then joins its threads
  worker_supervisor(const worker_supervisor&) = delete;
  worker_supervisor& operator=(const worker_supervisor&) = delete;

  // Picks a port, generates the token, starts the worker, registers it as loading.
  // Throws http_error 500 INTERNAL when the process cannot be started.
  worker_info spawn(const spawn_request& request);
  // The worker's ready callback: loading -> idle. Throws 404 WORKER_NOT_FOUND.
  worker_info mark_ready(const std::string& worker_id);
  std::vector<worker_info> list() const;
  std::optional<worker_info> find(const std::string& worker_id) const;
  // Starts a graceful stop (SIGTERM, SIGKILL after the grace). Throws 404 WORKER_NOT_FOUND.
  worker_info request_stop(const std::string& worker_id, const std::string& reason);
  // Stops every worker in parallel and waits until all are gone (at most grace + 2 s).
  void stop_all(std::chrono::milliseconds grace);
  // How much more memory than estimated the model's running workers take (measured / estimated,
  // at least 1, at most 3): the next preflight of the model multiplies its estimate by it.
  double memory_correction(const std::string& model_id) const;
  // The last 100 removals, oldest first.
  std::vector<worker_event> recent_events() const;
  // Called (outside the lock) after every change: spawn, ready, removal.
  void set_on_change(std::function<void()> on_change);
  // The hive's ready-callback URL, once its port is bound; spawn() refuses (503) until then.
  void set_callback_url(std::string url);

 private:
  struct entry {
    worker_info info;
    common::process_spec spec;  // to start it again on another port if its port was taken
    int port_retries = 0;
    common::child_process child;
    int health_failures = 0;
    std::chrono::steady_clock::time_point started;
    std::chrono::steady_clock::time_point last_active;
    std::chrono::milliseconds keep_alive{0};
    std::optional<std::string> stop_reason;
    std::string stop_code;
    std::chrono::steady_clock::time_point kill_at;
    bool killed = false;
  };

  entry& entry_or_throw(const std::string& worker_id);  // under mutex_; 404 WORKER_NOT_FOUND
  void reaper_loop(std::stop_token stop);
  void health_loop(std::stop_token stop);
  // Under mutex_: SIGTERM now, SIGKILL at kill_at.
  void begin_stop(entry& e, const std::string& reason, std::chrono::milliseconds grace,
                  std::string code = "");
  void kill_now(entry& e, const std::string& reason, std::string code);  // under mutex_
  int pick_port() const;                                                 // under mutex_
  // Under mutex_: starts a loading worker again on another port; false if it cannot start.
  bool respawn(entry& e);
  void notify_change();
  void update_gauges();  // under mutex_

  supervisor_options options_;
  common::process_launcher& launcher_;
  common::metrics_registry* metrics_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::map<std::string, std::unique_ptr<entry>> workers_;
  std::deque<worker_event> events_;
  uint64_t next_event_seq_ = 1;
  std::mutex callback_mutex_;
  std::function<void()> on_change_;
  std::jthread reaper_;
  std::jthread health_;
};

// True when host:port can be bound now (the port is free).
bool port_is_free(const std::string& host, int port);

}  // namespace rbee::hive
