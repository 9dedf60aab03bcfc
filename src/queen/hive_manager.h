#pragma once
// The queen's side of every hive: starting it (a local child for `localhost`, `rbee-hive daemon`
// over SSH for remote nodes), health and version checks on every (re)connect, the live worker
// view from hive reports and on-demand lists, and stopping the hives it started.

#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/process.h"
#include "queen/errors.h"
#include "queen/hive_client.h"
#include "queen/narration.h"
#include "queen/registry.h"
#include "queen/scheduler.h"
#include "queen/ssh.h"

namespace rbee::queen {

struct hive_manager_options {
  std::filesystem::path rbee_home;
  std::string bin_dir;         // where rbee-hive / llm-worker-rbee live (the queen's own dir)
  int local_hive_port = 9200;  // hive of the built-in node, on loopback
  int remote_hive_port = 9200;
  std::string queen_url;  // what hives use to report back
  // Given to remote hives (local ones inherit the queen's environment): the hub, when set,
  // and the token for gated models (over SSH stdin, never in a command line).
  std::string hf_endpoint;
  std::string hf_token;
  // After a start the hive gets connect_attempts attempts to answer /v1/health, each up to
  // connect_timeout (a refused connection is polled again within the attempt), with a doubling
  // backoff between attempts; then "Cannot connect to HOST:PORT after N attempts".
  int connect_attempts = 3;
  std::chrono::milliseconds connect_timeout{std::chrono::seconds(10)};
  std::chrono::milliseconds connect_backoff{std::chrono::seconds(1)};
  std::chrono::seconds report_stale_after{std::chrono::seconds(90)};
  std::chrono::milliseconds monitor_interval{std::chrono::seconds(10)};
  ssh_options ssh;
};

// The VERSION_MISMATCH error for a hive version string (nullopt when compatible).
std::optional<error> version_mismatch(const std::string& node, const std::string& hive_version);

class hive_manager {
 public:
  hive_manager(hive_manager_options options, registry& nodes, scheduler& sched,
               common::process_launcher& launcher, ssh_runner& ssh, const common::clock& clock);
  ~hive_manager();  // stop_monitor(); does not stop hives (see stop_started_hives)

  // Makes sure node's hive answers (starting it when needed) and is version-compatible.
  // Narrates each phase through on_event. Throws queen::error (NODE_UNREACHABLE,
  // VERSION_MISMATCH, ...).
  hive_endpoint ensure_hive(const node_record& node, const event_fn& on_event = {});
  // The endpoint if the hive answered before (no probing); nullopt otherwise.
  std::optional<hive_endpoint> known_endpoint(const std::string& node);
  // The version of node's hive if one answers at its address (no start, no token check).
  std::optional<std::string> hive_version(const node_record& node) const;
  std::string hive_url(const node_record& node) const { return base_url_for(node); }
  const hive_manager_options& options() const { return options_; }
  // Where hives report to; set once the queen's port is bound, before any hive starts.
  void set_queen_url(std::string url) { options_.queen_url = std::move(url); }
  // Stops node's hive (admin shutdown over HTTP; the child or the remote pid as fallback).
  // Returns false when no hive answered.
  bool stop_hive(const node_record& node);
  // Stops every hive this queen started (SIGTERM cascade), in parallel, bounded.
  void stop_started_hives(std::chrono::milliseconds budget);
  // Ends the SSH connection multiplexer of every remote node (nothing the queen started may
  // outlive it); close_ssh_master does it for one node (on its removal).
  void close_ssh_masters();
  void close_ssh_master(const node_record& node);

  // Fetches node's workers from its hive and updates the scheduler.
  std::vector<worker_info> refresh_workers(const std::string& node);
  // Backends and devices from the hive's /v1/capabilities, stored in the registry.
  void refresh_capabilities(const std::string& node);

  // A hive's POST /v2/hives/report: the bearer token identifies the node. Throws queen::error
  // MISSING_API_KEY / INVALID_API_KEY for unknown tokens, INVALID_REQUEST for malformed
  // payloads, VERSION_MISMATCH.
  void handle_report(const std::string& bearer_token, const nlohmann::json& report);

  // Periodically marks hives that stopped reporting (and do not answer) unreachable.
  void start_monitor();
  void stop_monitor();

  // The per-node token (created on first use, kept 0600 under $RBEE_HOME/secrets).
  std::string node_token(const std::string& node);

 private:
  struct hive_state {
    std::mutex mutex;                       // serialises starts/stops of this node's hive
    std::optional<hive_endpoint> endpoint;  // guarded by hive_manager::mutex_, like last_seen
    common::child_process child;            // the local hive, when this queen started it
    bool started_remote = false;
    std::chrono::steady_clock::time_point last_seen{};
  };
  hive_state& state_for(const std::string& node);
  void set_endpoint(hive_state& st, std::optional<hive_endpoint> ep);
  void touch(const std::string& node);  // a sign of life from node's hive
  std::string base_url_for(const node_record& node) const;
  hive_endpoint endpoint_for(const node_record& node);  // version unknown until probed
  ssh_target target_for(const node_record& node) const;
  // Polls /v1/health after a start (see connect_attempts); throws NODE_UNREACHABLE.
  std::string wait_for_health(const node_record& node, hive_state& st, const std::string& base_url);
  void start_local(const node_record& node, hive_state& st, const std::string& token);
  void start_remote(const node_record& node, const std::string& token, const event_fn& on_event);
  void monitor_loop();

  hive_manager_options options_;
  registry& nodes_;
  scheduler& scheduler_;
  common::process_launcher& launcher_;
  ssh_runner& ssh_;
  const common::clock& clock_;
  std::mutex mutex_;
  std::map<std::string, std::unique_ptr<hive_state>> hives_;
  std::map<std::string, std::string> tokens_;  // node -> token (cache of the secret files)
  std::atomic<bool> monitor_stop_{false};
  std::thread monitor_;
  std::mutex monitor_mutex_;
  std::condition_variable monitor_cv_;
};

}  // namespace rbee::queen
