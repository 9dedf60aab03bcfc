#pragma once
// The hive daemon: catalog, downloads, capabilities, workers and the HTTP API of SPEC §3
// (rbee-hive) wired together. programs/rbee-hive.cpp builds one and runs it until SIGTERM or
// POST /v1/admin/shutdown.

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>

#include "common/http_server.h"
#include "common/metrics.h"
#include "common/process.h"
#include "hive/capabilities.h"
#include "hive/catalog.h"
#include "hive/hive_config.h"
#include "hive/model_store.h"
#include "hive/report.h"
#include "hive/workers.h"

namespace rbee::hive {

class hive_app {
 public:
  // gpus/launcher default to the real ones; tests inject theirs. Opens the catalog and
  // creates $RBEE_HOME/{models,logs}. Throws std::runtime_error on a non-loopback bind without
  // a token.
  explicit hive_app(hive_config config, std::shared_ptr<gpu_probe> gpus = nullptr,
                    std::shared_ptr<common::process_launcher> launcher = nullptr);
  ~hive_app();  // shutdown()

  // Binds the HTTP server and starts reporting to the queen (when configured).
  void start();

  // Stops every worker (in parallel, bounded by stop_grace), the reporter and the server.
  // Idempotent; the catalog stays consistent (every write is a committed transaction).
  void shutdown();

  // POST /v1/admin/shutdown requests shutdown; the main loop waits for that (or a signal).
  // Waits until shutdown is requested or the timeout passes; true when requested.
  bool wait_shutdown_requested(std::chrono::milliseconds timeout);
  void request_shutdown();

 private:
  void register_routes();
  // The routes, one handler each (SPEC §3, rbee-hive).
  void health(const httplib::Request& req, httplib::Response& res);
  void capabilities(const httplib::Request& req, httplib::Response& res);
  void metrics(const httplib::Request& req, httplib::Response& res);
  void list_models(const httplib::Request& req, httplib::Response& res);
  void remove_model(const httplib::Request& req, httplib::Response& res);
  void start_download(const httplib::Request& req, httplib::Response& res);
  void download_progress(const httplib::Request& req, httplib::Response& res);
  void spawn_worker(const httplib::Request& req, httplib::Response& res);
  void worker_ready(const httplib::Request& req, httplib::Response& res);
  void list_workers(const httplib::Request& req, httplib::Response& res);
  void shutdown_worker(const httplib::Request& req, httplib::Response& res);
  void logs(const httplib::Request& req, httplib::Response& res);
  void admin_shutdown(const httplib::Request& req, httplib::Response& res);

  hive_config config_;
  common::metrics_registry metrics_;
  std::shared_ptr<common::process_launcher> launcher_;
  std::unique_ptr<capability_probe> probe_;
  std::unique_ptr<catalog> catalog_;
  std::unique_ptr<model_store> store_;
  std::unique_ptr<worker_supervisor> supervisor_;
  std::unique_ptr<queen_reporter> reporter_;
  std::unique_ptr<common::http_server> server_;
  std::atomic<bool> shutdown_requested_{false};
  std::atomic<bool> shut_down_{false};
  bool started_ = false;
  std::mutex shutdown_mutex_;
  std::condition_variable shutdown_cv_;
};

}  // namespace rbee::hive
