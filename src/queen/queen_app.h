#pragma once
// queen-rbee as an object: options in, the HTTP routes of SPEC §3 (queen/routes.h, by area)
// wired to the registry, hive manager, scheduler and task runner. The thin main parses flags,
// builds this, runs it.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/http_server.h"
#include "common/metrics.h"
#include "common/process.h"
#include "queen/hive_manager.h"
#include "queen/registry.h"
#include "queen/routes.h"
#include "queen/routes_dashboard.h"
#include "queen/scheduler.h"
#include "queen/ssh.h"
#include "queen/tasks.h"

namespace rbee::queen {

struct queen_options {
  std::string host = "127.0.0.1";
  int port = 8080;
  std::filesystem::path rbee_home;
  std::filesystem::path database;  // default rbee_home/beehives.db
  std::vector<std::string> api_keys;
  std::string public_url;  // how hives reach the queen; default from host/port
  std::string bin_dir;     // default: the directory of this executable
  int local_hive_port = 9200;
  int remote_hive_port = 9200;
  size_t queue_size = 64;
  common::connection_limits connection_limits{};
  int max_workers_per_model = 1;  // per device
  int slots_per_worker = 0;       // caps the slots hives report; 0 = no cap
  placement_policy placement = placement_policy::spread;
  int max_replicas = 2;
  size_t replica_queue_threshold = 2;
  int max_slots_per_client = 0;  // 0 = no limit
  int max_failovers = 2;         // per task; 0 = none
  std::chrono::milliseconds stall_timeout{std::chrono::seconds(30)};
  std::map<std::string, model_settings> models;  // per-model overrides ([models.<id>])
  std::chrono::milliseconds queue_timeout{std::chrono::minutes(5)};
  std::chrono::milliseconds loading_timeout{std::chrono::minutes(5)};
  std::chrono::seconds hive_stale_after{90};
  // Each of the 3 attempts to reach a hive's /v1/health after starting it.
  std::chrono::milliseconds hive_connect_timeout{std::chrono::seconds(10)};
  std::string hf_endpoint;  // forwarded to remote hives ("" = theirs)
  std::string hf_token;     // forwarded to remote hives over SSH stdin
  int ssh_connect_timeout_s = 10;
  std::chrono::milliseconds ssh_backoff{1000};
};

class queen_app {
 public:
  // Throws std::runtime_error for a non-loopback bind without API keys (SPEC §3).
  explicit queen_app(queen_options options);
  ~queen_app();

  void start();  // binds and serves in the background
  int port() const { return server_->port(); }
  std::string base_url() const { return server_->base_url(); }
  // Blocks until SIGTERM/SIGINT (which must be blocked in every thread, see block_signals) or
  // POST /v2/admin/shutdown, then shuts down. Returns the exit code (0).
  int run_until_stopped();
  // Graceful stop: refuse new tasks, cancel streams (bounded), stop serving, stop the hives
  // this queen started.
  void shutdown();

  // Blocks SIGTERM/SIGINT in the calling thread (call in main before any thread starts).
  static void block_signals();

 private:
  void register_routes();

  queen_options options_;
  common::metrics_registry metrics_;
  const common::clock& clock_;
  common::real_process_launcher launcher_;
  std::unique_ptr<openssh_runner> ssh_;
  std::unique_ptr<registry> registry_;
  std::unique_ptr<scheduler> scheduler_;
  std::unique_ptr<hive_manager> hives_;
  std::unique_ptr<task_runner> tasks_;
  std::unique_ptr<common::http_server> server_;
  std::unique_ptr<queen_services> services_;
  std::unique_ptr<route_table> routes_;
  std::unique_ptr<admin_routes> admin_;
  std::unique_ptr<registry_routes> registry_routes_;
  std::unique_ptr<worker_routes> worker_routes_;
  std::unique_ptr<task_routes> task_routes_;
  std::unique_ptr<openai_routes> openai_routes_;
  std::unique_ptr<dashboard_routes> dashboard_routes_;
  std::atomic<bool> shutting_down_{false};
  std::atomic<bool> shutdown_requested_{false};
  bool stopped_ = false;
};

}  // namespace rbee::queen
