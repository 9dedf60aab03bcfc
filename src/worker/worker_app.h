#pragma once
// llm-worker-rbee as an object: one loaded model served over HTTP (SPEC §3 llm-worker-rbee,
// §3.4, §5). The HTTP server is up before the model loads; loading runs on its own thread;
// inference runs on the scheduler's thread. JSON stops at the handlers.
// GET /v1/health: {status, state, worker_id, model_ref, version} and, once the model is loaded,
// {slots_busy, slots_total, idle_ms} (ms since the last job ended; 0 while a slot is busy),
// which the hive's idle timeout counts from.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "common/http_server.h"
#include "common/json.h"
#include "common/metrics.h"
#include "engine/engine.h"
#include "worker/scheduler.h"
#include "worker/worker_state.h"

namespace rbee::worker {

struct worker_options {
  std::string worker_id;
  std::string model_path;
  std::string model_ref;  // what the hive asked for, reported back verbatim
  engine::backend_kind backend = engine::backend_kind::cpu;
  int device = 0;
  // A layer split (docs/multi-gpu.md): a part of the model on each device, in layer order.
  std::vector<int> devices;
  engine::split_mode split = engine::split_mode::none;
  std::vector<float> tensor_split;  // each device's share of the layers; empty: by free memory
  std::string host = "127.0.0.1";
  int port = 8001;  // 0: ephemeral
  int slots = 1;
  int n_ctx = 0;             // 0: the model's training context, at most default_n_ctx_cap
  int n_threads = 0;         // 0: engine default
  int prefill_chunk = 0;     // 0: default_prefill_chunk(backend)
  std::string callback_url;  // hive's /v1/workers/ready (or its base URL); empty: no callback
  std::string api_token;     // required by every non-public endpoint when set
  std::string hive_token;    // sent with the ready callback
  // Test-only: spreads this much extra time over the load so tests can watch progress.
  std::chrono::milliseconds debug_load_delay{0};
  // Test-only: a pause before each decode step (answers that take long on a tiny model).
  std::chrono::milliseconds debug_step_delay{0};
  // How long a failed load stays visible on /v1/ready before the process exits 1.
  std::chrono::milliseconds error_linger{2000};
  // How long shutdown waits for in-flight streams to deliver their final events.
  std::chrono::milliseconds drain_timeout{10000};
  common::connection_limits connection_limits{};
};

inline constexpr int default_n_ctx_cap = 4096;

// The progress of the model load, as /v1/loading/progress reports it.
struct load_status {
  enum class stage { loading, ready, error } stage = stage::loading;
  engine::load_progress progress;
  std::string error_code;
  std::string error_message;
  uint64_t version = 0;  // bumped on every change
};

// Prompt tokens a decode step takes by default: on the CPU a 512-token chunk would hold
// the running answers for seconds, so 128; on CUDA 512 (measured on an H200 with a 7B Q4_0:
// at 8 concurrent streams the time to first token halves against 128, tokens/s rise 7 %).
int default_prefill_chunk(engine::backend_kind backend);

class worker_app {
 public:
  explicit worker_app(worker_options options);
  ~worker_app();
  worker_app(const worker_app&) = delete;
  worker_app& operator=(const worker_app&) = delete;

  // Binds the HTTP server (throws std::runtime_error naming host:port) and starts loading.
  void start();
  int port() const { return server_.port(); }
  std::string base_url() const { return server_.base_url(); }
  worker_state state() const;

  // Blocks up to `timeout` for a reason to stop (admin shutdown, failed load past its linger
  // time). True when the caller should call shutdown().
  bool wait_for_stop_request(std::chrono::milliseconds timeout);
  void request_stop();
  // Drains streams, stops the server, frees the model. Returns the exit code: 0, or 1 when
  // the model failed to load.
  int shutdown();

 private:
  void register_routes();
  void load_model();
  void notify_hive();
  void set_error(std::string code, std::string message);
  common::json ready_body() const;
  std::string render_metrics();
  void count_request(int status);

  void handle_inference(const httplib::Request& req, httplib::Response& res);

  worker_options options_;
  common::http_server server_;
  common::metrics_registry metrics_;

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  worker_state state_ = worker_state::loading;
  load_status load_;
  bool stop_requested_ = false;
  std::chrono::steady_clock::time_point error_at_;
  int active_streams_ = 0;
  scheduler_stats reported_;      // the counters' values at the last scrape
  uint64_t vram_used_bytes_ = 0;  // device memory held once loaded (CUDA backend)

  // Set once by the loading thread before the state leaves `loading`; read-only afterwards.
  engine::model_ptr model_;
  engine::context_ptr ctx_;
  std::unique_ptr<scheduler> scheduler_;
  int n_ctx_ = 0;

  std::thread load_thread_;
  std::chrono::steady_clock::time_point started_at_;
};

// The llm-worker-rbee command line (CLI11) → exit code. The main is just this call.
int worker_main(int argc, char** argv);

}  // namespace rbee::worker
