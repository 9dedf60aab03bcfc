#include "hive/cli.h"

#include <signal.h>

#include <atomic>
#include <cstdio>
#include <iostream>

#include <fmt/format.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include "common/config.h"
#include "common/errors.h"
#include "common/log.h"
#include "common/paths.h"
#include "common/version.h"
#include "hive/hive_app.h"

namespace rbee::hive {
namespace {

std::atomic<int> g_signal{0};

extern "C" void on_stop_signal(int sig) {
  g_signal.store(sig);
}

void install_stop_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
}

// "host:port", ":port" or "host" (default port kept).
void parse_addr(const std::string& addr, hive_config& c) {
  auto colon = addr.rfind(':');
  if (colon == std::string::npos) {
    c.host = addr;
    return;
  }
  if (colon > 0) c.host = addr.substr(0, colon);
  std::string port = addr.substr(colon + 1);
  try {
    size_t used = 0;
    int p = std::stoi(port, &used);
    if (used != port.size() || p < 0 || p > 65535) throw std::out_of_range(port);
    c.port = p;
  } catch (const std::logic_error&) {
    throw CLI::ValidationError("--addr", "port must be a number 0..65535, got '" + port + "'");
  }
}

std::string human_bytes(uint64_t n) {
  double v = static_cast<double>(n);
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  return fmt::format("{:.1f} {}", v, units[u]);
}

struct daemon_flags {
  std::string addr;
  std::string queen_url;
  std::string node_name;
  std::string advertise_host;
  std::string worker_binary;
  std::optional<int64_t> health_interval_ms, loading_timeout_ms, idle_timeout_ms, stop_grace_ms,
      report_interval_ms, download_backoff_ms;
  std::optional<int> health_failures, download_attempts, worker_port_start, worker_threads;
  std::optional<uint64_t> ram_limit, vram_limit, disk_limit;
  std::vector<std::string> worker_args;
};

int run_daemon(const daemon_flags& f) {
  auto cfg = common::config::load();
  common::init_logging("rbee-hive", cfg.log_level());
  hive_config c = load_hive_config(cfg);
  if (!f.addr.empty()) parse_addr(f.addr, c);
  if (!f.queen_url.empty()) c.queen_url = f.queen_url;
  if (!f.node_name.empty()) c.node_name = f.node_name;
  if (!f.advertise_host.empty()) c.advertise_host = f.advertise_host;
  if (!f.worker_binary.empty()) c.worker_binary = f.worker_binary;
  using ms = std::chrono::milliseconds;
  if (f.health_interval_ms) c.health_interval = ms(*f.health_interval_ms);
  if (f.loading_timeout_ms) c.loading_timeout = ms(*f.loading_timeout_ms);
  if (f.idle_timeout_ms) c.idle_timeout = ms(*f.idle_timeout_ms);
  if (f.stop_grace_ms) c.stop_grace = ms(*f.stop_grace_ms);
  if (f.report_interval_ms) c.report_interval = ms(*f.report_interval_ms);
  if (f.download_backoff_ms) c.download.backoff_base = ms(*f.download_backoff_ms);
  if (f.health_failures) c.health_failures = *f.health_failures;
  if (f.download_attempts) c.download.attempts = *f.download_attempts;
  if (f.worker_port_start) c.worker_port_start = *f.worker_port_start;
  if (f.worker_threads) c.worker_threads = *f.worker_threads;
  c.worker_extra_args = f.worker_args;
  if (f.ram_limit) c.limits.ram_free_bytes = f.ram_limit;
  if (f.vram_limit) c.limits.vram_free_bytes = f.vram_limit;
  if (f.disk_limit) c.limits.disk_free_bytes = f.disk_limit;
  c.token = load_hive_token(cfg, c.home);

  // The hive's own log also goes to $RBEE_HOME/logs/hive.log (GET /v1/logs without a worker).
  auto log_file = common::ensure_dir(common::logs_dir(c.home)) / "hive.log";
  spdlog::default_logger()->sinks().push_back(
      std::make_shared<spdlog::sinks::basic_file_sink_mt>(log_file.string()));

  install_stop_handlers();
  hive_app app(c);
  app.start();
  // Persistent daemon: runs until SIGTERM/SIGINT or POST /v1/admin/shutdown.
  while (g_signal.load() == 0 && !app.wait_shutdown_requested(std::chrono::milliseconds(100))) {
  }
  if (int sig = g_signal.load()) spdlog::info("received signal {}, shutting down", sig);
  app.shutdown();
  return 0;
}

int run_detect(bool as_json) {
  auto cfg = common::config::load();
  auto home = cfg.rbee_home();
  auto models = common::models_dir(home);
  std::error_code ec;
  std::filesystem::path probe_dir =
      std::filesystem::exists(models, ec) ? models : std::filesystem::path("/");
  resource_limits limits{cfg.ram_limit_bytes(), cfg.vram_limit_bytes(), std::nullopt};
  capability_probe probe(probe_dir, std::make_shared<system_gpu_probe>(), limits);
  auto caps = probe.probe();
  if (as_json) {
    std::cout << caps.to_json().dump(2) << "\n";
    return 0;
  }
  std::cout << "backends: " << fmt::format("{}", fmt::join(caps.backends(), ", ")) << "\n";
  std::cout << fmt::format("cpu: {} cores, RAM {} total, {} free\n", caps.cpu_cores,
                           human_bytes(caps.ram_total_bytes), human_bytes(caps.ram_free_bytes));
  for (const auto& g : caps.gpus) {
    std::cout << fmt::format("cuda:{}: {}, VRAM {} total, {} free\n", g.index, g.name,
                             human_bytes(g.vram_total_bytes), human_bytes(g.vram_free_bytes));
  }
  if (caps.gpus.empty()) std::cout << "cuda: no devices\n";
  std::cout << fmt::format("disk: {} free in {}\n", human_bytes(caps.disk_free_bytes),
                           caps.models_dir);
  return 0;
}

// Local catalog commands work on $RBEE_HOME directly, without a daemon.
struct local_store {
  hive_config config;
  std::unique_ptr<catalog> cat;
  std::unique_ptr<model_store> store;
  local_store() {
    auto cfg = common::config::load();
    common::init_logging("rbee-hive", cfg.log_level());
    config = load_hive_config(cfg);
    auto models = common::ensure_dir(common::models_dir(config.home));
    cat = std::make_unique<catalog>(config.home / "models.db");
    auto disk_limit = config.limits.disk_free_bytes;
    store = std::make_unique<model_store>(
        *cat, model_store_options{.models_dir = models,
                                  .download = config.download,
                                  .disk_free = [disk_limit](const std::filesystem::path& p) {
                                    return disk_limit ? *disk_limit : disk_free_bytes(p);
                                  }});
  }
};

int run_models_list(bool as_json) {
  local_store ls;
  auto models = ls.cat->list();
  if (as_json) {
    auto arr = nlohmann::json::array();
    for (const auto& m : models) arr.push_back(m.to_json());
    std::cout << nlohmann::json{{"models", arr}}.dump(2) << "\n";
    return 0;
  }
  if (models.empty()) std::cout << "no models (rbee-hive models download hf:ORG/REPO[:FILE])\n";
  for (const auto& m : models) {
    std::cout << fmt::format("{:<32} {:<8} {:<8} {:>10}  {}\n", m.id, m.architecture,
                             m.quantization, human_bytes(m.size_bytes), m.reference);
  }
  return 0;
}

int run_models_download(const std::string& ref_text) {
  local_store ls;
  auto ref = api::parse_model_ref(ref_text);
  auto job = ls.store->start_download(ref);
  uint64_t seen = 0;
  size_t told = 0;
  while (true) {
    auto snap = job->wait_change(seen, std::chrono::milliseconds(500));
    seen = snap.version;
    for (; told < snap.messages.size(); ++told) std::cerr << snap.messages[told] << "\n";
    if (snap.stage == download_stage::downloading && snap.progress.bytes_total > 0) {
      double pct = 100.0 * static_cast<double>(snap.progress.bytes_downloaded) /
                   static_cast<double>(snap.progress.bytes_total);
      std::cerr << fmt::format("\r{:5.1f}%  {} / {}  {:.1f} MB/s", pct,
                               human_bytes(snap.progress.bytes_downloaded),
                               human_bytes(snap.progress.bytes_total), snap.progress.speed_mbps)
                << std::flush;
    }
    if (snap.stage == download_stage::complete) {
      std::cerr << "\n";
      std::cout << fmt::format("{} -> {}\n", snap.result->id, snap.result->local_path);
      return 0;
    }
    if (snap.stage == download_stage::error) {
      std::cerr << "\n";
      throw *snap.error;
    }
  }
}

int run_models_rm(const std::string& id) {
  local_store ls;
  auto removed = ls.store->remove(id);
  std::cout << fmt::format("Model '{}' removed\n", removed.id);
  return 0;
}

}  // namespace

int run_cli(int argc, char** argv) {
  CLI::App app{"rbee-hive: the per-node pool manager of rbee (model catalog, downloads, workers)"};
  app.require_subcommand(0, 1);
  bool show_version = false;
  app.add_flag("--version", show_version, "Print the version and exit");

  daemon_flags df;
  auto* daemon = app.add_subcommand(
      "daemon", "Run the hive daemon (until SIGTERM or POST /v1/admin/shutdown)");
  daemon->add_option("--addr", df.addr,
                     "Listen address host:port (default from config: 0.0.0.0:9200)");
  daemon->add_option("--queen-url", df.queen_url, "Report workers and capabilities to this queen");
  daemon->add_option("--node-name", df.node_name, "Node name in reports (default: host name)");
  daemon->add_option("--advertise-host", df.advertise_host,
                     "Host put in worker URLs (default: derived from --addr)");
  daemon->add_option("--worker-binary", df.worker_binary,
                     "llm-worker-rbee to start (default: next to rbee-hive)");
  daemon->add_option("--health-interval-ms", df.health_interval_ms, "Worker health check interval")
      ->check(CLI::Range(10, 3600000));
  daemon
      ->add_option("--health-failures", df.health_failures,
                   "Failed checks before a worker is removed")
      ->check(CLI::Range(1, 100));
  daemon->add_option("--loading-timeout-ms", df.loading_timeout_ms, "Loading timeout")
      ->check(CLI::Range(10, 86400000));
  daemon->add_option("--idle-timeout-ms", df.idle_timeout_ms, "Idle timeout")
      ->check(CLI::Range(int64_t{10}, int64_t{86400000} * 7));
  daemon
      ->add_option("--stop-grace-ms", df.stop_grace_ms, "Grace before a stopping worker is killed")
      ->check(CLI::Range(0, 3600000));
  daemon->add_option("--report-interval-ms", df.report_interval_ms, "Heartbeat to the queen")
      ->check(CLI::Range(100, 3600000));
  daemon->add_option("--download-backoff-ms", df.download_backoff_ms, "First download retry delay")
      ->check(CLI::Range(0, 600000));
  daemon->add_option("--download-attempts", df.download_attempts, "Download attempts")
      ->check(CLI::Range(1, 100));
  daemon->add_option("--worker-port-start", df.worker_port_start, "First worker port")
      ->check(CLI::Range(1, 65535));
  daemon->add_option("--worker-threads", df.worker_threads, "--threads for workers")
      ->check(CLI::Range(1, 1024));
  daemon->add_option(
      "--worker-arg", df.worker_args,
      "Extra argument for every worker (repeatable; --worker-arg=--flag for dashes)");
  daemon->add_option("--ram-limit-bytes", df.ram_limit,
                     "Treat this much RAM as free (tests, caps)");
  daemon->add_option("--vram-limit-bytes", df.vram_limit, "Treat this much VRAM as free per GPU");
  daemon->add_option("--disk-limit-bytes", df.disk_limit,
                     "Treat this much disk as free for models");

  daemon->footer(
      "Configuration keys and their environment variables: `rbee config keys` or "
      "docs/configuration.md.");

  bool detect_json = false;
  auto* detect = app.add_subcommand("detect", "Print the backends and devices of this node");
  detect->add_flag("--json", detect_json, "JSON output");

  auto* models = app.add_subcommand("models", "The local model catalog");
  models->require_subcommand(1);
  bool list_json = false;
  auto* list = models->add_subcommand("list", "List catalogued models");
  list->add_flag("--json", list_json, "JSON output");
  std::string download_ref;
  auto* download = models->add_subcommand("download", "Download a model into the catalog");
  download->add_option("model_ref", download_ref, "hf:ORG/REPO[:FILE] or file:/path.gguf")
      ->required();
  std::string rm_id;
  auto* rm = models->add_subcommand("rm", "Delete a model (file and catalog row)");
  rm->add_option("id", rm_id, "Model id (see models list)")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  try {
    if (show_version) {
      std::cout << "rbee-hive " << common::version_string() << "\n";
      return 0;
    }
    if (daemon->parsed()) return run_daemon(df);
    if (detect->parsed()) return run_detect(detect_json);
    if (list->parsed()) return run_models_list(list_json);
    if (download->parsed()) return run_models_download(download_ref);
    if (rm->parsed()) return run_models_rm(rm_id);
    std::cerr << app.help();
    return 2;
  } catch (const common::http_error& e) {
    std::cerr << "error: " << e.message << "\n";
    if (e.details.is_object() && e.details.contains("hint"))
      std::cerr << "hint: " << e.details["hint"].dump() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace rbee::hive
