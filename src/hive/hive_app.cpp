#include "hive/hive_app.h"

#include <cassert>
#include <ctime>
#include <deque>
#include <fstream>
#include <regex>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "api/requests.h"
#include "common/errors.h"
#include "common/json.h"
#include "common/paths.h"
#include "common/sse.h"
#include "common/text.h"
#include "common/version.h"
#include "hive/preflight.h"

namespace rbee::hive {
namespace {

using common::http_error;
using common::http_server;
using common::json;
namespace codes = common::codes;

// The families the engine runs (engine/model.h), as GGUF files name them.
constexpr std::array<std::string_view, 8> supported_architectures = {
    "llama", "qwen2", "qwen2moe", "qwen3", "qwen3moe", "gemma2", "gemma3", "phi3"};

bool valid_id(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.')
      return false;
  }
  return id != "." && id != "..";
}

uint64_t process_rss_bytes() {
  std::ifstream in("/proc/self/statm");
  uint64_t size = 0, resident = 0;
  in >> size >> resident;
  return resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

// Which of a log's existing lines a reader asked for (GET /v1/logs?tail=&since=): the last
// `tail` (0 = all of the last MiB) written at or after `since_unix` (0 = any time).
struct log_window {
  uint64_t tail = 0;
  int64_t since_unix = 0;
};

// Lines of rbee's logs start with the writer's local time, "2026-12-02T19:15:40.547 ..." or
// "[2026-12-02 19:15:40.547] ..."; keep() passes those written at or after a point in time. A
// line without a time (a continuation) goes with the line before it.
class since_filter {
 public:
  explicit since_filter(int64_t since_unix) {
    if (since_unix <= 0) return;
    time_t t = static_cast<time_t>(since_unix);
    tm local{};
    localtime_r(&t, &local);
    char text[32];
    std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &local);
    cutoff_ = text;
  }
  bool keep(std::string_view line) {
    if (cutoff_.empty()) return true;
    if (line.starts_with('[')) line.remove_prefix(1);
    if (line.size() >= cutoff_.size() && line[4] == '-' && line[7] == '-' &&
        (line[10] == 'T' || line[10] == ' ') && line[13] == ':' && line[16] == ':') {
      std::string stamp(line.substr(0, cutoff_.size()));
      stamp[10] = 'T';
      keeping_ = stamp >= cutoff_;
    }
    return keeping_;
  }

 private:
  std::string cutoff_;  // "" = keep everything
  bool keeping_ = false;
};

// Streams the lines of a log file: of its last 1 MiB, the window's lines; then (follow) new
// lines as they come until the client leaves or the hive shuts down.
void stream_log(common::sse_sink& sink, const std::filesystem::path& path,
                const std::string& worker, const log_window& window, bool follow,
                const std::atomic<bool>& stopping) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    sink.send({{"type", "error"},
               {"code", codes::NOT_FOUND},
               {"message", "cannot open " + path.string()}});
    return;
  }
  auto send_line = [&](const std::string& line) {
    // Log lines are not necessarily UTF-8: replace invalid bytes rather than fail the stream.
    json event = {{"type", "log"}, {"worker_id", worker}, {"line", line}};
    return sink.send_raw("data: " + event.dump(-1, ' ', false, json::error_handler_t::replace) +
                         "\n\n");
  };
  in.seekg(0, std::ios::end);
  auto size = static_cast<uint64_t>(in.tellg());
  uint64_t pos = size > (1u << 20) ? size - (1u << 20) : 0;
  std::string pending;
  bool skip_partial_first = pos > 0;
  since_filter since(window.since_unix);
  std::deque<std::string> backlog;  // the existing lines asked for, sent once all are read
  bool catching_up = true;
  while (sink.connected()) {
    in.clear();
    in.seekg(static_cast<std::streamoff>(pos));
    char buf[16384];
    in.read(buf, sizeof buf);
    auto n = static_cast<size_t>(in.gcount());
    pos += n;
    pending.append(buf, n);
    size_t nl;
    while ((nl = pending.find('\n')) != std::string::npos) {
      std::string line = pending.substr(0, nl);
      pending.erase(0, nl + 1);
      if (skip_partial_first) {
        skip_partial_first = false;
        continue;
      }
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (!catching_up) {
        if (!send_line(line)) return;
      } else if (since.keep(line)) {
        backlog.push_back(std::move(line));
        if (window.tail > 0 && backlog.size() > window.tail) backlog.pop_front();
      }
    }
    if (pending.size() > (1u << 20)) pending.clear();  // a line without end: drop it
    if (n == sizeof buf) continue;
    if (catching_up) {
      for (const auto& line : backlog) {
        if (!send_line(line)) return;
      }
      backlog.clear();
      catching_up = false;
    }
    if (!follow || stopping.load()) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    sink.send_comment("keep-alive");
  }
}

// A whole number from a query parameter (absent = 0); 400 naming it otherwise.
uint64_t count_param(const httplib::Request& req, const char* name, std::string_view meaning) {
  if (!req.has_param(name)) return 0;
  auto value = common::parse_u64(req.get_param_value(name));
  if (!value) throw common::invalid_request(name, fmt::format("{} must be {}", name, meaning));
  return *value;
}

}  // namespace

hive_app::hive_app(hive_config config, std::shared_ptr<gpu_probe> gpus,
                   std::shared_ptr<common::process_launcher> launcher)
    : config_(std::move(config)), launcher_(std::move(launcher)) {
  if (!gpus) gpus = std::make_shared<system_gpu_probe>();
  if (!launcher_) launcher_ = std::make_shared<common::real_process_launcher>();

  common::server_options so;
  so.name = "rbee-hive";
  so.host = config_.host;
  so.port = config_.port;
  if (!config_.token.empty()) so.api_tokens = {config_.token};
  so.public_paths = {"/v1/health", "/health"};
  so.limits = config_.connection_limits;
  if (config_.token.empty() && !common::is_loopback(config_.host)) {
    throw std::runtime_error(
        fmt::format("refusing to listen on {} without a token: set RBEE_HIVE_TOKEN or "
                    "RBEE_HIVE_TOKEN_FILE, or use "
                    "--addr 127.0.0.1:{}",
                    config_.host, config_.port));
  }
  common::require_token_for_non_loopback(so);  // and a strong one

  common::ensure_dir(config_.home, 0700);
  auto models_dir = common::ensure_dir(common::models_dir(config_.home));
  common::ensure_dir(common::logs_dir(config_.home));

  probe_ = std::make_unique<capability_probe>(models_dir, gpus, config_.limits);
  catalog_ = std::make_unique<catalog>(config_.home / "models.db");
  model_store_options mso;
  mso.models_dir = models_dir;
  mso.download = config_.download;
  auto disk_limit = config_.limits.disk_free_bytes;
  mso.disk_free = [disk_limit](const std::filesystem::path& p) {
    return disk_limit ? *disk_limit : disk_free_bytes(p);
  };
  store_ = std::make_unique<model_store>(*catalog_, mso, &metrics_);

  if (config_.advertise_host.empty()) {
    bool any = config_.host == "0.0.0.0" || config_.host == "::";
    config_.advertise_host = common::is_loopback(config_.host) ? "127.0.0.1"
                             : any                             ? primary_ipv4()
                                                               : config_.host;
  }
  supervisor_options sup;
  sup.worker_binary = config_.worker_binary;
  sup.logs_dir = common::logs_dir(config_.home);
  sup.bind_host = config_.host;
  sup.advertise_host = config_.advertise_host;
  sup.port_start = config_.worker_port_start;
  sup.hive_token = config_.token;
  sup.health_interval = config_.health_interval;
  sup.health_failures = config_.health_failures;
  sup.loading_timeout = config_.loading_timeout;
  sup.idle_timeout = config_.idle_timeout;
  sup.stop_grace = config_.stop_grace;
  sup.threads_per_worker = config_.worker_threads;
  sup.extra_args = config_.worker_extra_args;
  supervisor_ = std::make_unique<worker_supervisor>(sup, *launcher_, &metrics_);
  server_ = std::make_unique<http_server>(so);
  register_routes();
}

hive_app::~hive_app() {
  shutdown();
}

void hive_app::start() {
  assert(!started_ && "hive_app::start() called twice");
  server_->start();
  started_ = true;
  std::string callback_host =
      common::is_loopback(config_.host) || config_.host == "0.0.0.0" || config_.host == "::"
          ? "127.0.0.1"
          : config_.host;
  // Workers call back to the bound port, known only now.
  supervisor_->set_callback_url(
      fmt::format("http://{}:{}/v1/workers/ready", callback_host, server_->port()));

  if (!config_.queen_url.empty()) {
    report_options ro;
    ro.queen_url = config_.queen_url;
    ro.token = config_.token;
    ro.node_name = config_.node_name;
    ro.hive_url = fmt::format("http://{}:{}", config_.advertise_host, server_->port());
    ro.interval = config_.report_interval;
    reporter_ = std::make_unique<queen_reporter>(
        ro, [this] { return supervisor_->list(); }, [this] { return supervisor_->recent_events(); },
        [this] { return probe_->probe().to_json(); });
    supervisor_->set_on_change([this] { reporter_->notify(); });
  }
  spdlog::info("rbee-hive {} listening on {}:{} (node '{}', auth {})", common::version_string(),
               config_.host, server_->port(), config_.node_name,
               config_.token.empty() ? "off" : "on");
}

void hive_app::request_shutdown() {
  {
    std::lock_guard lock(shutdown_mutex_);
    shutdown_requested_ = true;
  }
  shutdown_cv_.notify_all();
}

bool hive_app::wait_shutdown_requested(std::chrono::milliseconds timeout) {
  std::unique_lock lock(shutdown_mutex_);
  return shutdown_cv_.wait_for(lock, timeout, [&] { return shutdown_requested_.load(); });
}

void hive_app::shutdown() {
  if (shut_down_.exchange(true)) return;
  request_shutdown();
  if (!started_) return;
  store_->cancel_all();  // a spawn waiting on a download must not hold up the server's stop
  spdlog::info("shutting down: stopping workers (grace {} ms)", config_.stop_grace.count());
  supervisor_->stop_all(config_.stop_grace);
  if (reporter_) {
    supervisor_->set_on_change({});
    reporter_->stop_with_final_report();  // tells the queen the workers are gone
    reporter_.reset();
  }
  server_->stop();
  supervisor_.reset();
  store_.reset();
  spdlog::info("rbee-hive stopped");
}

void hive_app::register_routes() {
  auto& s = *server_;
  auto handle = [this](void (hive_app::*route)(const httplib::Request&, httplib::Response&)) {
    return [this, route](const httplib::Request& req, httplib::Response& res) {
      (this->*route)(req, res);
    };
  };

  s.get("/v1/health", handle(&hive_app::health));
  s.get("/v1/capabilities", handle(&hive_app::capabilities));
  s.get("/metrics", handle(&hive_app::metrics));

  // ---- catalog and downloads ----
  s.get("/v1/models/list", handle(&hive_app::list_models));
  s.del(R"(/v1/models/([^/]+))", handle(&hive_app::remove_model));
  s.post("/v1/models/download", handle(&hive_app::start_download));
  s.get("/v1/models/download/progress", handle(&hive_app::download_progress));

  // ---- workers ----
  s.post("/v1/workers/spawn", handle(&hive_app::spawn_worker));
  s.post("/v1/workers/ready", handle(&hive_app::worker_ready));
  s.get("/v1/workers/list", handle(&hive_app::list_workers));
  s.post("/v1/workers/shutdown", handle(&hive_app::shutdown_worker));
  s.get("/v1/logs", handle(&hive_app::logs));
  s.post("/v1/admin/shutdown", handle(&hive_app::admin_shutdown));
}

void hive_app::health(const httplib::Request&, httplib::Response& res) {
  http_server::send_json(
      res, 200,
      {{"status", "alive"}, {"version", common::version_string()}, {"api_version", "v1"}});
}

void hive_app::capabilities(const httplib::Request&, httplib::Response& res) {
  auto caps = probe_->probe().to_json();
  caps["node_name"] = config_.node_name;
  caps["version"] = common::version_string();
  http_server::send_json(res, 200, caps);
}

void hive_app::metrics(const httplib::Request&, httplib::Response& res) {
  metrics_.gauge_set("rbee_hive_process_resident_bytes", "Resident memory of the hive process",
                     static_cast<double>(process_rss_bytes()));
  auto mem = read_meminfo();
  metrics_.gauge_set(
      "rbee_hive_ram_free_bytes", "Available RAM on the node",
      static_cast<double>(config_.limits.ram_free_bytes.value_or(mem.available_bytes)));
  metrics_.gauge_set("rbee_hive_models", "Models in the catalog",
                     static_cast<double>(catalog_->list().size()));
  res.set_content(metrics_.render(), "text/plain; version=0.0.4");
}

void hive_app::list_models(const httplib::Request&, httplib::Response& res) {
  auto models = json::array();
  for (const auto& m : catalog_->list()) models.push_back(m.to_json());
  http_server::send_json(res, 200, {{"models", models}});
}

void hive_app::remove_model(const httplib::Request& req, httplib::Response& res) {
  std::string id = req.matches[1];
  if (!valid_id(id))
    throw common::invalid_request("id", "model ids contain only letters, digits, '.', '-', '_'");
  for (const auto& w : supervisor_->list()) {
    if (w.model_id == id) {
      throw common::conflict(
          codes::MODEL_IN_USE,
          fmt::format("Model '{}' is used by {}; stop it first", id, w.worker_id),
          {{"id", id}, {"worker_id", w.worker_id}});
    }
  }
  auto removed = store_->remove(id);
  http_server::send_json(res, 200, {{"deleted", removed.to_json()}});
}

void hive_app::start_download(const httplib::Request& req, httplib::Response& res) {
  auto body = common::parse_body(req.body);
  auto ref = api::parse_model_ref(common::require_string(body, "model_ref", 1024));
  auto job = store_->start_download(ref, api::hub_access::from_json(body));
  auto snap = job->get();
  json out = {
      {"download_id", job->id()}, {"model_ref", ref.canonical()}, {"stage", to_string(snap.stage)}};
  // Local references resolve at once: their errors are this request's. Hub downloads report
  // theirs on the progress stream (they may fail before this answer is written).
  bool local = ref.kind == api::ref_kind::alias || ref.kind == api::ref_kind::local_file;
  if (local && snap.stage == download_stage::error && snap.error) throw *snap.error;
  if (snap.result) out["model"] = snap.result->to_json();
  http_server::send_json(res, 202, out);
}

void hive_app::download_progress(const httplib::Request& req, httplib::Response& res) {
  std::string id = req.get_param_value("id");
  if (id.empty()) throw common::invalid_request("id", "the download id is required (?id=...)");
  auto job = store_->find_job(id);
  if (!job)
    throw common::not_found(codes::NOT_FOUND, fmt::format("Unknown download '{}'", id),
                            {{"id", id}});
  common::serve_sse(res, [job, this](common::sse_sink& sink) {
    uint64_t seen = 0;
    size_t told = 0;
    auto last_sent = std::chrono::steady_clock::now() - std::chrono::seconds(10);
    while (sink.connected()) {
      auto snap = job->wait_change(seen, std::chrono::milliseconds(500));
      seen = snap.version;
      for (; told < snap.messages.size(); ++told) {
        sink.send({{"stage", "narration"}, {"message", snap.messages[told]}});
      }
      if (snap.stage == download_stage::complete) {
        sink.send({{"stage", "complete"},
                   {"local_path", snap.result->local_path},
                   {"model", snap.result->to_json()},
                   {"bytes_downloaded", snap.result->size_bytes},
                   {"bytes_total", snap.result->size_bytes}});
        return;
      }
      if (snap.stage == download_stage::error) {
        json ev = {
            {"stage", "error"}, {"code", snap.error->code}, {"message", snap.error->message}};
        if (!snap.error->details.is_null()) ev["details"] = snap.error->details;
        sink.send(ev);
        return;
      }
      auto now = std::chrono::steady_clock::now();
      if (snap.stage == download_stage::downloading &&
          now - last_sent >= std::chrono::milliseconds(200)) {
        last_sent = now;
        const auto& p = snap.progress;
        sink.send({{"stage", "downloading"},
                   {"bytes_downloaded", p.bytes_downloaded},
                   {"bytes_total", p.bytes_total},
                   {"speed_mbps", p.speed_mbps},
                   {"attempt", p.attempt}});
      }
      if (shutdown_requested_) {
        sink.send({{"stage", "error"},
                   {"code", codes::INTERNAL},
                   {"message", "the hive is shutting down"}});
        return;
      }
    }
  });
}

void hive_app::spawn_worker(const httplib::Request& req, httplib::Response& res) {
  const bool include_tokens = !config_.token.empty();
  try {
    auto body = common::parse_body(req.body);
    std::string ref_text = common::require_string(body, "model_ref", 1024);
    auto ref = api::parse_model_ref(ref_text);
    std::string backend = common::string_or(body, "backend", "cpu", 32);
    int device = static_cast<int>(common::int_in_range(body, "device", 0, 0, 1024));
    const api::device_split forced = api::device_split_from_json(body);
    const std::vector<int>& devices = forced.devices;
    if (!devices.empty()) device = devices.front();
    int slots = static_cast<int>(common::int_in_range(body, "slots", 0, 0, 256));
    int min_slots = static_cast<int>(common::int_in_range(body, "min_slots", 1, 1, 256));
    int ctx = static_cast<int>(common::int_in_range(body, "ctx", 0, 0, 1 << 22));
    auto keep_alive_s = common::optional_int(body, "keep_alive_s", 0, 365LL * 24 * 3600);
    if (slots > 0 && slots < min_slots) {
      throw common::invalid_request("slots", "slots must be at least min_slots");
    }
    if (shutdown_requested_) {
      throw common::unavailable(codes::NODE_UNREACHABLE, "the hive is shutting down", 5);
    }

    // A layer split is sized on its devices' memory together; each must exist.
    const auto caps = pooled_for_split(probe_->probe(), backend, devices);
    check_backend(caps, backend, device);
    for (const int d : devices) {
      try {
        check_backend(caps, backend, d);
      } catch (http_error& e) {
        e.details["field"] = "devices";  // the request's list names it, not "device"
        throw;
      }
    }

    std::vector<std::string> narration;
    auto model = store_->ensure(ref, [&](const std::string& m) { narration.push_back(m); });
    auto header = read_model_header(model.local_path);
    if (std::find(supported_architectures.begin(), supported_architectures.end(),
                  header.architecture) == supported_architectures.end()) {
      throw http_error(
          422, codes::INVALID_MODEL,
          fmt::format("Unsupported architecture '{}' in {} (supported: {})", header.architecture,
                      model.file, fmt::join(supported_architectures, ", ")),
          {{"architecture", header.architecture}, {"model_id", model.id}});
    }
    const double correction = supervisor_->memory_correction(model.id);
    auto size = size_worker(header, caps, backend, device, ctx, slots, min_slots, config_.sizing,
                            correction);
    check_fits(caps, backend, device, size.estimate);
    narration.push_back(fmt::format(
        "Preflight ok: {} slots of {} tokens need {} bytes on {}{}{}", size.slots, size.ctx,
        size.estimate.total(), backend,
        backend == "cuda" ? fmt::format(":{}", device) : std::string(),
        correction > 1.0 ? fmt::format(" (estimate x{:.2f}, as measured)", correction) : ""));

    auto info = supervisor_->spawn(
        {.model_ref = ref_text,
         .model_id = model.id,
         .model_path = model.local_path,
         .backend = backend,
         .device = device,
         .devices = devices,
         .split = forced.split,
         .slots = size.slots,
         .ctx = size.ctx,
         .memory_bytes = size.estimate.total(),
         .keep_alive =
             keep_alive_s ? std::optional(std::chrono::seconds(*keep_alive_s)) : std::nullopt});
    json out = info.to_json(include_tokens);
    out["model"] = model.to_json();
    out["narration"] = narration;
    http_server::send_json(res, 200, out);
  } catch (const http_error& e) {
    metrics_.counter_add("rbee_hive_spawn_failures_total", "Worker spawns refused or failed", 1,
                         {{"code", e.code}});
    throw;
  }
}

void hive_app::worker_ready(const httplib::Request& req, httplib::Response& res) {
  auto body = common::parse_body(req.body);
  auto id = common::require_string(body, "worker_id", 128);
  auto info = supervisor_->mark_ready(id);
  http_server::send_json(res, 200,
                         {{"worker_id", info.worker_id}, {"state", to_string(info.state)}});
}

void hive_app::list_workers(const httplib::Request&, httplib::Response& res) {
  const bool include_tokens = !config_.token.empty();
  auto workers = json::array();
  for (const auto& w : supervisor_->list()) workers.push_back(w.to_json(include_tokens));
  auto exits = json::array();
  for (const auto& e : supervisor_->recent_events()) exits.push_back(e.to_json());
  http_server::send_json(res, 200, {{"workers", workers}, {"recent_exits", exits}});
}

void hive_app::shutdown_worker(const httplib::Request& req, httplib::Response& res) {
  auto body = common::parse_body(req.body);
  auto id = common::require_string(body, "worker_id", 128);
  auto info = supervisor_->request_stop(id, "shutdown_requested");
  http_server::send_json(res, 200,
                         {{"worker_id", info.worker_id}, {"state", to_string(info.state)}});
}

void hive_app::logs(const httplib::Request& req, httplib::Response& res) {
  std::string worker = req.get_param_value("worker");
  std::string follow_text = req.get_param_value("follow");
  bool follow = follow_text == "1" || follow_text == "true";
  std::filesystem::path path;
  if (worker.empty()) {
    path = common::logs_dir(config_.home) / "hive.log";
  } else {
    if (!valid_id(worker))
      throw common::invalid_request("worker", "worker ids contain only letters, digits, '-', '_'");
    path = common::logs_dir(config_.home) / ("worker-" + worker + ".log");
  }
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    if (worker.empty()) throw common::not_found(codes::NOT_FOUND, "This hive writes no log file");
    throw common::not_found(codes::WORKER_NOT_FOUND, fmt::format("No log for worker '{}'", worker),
                            {{"worker_id", worker}});
  }
  log_window window{
      .tail = count_param(req, "tail", "a whole number of lines (0 = all)"),
      .since_unix = static_cast<int64_t>(count_param(req, "since", "a Unix time in seconds"))};
  common::serve_sse(res, [this, path, worker, window, follow](common::sse_sink& sink) {
    stream_log(sink, path, worker, window, follow, shutdown_requested_);
  });
}

void hive_app::admin_shutdown(const httplib::Request&, httplib::Response& res) {
  http_server::send_json(res, 202, {{"status", "shutting_down"}});
  request_shutdown();
}

}  // namespace rbee::hive
