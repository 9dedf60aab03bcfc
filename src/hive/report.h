#pragma once
// The hive -> queen report channel (when the hive runs with --queen-url).
//
// The hive POSTs its state to the queen on every change (worker spawned, ready, stopping,
// removed) and as a heartbeat every `interval` (default 15 s):
//
//   POST {queen_url}/v2/hives/report
//   Authorization: Bearer <hive token>        (the node secret the queen gave the hive; omitted
//                                              when the hive runs without a token)
//   Content-Type: application/json
//   {
//     "node_name": "workstation",             // --node-name, default: the host name
//     "version": "0.1.0",                     // the hive's version (major.minor must match)
//     "api_version": "v1",
//     "hive_url": "http://10.0.0.5:9200",     // where the queen reaches this hive
//     "seq": 17,                              // increases by one per report from this process
//     "sent_at_unix": 1700000000,
//     "reason": "change" | "heartbeat" | "shutdown",   // "shutdown": the last one, no workers
//     "workers": [                            // every worker now on the node
//       {"worker_id": "worker-1a2b3c4d", "model_ref": "hf:org/repo:file.gguf",
//        "model_id": "file", "state": "loading" | "idle" | "stopping",
//        "url": "http://10.0.0.5:8001", "backend": "cpu" | "cuda", "device": 0, "port": 8001,
//        "pid": 4242, "slots_total": 1, "ctx": 2048, "memory_bytes": 123456,
//        "started_at_unix": 1700000000, "ready_at_unix": 1700000003,   // 0 while loading
//        "token": "<worker bearer token>"}    // the queen calls the worker with it directly
//     ],
//     "events": [                  // removals not yet delivered (a 2xx answer delivers them)
//       {"worker_id": "...", "model_ref": "...", "event": "removed",
//        "reason": "crashed" | "health_check_failed" | "loading_timeout" | "idle_timeout" |
//                  "shutdown_requested" | "hive_shutdown",
//        "code": "LOADING_TIMEOUT",            // only where an error code applies
//        "exit_status": 137, "at_unix": 1700000000, "seq": 3}   // seq: per hive process
//     ],
//     "capabilities": { ... GET /v1/capabilities ... }
//   }
//
// The queen answers 2xx (body ignored). A failed report (queen down, non-2xx) is logged and its
// events are sent again with the next report. A worker missing from "workers" is gone.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "hive/workers.h"

namespace rbee::hive {

struct report_options {
  std::string queen_url;
  std::string token;  // bearer sent to the queen
  std::string node_name;
  std::string hive_url;
  std::chrono::milliseconds interval{15000};
};

class queen_reporter {
 public:
  // workers() and capabilities() are called on the reporter's thread for every report.
  queen_reporter(report_options options, std::function<std::vector<worker_info>()> workers,
                 std::function<std::vector<worker_event>()> events,
                 std::function<nlohmann::json()> capabilities);
  ~queen_reporter();  // stops the thread
  queen_reporter(const queen_reporter&) = delete;
  queen_reporter& operator=(const queen_reporter&) = delete;

  // Asks for a report now (coalesced with others pending).
  void notify();
  // Stops the reporting thread, then sends one last report (reason "shutdown") and returns.
  void stop_with_final_report();

  // The report body (exposed for tests). events: those not yet acknowledged.
  static nlohmann::json make_report(const report_options& options, uint64_t seq,
                                    const std::string& reason,
                                    const std::vector<worker_info>& workers,
                                    const std::vector<worker_event>& events,
                                    const nlohmann::json& capabilities);

 private:
  void loop(std::stop_token stop);
  void send(const std::string& reason);  // on the reporting thread, or after it stopped

  report_options options_;
  std::function<std::vector<worker_info>()> workers_;
  std::function<std::vector<worker_event>()> events_;
  std::function<nlohmann::json()> capabilities_;
  std::mutex mutex_;
  std::condition_variable_any cv_;
  bool pending_ = true;           // the first report goes out at start
  uint64_t acked_event_seq_ = 0;  // events up to this seq were delivered
  uint64_t seq_ = 0;
  std::jthread thread_;
};

}  // namespace rbee::hive
