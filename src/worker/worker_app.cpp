#include "worker/worker_app.h"

#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <fstream>
#include <utility>

#include <spdlog/spdlog.h>

#include "api/stream_events.h"
#include "common/errors.h"
#include "common/http_client.h"
#include "common/json.h"
#include "common/sse.h"
#include "common/thread_priority.h"
#include "common/version.h"
#include "worker/inference_request.h"

namespace rbee::worker {

namespace {

using common::json;

constexpr const char* progress_path = "/v1/loading/progress";

std::string load_error_code(engine::error_code code, engine::backend_kind backend) {
  switch (code) {
    case engine::error_code::file_not_found:
      return std::string(common::codes::MODEL_NOT_FOUND);
    case engine::error_code::file_corrupt:
      return std::string(common::codes::MODEL_CORRUPT);
    case engine::error_code::unsupported_architecture:
      return std::string(common::codes::UNSUPPORTED_ARCHITECTURE);
    case engine::error_code::unsupported_tensor_type:
      return std::string(common::codes::UNSUPPORTED_TENSOR_TYPE);
    case engine::error_code::backend_unavailable:
      return std::string(common::codes::BACKEND_UNAVAILABLE);
    case engine::error_code::out_of_memory:
      return backend == engine::backend_kind::cpu ? std::string(common::codes::INSUFFICIENT_RAM)
                                                  : std::string(common::codes::INSUFFICIENT_VRAM);
    default:
      return std::string(common::codes::MODEL_LOAD_FAILED);
  }
}

// The devices a loaded model holds, in part order, and for a split each part's layers
// [first, end): {"devices": [0, 1], "split": "layer", "parts": [{"device", "layers"}]}. The
// parts of a tensor split each run every layer (a slice of each): "split": "tensor".
json placement_json(const engine::model& m) {
  const auto& parts = engine::model_get_parts(m);
  json devices = json::array();
  for (const auto& p : parts) devices.push_back(p.device);
  json body = {{"devices", devices}};
  if (parts.size() < 2) return body;
  body["split"] = parts[0].end_layer == parts[1].end_layer ? "tensor" : "layer";
  body["parts"] = json::array();
  for (const auto& p : parts)
    body["parts"].push_back({{"device", p.device}, {"layers", {p.first_layer, p.end_layer}}});
  return body;
}

std::string_view backend_name(engine::backend_kind backend) {
  return backend == engine::backend_kind::cpu ? "cpu" : "cuda";
}

json progress_event(const load_status& s) {
  switch (s.stage) {
    case load_status::stage::loading:
      return {{"stage", "loading"},
              {"layers_loaded", s.progress.layers_loaded},
              {"layers_total", s.progress.layers_total},
              {"bytes_loaded", s.progress.bytes_loaded},
              {"bytes_total", s.progress.bytes_total}};
    case load_status::stage::ready:
      // With the final counts, so a client that connected after the load still sees it end.
      return {{"stage", "ready"},
              {"layers_loaded", s.progress.layers_loaded},
              {"layers_total", s.progress.layers_total},
              {"bytes_loaded", s.progress.bytes_loaded},
              {"bytes_total", s.progress.bytes_total}};
    case load_status::stage::error:
      return {{"stage", "error"}, {"code", s.error_code}, {"message", s.error_message}};
  }
  return nullptr;
}

json event_json(const job_event& event) {
  if (const auto* t = std::get_if<token_event>(&event)) {
    return api::token_event(t->text, t->index, t->choice, t->logprobs ? &*t->logprobs : nullptr);
  }
  if (const auto* e = std::get_if<end_event>(&event)) return api::end_event(*e);
  const auto& err = std::get<error_event>(event);
  return api::error_event(err.code, err.message);
}

// Resident set size from /proc/self/statm (second field, in pages).
uint64_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  uint64_t size = 0, resident = 0;
  if (!(statm >> size >> resident)) return 0;
  return resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

// "http://host:port/path" → {"http://host:port", "/path"}; a bare base gets the SPEC's path.
std::pair<std::string, std::string> split_callback_url(const std::string& url) {
  auto scheme = url.find("://");
  auto path_start = url.find('/', scheme == std::string::npos ? 0 : scheme + 3);
  if (path_start == std::string::npos || path_start == url.size() - 1) {
    return {url.substr(0, path_start), "/v1/workers/ready"};
  }
  return {url.substr(0, path_start), url.substr(path_start)};
}

}  // namespace

int default_prefill_chunk(engine::backend_kind backend) {
  return backend == engine::backend_kind::cuda ? 512 : 128;
}

worker_app::worker_app(worker_options options)
    : options_(std::move(options)),
      server_(common::server_options{
          .name = "llm-worker-rbee",
          .host = options_.host,
          .port = options_.port,
          .api_tokens = options_.api_token.empty() ? std::vector<std::string>{}
                                                   : std::vector<std::string>{options_.api_token},
          .public_paths = {"/v1/health", "/v1/ready", progress_path},
          .max_body_bytes = 2 << 20,
          .limits = options_.connection_limits,
      }) {
  assert(options_.slots >= 1 && "worker_app: slots must be >= 1 (validated by the CLI)");
  register_routes();
}

worker_app::~worker_app() {
  if (load_thread_.joinable() || server_.running()) shutdown();
}

void worker_app::start() {
  started_at_ = std::chrono::steady_clock::now();
  server_.start();
  spdlog::info("worker {} listening on {} (model {}, {} slot(s))", options_.worker_id,
               server_.base_url(), options_.model_ref, options_.slots);
  load_thread_ = std::thread([this] { load_model(); });
}

worker_state worker_app::state() const {
  std::lock_guard lock(mutex_);
  if (state_ == worker_state::idle && !scheduler_->idle()) return worker_state::busy;
  return state_;
}

bool worker_app::wait_for_stop_request(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  auto should_stop = [&] {
    return stop_requested_ ||
           (state_ == worker_state::error &&
            std::chrono::steady_clock::now() - error_at_ >= options_.error_linger);
  };
  cv_.wait_for(lock, timeout, should_stop);
  return should_stop();
}

void worker_app::request_stop() {
  {
    std::lock_guard lock(mutex_);
    stop_requested_ = true;
  }
  cv_.notify_all();
}

int worker_app::shutdown() {
  bool failed;
  {
    std::unique_lock lock(mutex_);
    failed = state_ == worker_state::error;
    if (!failed && state_ != worker_state::stopped) state_ = worker_state::draining;
  }
  spdlog::info("worker {} shutting down", options_.worker_id);
  // The loading thread cannot be interrupted; a load in progress finishes first.
  if (load_thread_.joinable()) load_thread_.join();
  {
    std::unique_lock lock(mutex_);
    if (state_ == worker_state::idle) state_ = worker_state::draining;
  }
  if (scheduler_) scheduler_->drain();
  {
    // In-flight streams get their end/cancelled (or error) event and [DONE] before the
    // server goes away.
    std::unique_lock lock(mutex_);
    if (!cv_.wait_for(lock, options_.drain_timeout, [&] { return active_streams_ == 0; })) {
      spdlog::warn("{} stream(s) still open after {} ms; closing them", active_streams_,
                   options_.drain_timeout.count());
    }
  }
  server_.stop();
  if (scheduler_) scheduler_->stop();
  scheduler_.reset();
  ctx_.reset();
  model_.reset();
  {
    std::lock_guard lock(mutex_);
    if (!failed) state_ = worker_state::stopped;
  }
  spdlog::info("worker {} stopped", options_.worker_id);
  return failed ? 1 : 0;
}

void worker_app::set_error(std::string code, std::string message) {
  spdlog::error("model load failed: {}: {}", code, message);
  {
    std::lock_guard lock(mutex_);
    state_ = worker_state::error;
    error_at_ = std::chrono::steady_clock::now();
    load_.stage = load_status::stage::error;
    load_.error_code = std::move(code);
    load_.error_message = std::move(message);
    ++load_.version;
  }
  cv_.notify_all();
}

void worker_app::load_model() {
  // The decode threads started from here inherit it: requests to this worker's HTTP server
  // (health, cancel) run before decode steps when the cores are busy.
  common::run_as_batch_work();
  auto t0 = std::chrono::steady_clock::now();
  // Test-only slowdown: one pause per newly loaded layer.
  int last_layers = 0;
  try {
    engine::model_params params = engine::model_default_params();
    params.backend = options_.backend;
    params.device = options_.device;
    params.devices = options_.devices;
    params.split = options_.split;
    params.tensor_split = options_.tensor_split;
    // The split checks each device holds its layers' KV cache at the largest context.
    params.split_kv_positions =
        int64_t{options_.n_ctx > 0 ? options_.n_ctx : default_n_ctx_cap} * options_.slots;
    params.n_threads = options_.n_threads;
    params.on_progress = [&](const engine::load_progress& p) {
      {
        std::lock_guard lock(mutex_);
        load_.progress = p;
        ++load_.version;
      }
      cv_.notify_all();
      if (options_.debug_load_delay.count() > 0 && p.layers_loaded > last_layers) {
        last_layers = p.layers_loaded;
        std::this_thread::sleep_for(options_.debug_load_delay / std::max(1, p.layers_total));
      }
    };
    engine::model_ptr model = engine::model_load(options_.model_path, params);
    const engine::model_info& info = engine::model_get_info(*model);

    engine::context_params cparams = engine::context_default_params();
    cparams.n_ctx = options_.n_ctx > 0 ? options_.n_ctx
                                       : std::min(info.n_ctx_train > 0 ? info.n_ctx_train : 2048,
                                                  default_n_ctx_cap);
    cparams.n_seq = options_.slots;
    cparams.n_batch = std::max(cparams.n_batch, options_.slots);
    cparams.n_threads = options_.n_threads;
    engine::context_ptr ctx = engine::context_create(*model, cparams);
    auto sched = std::make_unique<scheduler>(
        *model, *ctx,
        scheduler_options{.n_slots = options_.slots,
                          .n_batch = cparams.n_batch,
                          .prefill_budget = options_.prefill_chunk > 0
                                                ? options_.prefill_chunk
                                                : default_prefill_chunk(options_.backend),
                          .debug_step_delay = options_.debug_step_delay});
    sched->start();

    double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    metrics_.gauge_set("rbee_worker_model_load_seconds", "Time taken to load the model", load_s);
    const uint64_t device_bytes =
        engine::model_device_bytes(*model) + engine::context_device_bytes(*ctx);
    if (options_.backend == engine::backend_kind::cuda)
      metrics_.gauge_set("rbee_worker_vram_used_bytes",
                         "Device memory held by the model's weights, KV cache and scratch",
                         static_cast<double>(device_bytes));
    {
      std::lock_guard lock(mutex_);
      model_ = std::move(model);
      ctx_ = std::move(ctx);
      scheduler_ = std::move(sched);
      n_ctx_ = cparams.n_ctx;
      vram_used_bytes_ = device_bytes;
      if (state_ == worker_state::loading) state_ = worker_state::idle;
      load_.stage = load_status::stage::ready;
      ++load_.version;
    }
    cv_.notify_all();
    spdlog::info("model {} loaded in {:.2f} s ({}, {} layers, n_ctx {})", options_.model_ref,
                 load_s, info.architecture, info.n_layer, cparams.n_ctx);
  } catch (const engine::engine_error& e) {
    set_error(load_error_code(e.code, options_.backend), e.what());
    return;
  } catch (const std::exception& e) {
    set_error(std::string(common::codes::MODEL_LOAD_FAILED), e.what());
    return;
  }
  notify_hive();
}

void worker_app::notify_hive() {
  if (options_.callback_url.empty()) return;
  auto [base, path] = split_callback_url(options_.callback_url);
  json body = {{"worker_id", options_.worker_id},
               {"url", server_.base_url()},
               {"model_ref", options_.model_ref},
               {"backend", backend_name(options_.backend)},
               {"device", options_.device}};
  {
    std::lock_guard lock(mutex_);
    if (model_) body.update(placement_json(*model_));
  }
  try {
    common::client_options copts;
    copts.bearer_token = options_.hive_token;
    common::http_client client(base, copts);
    common::retry_policy policy;
    policy.attempts = 6;
    policy.initial_backoff = std::chrono::milliseconds(500);
    auto response = common::with_retry(
        policy, [&] { return client.post_json(path, body); },
        [&](int attempt, const std::exception& e) {
          spdlog::warn("ready callback to {} failed (attempt {}): {}", base, attempt, e.what());
        });
    if (!response.ok()) {
      spdlog::error("ready callback to {}{} answered {}: {}", base, path, response.status,
                    response.body);
    } else {
      spdlog::info("ready callback sent to {}{}", base, path);
    }
  } catch (const std::exception& e) {
    // The hive notices a worker that never calls back (loading timeout); keep serving.
    spdlog::error("ready callback to {} failed: {}", options_.callback_url, e.what());
  }
}

json worker_app::ready_body() const {
  worker_state s = state();
  std::lock_guard lock(mutex_);
  bool serving = s == worker_state::idle || s == worker_state::busy;
  json body = {{"ready", serving},
               {"state", to_string(s)},
               {"progress_url", progress_path},
               {"model_loaded", model_ != nullptr && s != worker_state::stopped}};
  if (scheduler_) {
    auto stats = scheduler_->stats();
    body["slots_total"] = stats.slots_total;
    body["slots_busy"] = stats.slots_busy;
  }
  if (s == worker_state::error) {
    body["error"] = {{"code", load_.error_code}, {"message", load_.error_message}};
  }
  return body;
}

void worker_app::count_request(int status) {
  metrics_.counter_add("rbee_worker_requests_total", "Inference requests by HTTP status", 1.0,
                       {{"status", std::to_string(status)}});
}

std::string worker_app::render_metrics() {
  metrics_.gauge_set("rbee_worker_resident_memory_bytes", "Resident set size of the worker",
                     static_cast<double>(resident_bytes()));
  metrics_.gauge_set("rbee_worker_slots_total", "Configured slots", options_.slots);
  scheduler* sched = nullptr;
  {
    std::lock_guard lock(mutex_);
    sched = scheduler_.get();
  }
  scheduler_stats stats;
  if (sched) stats = sched->stats();
  metrics_.gauge_set("rbee_worker_slots_busy", "Slots running a job", stats.slots_busy);
  metrics_.gauge_set("rbee_worker_queue_length", "Jobs accepted but not yet admitted to a slot",
                     stats.queue_length);
  metrics_.gauge_set("rbee_worker_last_stream_tokens_per_second",
                     "Decode speed of the most recently finished stream",
                     stats.last_tokens_per_sec);
  {
    // The scheduler keeps totals; the registry's counters take what grew since last time.
    std::lock_guard lock(mutex_);
    metrics_.counter_add("rbee_worker_tokens_generated_total", "Tokens generated",
                         static_cast<double>(stats.tokens_generated - reported_.tokens_generated));
    metrics_.counter_add("rbee_worker_decode_steps_total", "Decode steps of the inference thread",
                         static_cast<double>(stats.steps - reported_.steps));
    const std::pair<const char*, double> phases[] = {
        {"plan", stats.plan_s - reported_.plan_s},
        {"forward", stats.forward_s - reported_.forward_s},
        {"sample", stats.sample_s - reported_.sample_s},
        {"emit", stats.emit_s - reported_.emit_s}};
    for (const auto& [phase, seconds] : phases)
      metrics_.counter_add("rbee_worker_step_seconds_total",
                           "Time of the inference thread's decode steps by phase", seconds,
                           {{"phase", phase}});
    reported_ = stats;
  }
  return metrics_.render();
}

void worker_app::register_routes() {
  server_.get("/v1/health", [this](const httplib::Request&, httplib::Response& res) {
    worker_state s = state();
    json body = {{"status", health_status(s)},
                 {"state", to_string(s)},
                 {"worker_id", options_.worker_id},
                 {"model_ref", options_.model_ref},
                 {"version", common::version_string()}};
    scheduler* sched = nullptr;
    {
      std::lock_guard lock(mutex_);
      sched = scheduler_.get();
    }
    // Slot use and idle time for the hive's idle accounting; absent while loading.
    if (sched) {
      auto stats = sched->stats();
      body["slots_busy"] = stats.slots_busy;
      body["slots_total"] = stats.slots_total;
      body["idle_ms"] = stats.idle_ms;
      body["tokens_per_second"] = stats.last_tokens_per_sec;
      {
        std::lock_guard lock(mutex_);
        if (model_) body.update(placement_json(*model_));
      }
      if (options_.backend == engine::backend_kind::cuda) {
        std::lock_guard lock(mutex_);
        body["vram_used_bytes"] = vram_used_bytes_;
      }
    }
    common::http_server::send_json(res, 200, body);
  });

  server_.get("/v1/ready", [this](const httplib::Request&, httplib::Response& res) {
    common::http_server::send_json(res, 200, ready_body());
  });

  server_.get(progress_path, [this](const httplib::Request&, httplib::Response& res) {
    common::serve_sse(res, [this](common::sse_sink& sink) {
      // The current state at once, then every change until ready or error.
      std::optional<uint64_t> sent_version;
      for (;;) {
        load_status snapshot;
        {
          std::unique_lock lock(mutex_);
          cv_.wait_for(lock, std::chrono::milliseconds(500),
                       [&] { return !sent_version || load_.version != *sent_version; });
          snapshot = load_;
        }
        if (sent_version && snapshot.version == *sent_version) {
          if (!sink.send_comment("loading")) return;  // the client left
          continue;
        }
        sent_version = snapshot.version;
        if (!sink.send(progress_event(snapshot))) return;
        if (snapshot.stage != load_status::stage::loading) break;
      }
      sink.send_done();
    });
  });

  server_.post("/v1/inference", [this](const httplib::Request& req, httplib::Response& res) {
    try {
      handle_inference(req, res);
      count_request(200);
    } catch (const common::http_error& e) {
      count_request(e.status);
      throw;
    }
  });

  server_.del(R"(/v1/inference/([^/]+))",
              [this](const httplib::Request& req, httplib::Response& res) {
                std::string job_id = req.matches[1];
                scheduler* sched = nullptr;
                {
                  std::lock_guard lock(mutex_);
                  sched = scheduler_.get();
                }
                // Idempotent: an unknown or finished job is already "cancelled".
                if (sched && sched->cancel(job_id))
                  spdlog::info("job {} cancelled by request", job_id);
                res.status = 204;
              });

  server_.post("/v1/admin/shutdown", [this](const httplib::Request&, httplib::Response& res) {
    spdlog::info("shutdown requested over HTTP");
    request_stop();
    common::http_server::send_json(res, 202, {{"status", "draining"}});
  });

  server_.get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(render_metrics(), "text/plain; version=0.0.4");
  });
}

void worker_app::handle_inference(const httplib::Request& req, httplib::Response& res) {
  worker_state s = state();
  if (s == worker_state::loading) {
    throw common::unavailable(common::codes::LOADING, "the model is still loading", 1,
                              {{"progress_url", progress_path}});
  }
  if (s == worker_state::error) {
    throw common::unavailable(common::codes::MODEL_LOAD_FAILED,
                              "the model failed to load; the worker is exiting", 5);
  }
  if (s == worker_state::draining || s == worker_state::stopped) {
    throw common::unavailable(common::codes::SHUTTING_DOWN, "the worker is shutting down", 5);
  }
  // From here the model, context and scheduler exist and stay until shutdown() (which stops
  // this server first).
  common::json body = common::parse_body(req.body);
  inference_request request = parse_inference_request(body, n_ctx_);
  check_against_worker(request, engine::model_get_info(*model_).n_vocab, options_.slots);
  std::vector<engine::token_id> tokens = prompt_tokens(*model_, request);
  int max_tokens = resolve_max_tokens(request, static_cast<int>(tokens.size()), n_ctx_);
  const bool report_marks = request.resume.report_marks;
  auto j = std::make_shared<job>(request.job_id, std::move(tokens), max_tokens,
                                 std::move(request.sampling), std::move(request.stop),
                                 request.n_choices, request.n_logprobs, std::move(request.grammar),
                                 std::move(request.resume));

  switch (scheduler_->submit(j)) {
    case submit_result::accepted:
      break;
    case submit_result::all_slots_busy:
      throw common::unavailable(common::codes::ALL_SLOTS_BUSY,
                                j->n_choices > 1
                                    ? "fewer than the " + std::to_string(j->n_choices) +
                                          " slots this request's n needs are free"
                                    : "all " + std::to_string(options_.slots) + " slot(s) are busy",
                                1, {{"slots_total", options_.slots}});
    case submit_result::duplicate_job_id:
      throw common::conflict(common::codes::JOB_EXISTS,
                             "a job with id '" + j->id() + "' is already running",
                             {{"field", "job_id"}});
    case submit_result::stopping:
      throw common::unavailable(common::codes::SHUTTING_DOWN, "the worker is shutting down", 5);
  }
  {
    std::lock_guard lock(mutex_);
    ++active_streams_;
  }
  spdlog::info("job {} accepted: {} prompt tokens, max_tokens {}{}", j->id(),
               j->prompt_tokens.size(), max_tokens,
               j->resume.generated.empty()
                   ? ""
                   : ", resuming after " + std::to_string(j->resume.generated.size()) + " tokens");

  json started = api::started_event(j->id(), options_.model_ref,
                                    std::chrono::duration_cast<std::chrono::seconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count(),
                                    report_marks ? &j->prompt_tokens : nullptr);
  common::serve_sse(res, [this, j, started = std::move(started)](common::sse_sink& sink) {
    struct stream_guard {
      worker_app* app;
      ~stream_guard() {
        {
          std::lock_guard lock(app->mutex_);
          --app->active_streams_;
        }
        app->cv_.notify_all();
      }
    } guard{this};
    // A failed send means the client left: that is a cancel (SPEC §3.4). Keep-alives while the
    // job is silent come from serve_sse.
    bool connected = sink.send(started);
    while (connected) {
      auto event = j->next_event(std::chrono::milliseconds(1000));
      if (!event) {
        connected = sink.connected();
        continue;
      }
      bool last = !std::holds_alternative<token_event>(*event);
      const auto* token = std::get_if<token_event>(&*event);
      connected = token && token->mark ? sink.send_raw(common::sse_frame_with_id(
                                             event_json(*event), api::resume_mark_id(*token->mark)))
                                       : sink.send(event_json(*event));
      if (last) {
        if (const auto* end = std::get_if<end_event>(&*event)) {
          spdlog::info("job {} ended: {} ({} tokens, {:.1f} tok/s)", j->id(),
                       to_string(end->reason), end->tokens_out, end->tokens_per_sec);
        }
        sink.send_done();
        return;
      }
    }
    spdlog::info("job {}: client disconnected, cancelling", j->id());
    j->cancel();
    // The scheduler reads the flag before its next decode step; nudge it if it is waiting.
    std::lock_guard lock(mutex_);
    if (scheduler_) scheduler_->cancel(j->id());
  });
}

}  // namespace rbee::worker
