#include "hive/workers.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <fstream>
#include <future>
#include <sstream>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/config.h"
#include "common/errors.h"
#include "common/http_client.h"
#include "common/http_server.h"
#include "common/log.h"
#include "common/secrets.h"

namespace rbee::hive {
namespace {

using clock_type = std::chrono::steady_clock;

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Sleeps up to d, waking early when stop is requested.
void sleep_unless_stopped(const std::stop_token& stop, std::chrono::milliseconds d) {
  auto until = clock_type::now() + d;
  while (!stop.stop_requested() && clock_type::now() < until) {
    std::this_thread::sleep_for(
        std::min<clock_type::duration>(std::chrono::milliseconds(20), until - clock_type::now()));
  }
}

// When the worker was last active, from its health answer: `idle_ms` (time since its last job
// ended; 0 while busy) when it reports one, else "now" while it says it is busy.
std::optional<clock_type::time_point> last_activity(const nlohmann::json& health,
                                                    clock_type::time_point now) {
  if (!health.is_object()) return std::nullopt;
  if (auto it = health.find("idle_ms");
      it != health.end() && it->is_number() && it->get<double>() >= 0) {
    return now - std::chrono::milliseconds(static_cast<int64_t>(it->get<double>()));
  }
  if (auto it = health.find("slots_busy");
      it != health.end() && it->is_number() && it->get<double>() > 0) {
    return now;
  }
  if (auto it = health.find("state"); it != health.end() && it->is_string() && *it == "busy")
    return now;
  return std::nullopt;
}

// Resident memory of a process (VmRSS of /proc/PID/status); 0 when unreadable.
uint64_t resident_bytes(int64_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (!line.starts_with("VmRSS:")) continue;
    uint64_t kib = 0;
    std::istringstream(line.substr(6)) >> kib;
    return kib * 1024;
  }
  return 0;
}

// What a health answer tells about the worker's use: busy slots, speed and, on a GPU, the
// device memory it holds (on the CPU its resident memory is read from /proc).
void record_health(worker_info& w, const nlohmann::json& health) {
  // A worker's answer is input: values outside [0, limit] are ignored, never cast blindly.
  auto number = [&](const char* field, double limit) -> std::optional<double> {
    auto it = health.find(field);
    if (it == health.end() || !it->is_number()) return std::nullopt;
    double v = it->get<double>();
    if (!(v >= 0 && v <= limit)) return std::nullopt;
    return v;
  };
  if (auto busy = number("slots_busy", 1 << 16)) w.slots_busy = static_cast<int>(*busy);
  if (auto speed = number("tokens_per_second", 1e9)) w.tokens_per_second = *speed;
  if (w.backend == "cuda") {
    if (auto used = number("vram_used_bytes", 1e15)) {
      w.memory_used_bytes = static_cast<uint64_t>(*used);
    }
  } else if (w.pid > 0) {
    w.memory_used_bytes = resident_bytes(w.pid);
  }
}

}  // namespace

bool port_is_free(const std::string& host, int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  std::string h = host == "localhost" ? "127.0.0.1" : host;
  if (::inet_pton(AF_INET, h.c_str(), &addr.sin_addr) != 1)
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

worker_supervisor::worker_supervisor(supervisor_options options, common::process_launcher& launcher,
                                     common::metrics_registry* metrics)
    : options_(std::move(options)), launcher_(launcher), metrics_(metrics) {
  reaper_ = std::jthread([this](std::stop_token st) { reaper_loop(st); });
  health_ = std::jthread([this](std::stop_token st) { health_loop(st); });
}

worker_supervisor::~worker_supervisor() {
  stop_all(options_.stop_grace);
  health_.request_stop();
  reaper_.request_stop();
}

void worker_supervisor::set_on_change(std::function<void()> on_change) {
  std::lock_guard lock(callback_mutex_);
  on_change_ = std::move(on_change);
}

void worker_supervisor::set_callback_url(std::string url) {
  std::lock_guard lock(mutex_);
  options_.callback_url = std::move(url);
}

void worker_supervisor::notify_change() {
  std::function<void()> cb;
  {
    std::lock_guard lock(callback_mutex_);
    cb = on_change_;
  }
  if (cb) cb();
}

void worker_supervisor::update_gauges() {
  if (!metrics_) return;
  std::map<worker_state, int> counts = {
      {worker_state::loading, 0}, {worker_state::idle, 0}, {worker_state::stopping, 0}};
  for (const auto& [id, e] : workers_) counts[e->info.state]++;
  for (auto [state, n] : counts) {
    metrics_->gauge_set("rbee_hive_workers", "Workers on this node by state", n,
                        {{"state", std::string(to_string(state))}});
  }
}

int worker_supervisor::pick_port() const {
  for (int port = options_.port_start; port < options_.port_start + 1000 && port < 65536; ++port) {
    bool taken = false;
    for (const auto& [id, e] : workers_) taken = taken || e->info.port == port;
    if (!taken && port_is_free(options_.bind_host, port)) return port;
  }
  throw common::internal_error(
      fmt::format("no free port in {}..{}", options_.port_start, options_.port_start + 999));
}

worker_info worker_supervisor::spawn(const spawn_request& request) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(options_.worker_binary, ec)) {
    throw common::internal_error(
        fmt::format("The worker binary {} does not exist", options_.worker_binary),
        {{"worker_binary", options_.worker_binary}});
  }
  worker_info info;
  {
    std::lock_guard lock(mutex_);
    if (options_.callback_url.empty()) {
      throw common::unavailable(common::codes::NODE_UNREACHABLE, "the hive is still starting", 1);
    }
    info.worker_id = "worker-" + common::random_token(4);
    info.model_ref = request.model_ref;
    info.model_id = request.model_id;
    info.model_path = request.model_path;
    info.backend = request.backend;
    info.device = request.device;
    info.devices = request.devices;
    info.split = request.split;
    info.slots_total = request.slots;
    info.ctx = request.ctx;
    info.memory_bytes = request.memory_bytes;
    info.keep_alive_s = static_cast<int>(
        request.keep_alive
            ? request.keep_alive->count()
            : std::chrono::duration_cast<std::chrono::seconds>(options_.idle_timeout).count());
    info.port = pick_port();
    info.url = fmt::format("http://{}:{}", options_.advertise_host, info.port);
    info.token = common::random_token(32);
    info.log_path = (options_.logs_dir / ("worker-" + info.worker_id + ".log")).string();
    info.started_at_unix = unix_now();

    common::process_spec spec;
    spec.executable = options_.worker_binary;
    spec.args = {"--worker-id", info.worker_id,
                 "--model",     info.model_path,
                 "--model-ref", info.model_ref,
                 "--backend",   info.backend,
                 "--device",    std::to_string(info.device),
                 "--port",      std::to_string(info.port),
                 "--host",      options_.bind_host,
                 "--slots",     std::to_string(info.slots_total)};
    if (info.ctx > 0) spec.args.insert(spec.args.end(), {"--ctx", std::to_string(info.ctx)});
    if (!info.devices.empty())
      spec.args.insert(
          spec.args.end(),
          {"--devices", fmt::format("{}", fmt::join(info.devices, ",")), "--split", info.split});
    spec.args.insert(spec.args.end(), {"--callback-url", options_.callback_url});
    if (options_.threads_per_worker > 0) {
      spec.args.insert(spec.args.end(), {"--threads", std::to_string(options_.threads_per_worker)});
    }
    spec.args.insert(spec.args.end(), options_.extra_args.begin(), options_.extra_args.end());
    // Secrets travel in the environment, never argv (visible in ps).
    spec.env[common::env_var_for("worker.token")] = info.token;
    if (!options_.hive_token.empty())
      spec.env[common::env_var_for("hive.token")] = options_.hive_token;
    spec.log_path = info.log_path;
    spec.kill_with_parent = true;

    auto e = std::make_unique<entry>();
    try {
      e->child = launcher_.spawn(spec);
    } catch (const std::exception& ex) {
      throw common::internal_error(fmt::format("Cannot start the worker: {}", ex.what()),
                                   {{"worker_binary", options_.worker_binary}});
    }
    e->spec = spec;
    info.pid = e->child.pid();
    info.state = worker_state::loading;
    e->info = info;
    e->started = e->last_active = clock_type::now();
    e->keep_alive =
        request.keep_alive ? std::chrono::milliseconds(*request.keep_alive) : options_.idle_timeout;
    spdlog::info("spawned {} (pid {}) for {} on {}:{} at {}", info.worker_id, info.pid,
                 info.model_ref, info.backend, info.device, info.url);
    workers_[info.worker_id] = std::move(e);
    update_gauges();
  }
  notify_change();
  return info;
}

worker_info worker_supervisor::mark_ready(const std::string& worker_id) {
  worker_info info;
  {
    std::lock_guard lock(mutex_);
    auto& e = entry_or_throw(worker_id);
    if (e.info.state == worker_state::loading) {
      e.info.state = worker_state::idle;
      e.info.ready_at_unix = unix_now();
      e.last_active = clock_type::now();
      auto secs = std::chrono::duration<double>(clock_type::now() - e.started).count();
      spdlog::info("{} is ready after {:.1f} s", worker_id, secs);
    }
    info = e.info;
    update_gauges();
  }
  notify_change();
  return info;
}

std::vector<worker_info> worker_supervisor::list() const {
  std::lock_guard lock(mutex_);
  std::vector<worker_info> out;
  const auto now = clock_type::now();
  for (const auto& [id, e] : workers_) {
    out.push_back(e->info);
    if (e->info.state == worker_state::idle && !e->stop_reason && e->info.slots_busy == 0) {
      auto left =
          std::chrono::duration_cast<std::chrono::seconds>(e->keep_alive - (now - e->last_active));
      out.back().unload_at_unix = unix_now() + std::max<int64_t>(0, left.count());
    }
  }
  return out;
}

double worker_supervisor::memory_correction(const std::string& model_id) const {
  std::lock_guard lock(mutex_);
  double ratio = 1.0;
  for (const auto& [id, e] : workers_) {
    const auto& w = e->info;
    if (w.model_id != model_id || w.memory_bytes == 0 || w.memory_used_bytes == 0) continue;
    ratio = std::max(
        ratio, static_cast<double>(w.memory_used_bytes) / static_cast<double>(w.memory_bytes));
  }
  return std::min(ratio, 3.0);
}

worker_supervisor::entry& worker_supervisor::entry_or_throw(const std::string& worker_id) {
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) {
    throw common::not_found(common::codes::WORKER_NOT_FOUND,
                            fmt::format("Unknown worker '{}'", worker_id),
                            {{"worker_id", worker_id}});
  }
  return *it->second;
}

std::optional<worker_info> worker_supervisor::find(const std::string& worker_id) const {
  std::lock_guard lock(mutex_);
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) return std::nullopt;
  return it->second->info;
}

void worker_supervisor::begin_stop(entry& e, const std::string& reason,
                                   std::chrono::milliseconds grace, std::string code) {
  if (e.stop_reason) return;  // already on its way out
  e.stop_reason = reason;
  e.stop_code = std::move(code);
  e.info.state = worker_state::stopping;
  e.kill_at = clock_type::now() + grace;
  e.child.kill(SIGTERM);
  spdlog::info("stopping {} ({})", e.info.worker_id, reason);
}

void worker_supervisor::kill_now(entry& e, const std::string& reason, std::string code) {
  if (!e.stop_reason) {
    e.stop_reason = reason;
    e.stop_code = std::move(code);
  }
  e.info.state = worker_state::stopping;
  e.kill_at = clock_type::now();
  e.killed = true;
  e.child.kill(SIGKILL);
  spdlog::warn("killed {} ({})", e.info.worker_id, reason);
}

worker_info worker_supervisor::request_stop(const std::string& worker_id,
                                            const std::string& reason) {
  worker_info info;
  {
    std::lock_guard lock(mutex_);
    auto& e = entry_or_throw(worker_id);
    begin_stop(e, reason, options_.stop_grace);
    info = e.info;
    update_gauges();
  }
  notify_change();
  return info;
}

void worker_supervisor::stop_all(std::chrono::milliseconds grace) {
  std::unique_lock lock(mutex_);
  if (workers_.empty()) return;
  spdlog::info("stopping {} worker(s), grace {} ms", workers_.size(), grace.count());
  for (auto& [id, e] : workers_) begin_stop(*e, "hive_shutdown", grace);
  update_gauges();
  // The reaper SIGKILLs at kill_at and removes exited workers; wait for it (bounded).
  bool done = cv_.wait_for(lock, grace + std::chrono::seconds(2), [&] { return workers_.empty(); });
  if (!done) spdlog::error("{} worker(s) did not exit after SIGKILL", workers_.size());
}

std::vector<worker_event> worker_supervisor::recent_events() const {
  std::lock_guard lock(mutex_);
  return {events_.begin(), events_.end()};
}

bool worker_supervisor::respawn(entry& e) {
  ++e.port_retries;
  e.info.port = pick_port();
  e.info.url = fmt::format("http://{}:{}", options_.advertise_host, e.info.port);
  auto port_arg = std::find(e.spec.args.begin(), e.spec.args.end(), "--port");
  assert(port_arg != e.spec.args.end() && "worker spec without --port");
  *std::next(port_arg) = std::to_string(e.info.port);
  try {
    e.child = launcher_.spawn(e.spec);
  } catch (const std::exception& ex) {
    spdlog::warn("{}: cannot start again: {}", e.info.worker_id, ex.what());
    return false;
  }
  e.info.pid = e.child.pid();
  spdlog::info("{}: port taken, started again on {}", e.info.worker_id, e.info.url);
  return true;
}

void worker_supervisor::reaper_loop(std::stop_token stop) {
  while (!stop.stop_requested()) {
    bool changed = false;
    {
      std::lock_guard lock(mutex_);
      auto now = clock_type::now();
      for (auto it = workers_.begin(); it != workers_.end();) {
        auto& e = *it->second;
        if (auto status = e.child.try_wait()) {
          // Another process took the port between pick_port() and the worker's bind (other
          // hives on this machine, e.g. in tests): start it again on the next free port.
          if (!e.stop_reason && e.info.state == worker_state::loading &&
              *status == common::exit_address_in_use && e.port_retries < 3 && respawn(e)) {
            ++it;
            continue;
          }
          worker_event ev{.worker_id = e.info.worker_id,
                          .model_ref = e.info.model_ref,
                          .reason = e.stop_reason.value_or("crashed"),
                          .code = e.stop_code,
                          .exit_status = *status,
                          .at_unix = unix_now(),
                          .seq = next_event_seq_++};
          if (e.stop_reason) {
            spdlog::info("{} exited with status {} ({})", ev.worker_id, *status, ev.reason);
          } else {
            spdlog::warn("{} exited unexpectedly with status {}; removed", ev.worker_id, *status);
            if (metrics_)
              metrics_->counter_add("rbee_hive_worker_crashes_total",
                                    "Workers that exited on their own");
          }
          events_.push_back(ev);
          while (events_.size() > 100) events_.pop_front();
          it = workers_.erase(it);
          changed = true;
          continue;
        }
        if (e.stop_reason && !e.killed && now >= e.kill_at) {
          kill_now(e, *e.stop_reason, e.stop_code);
        } else if (!e.stop_reason && e.info.state == worker_state::loading &&
                   now - e.started > options_.loading_timeout) {
          kill_now(e, "loading_timeout", std::string(common::codes::LOADING_TIMEOUT));
          changed = true;
        } else if (!e.stop_reason && e.info.state == worker_state::idle &&
                   now - e.last_active > e.keep_alive) {
          begin_stop(e, "idle_timeout", options_.stop_grace);
          changed = true;
        }
        ++it;
      }
      if (changed) {
        update_gauges();
        cv_.notify_all();
      }
    }
    if (changed) notify_change();
    sleep_unless_stopped(stop, std::chrono::milliseconds(25));
  }
}

void worker_supervisor::health_loop(std::stop_token stop) {
  auto timeout = std::clamp<std::chrono::milliseconds>(
      options_.health_interval, std::chrono::milliseconds(100), std::chrono::milliseconds(5000));
  while (!stop.stop_requested()) {
    sleep_unless_stopped(stop, options_.health_interval);
    if (stop.stop_requested()) break;
    struct target {
      std::string id, url, token;
    };
    std::vector<target> targets;
    {
      std::lock_guard lock(mutex_);
      for (const auto& [id, e] : workers_) {
        if (!e->stop_reason) targets.push_back({id, e->info.url, e->info.token});
      }
    }
    // Checked in parallel so one hung worker does not delay the others.
    std::vector<std::future<std::optional<nlohmann::json>>> results;
    for (const auto& t : targets) {
      results.push_back(
          std::async(std::launch::async, [t, timeout]() -> std::optional<nlohmann::json> {
            try {
              common::http_client client(
                  t.url,
                  {.connect_timeout = timeout, .read_timeout = timeout, .bearer_token = t.token});
              auto res = client.get("/v1/health");
              if (!res.ok()) return std::nullopt;
              try {
                return res.json_body();
              } catch (const nlohmann::json::exception&) {
                return nlohmann::json::object();  // alive, just not JSON
              }
            } catch (const common::connection_error&) {
              return std::nullopt;
            }
          }));
    }
    std::vector<std::optional<nlohmann::json>> answers;
    for (auto& r : results) answers.push_back(r.get());
    bool changed = false;
    {
      std::lock_guard lock(mutex_);
      for (size_t i = 0; i < targets.size(); ++i) {
        const auto& result = answers[i];
        auto it = workers_.find(targets[i].id);
        if (it == workers_.end() || it->second->stop_reason) continue;
        auto& e = *it->second;
        if (result) {
          e.health_failures = 0;
          if (auto active = last_activity(*result, clock_type::now()))
            e.last_active = std::max(e.last_active, *active);
          record_health(e.info, *result);
          continue;
        }
        e.health_failures++;
        spdlog::warn("health check of {} failed ({}/{})", e.info.worker_id, e.health_failures,
                     options_.health_failures);
        if (e.health_failures >= options_.health_failures) {
          kill_now(e, "health_check_failed", "");
          changed = true;
        }
      }
      if (changed) update_gauges();
    }
    if (changed) notify_change();
  }
}

}  // namespace rbee::hive
