#include "queen/queen_app.h"

#include <signal.h>

#include <thread>

#include <spdlog/spdlog.h>

#include "common/paths.h"
#include "common/version.h"

namespace rbee::queen {

using namespace std::chrono_literals;

void queen_app::block_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

queen_app::queen_app(queen_options options)
    : options_(std::move(options)), clock_(common::system_clock_instance()) {
  if (options_.bin_dir.empty()) options_.bin_dir = common::self_executable_dir();
  if (options_.database.empty()) options_.database = options_.rbee_home / "beehives.db";
  common::ensure_dir(options_.rbee_home, 0700);
  common::server_options server;
  server.name = "queen-rbee";
  server.host = options_.host;
  server.port = options_.port;
  server.api_tokens = options_.api_keys;
  server.limits = options_.connection_limits;
  // Hive reports carry the node token and the OpenAI routes answer in OpenAI's error shape:
  // both check credentials themselves. The dashboard's page and files hold no data: the page
  // asks for the API key.
  server.public_paths = {"/health",
                         "/v2/hives/report",
                         "/v1/chat/completions",
                         "/v1/completions",
                         "/v1/models",
                         "/v1/models/*",
                         "/",
                         "/dashboard/*"};
  server.cors_paths = {"/v1/*"};
  common::require_token_for_non_loopback(server);

  ssh_options ssh{.rbee_home = options_.rbee_home,
                  .connect_timeout_s = options_.ssh_connect_timeout_s,
                  .attempts = 3,
                  .initial_backoff = options_.ssh_backoff,
                  .command_timeout = 300s};
  ssh_ = std::make_unique<openssh_runner>(ssh);
  registry_ = std::make_unique<registry>(options_.database, options_.bin_dir);
  scheduler_options sched{.queue_size = options_.queue_size,
                          .max_workers_per_model = options_.max_workers_per_model,
                          .default_slots = 1,
                          .max_slots_per_worker = options_.slots_per_worker,
                          .max_replicas = options_.max_replicas,
                          .replica_queue_threshold = options_.replica_queue_threshold,
                          .max_slots_per_client = options_.max_slots_per_client,
                          .policy = options_.placement,
                          .queue_timeout = options_.queue_timeout,
                          .retry_after_s = 2};
  scheduler_ = std::make_unique<scheduler>(sched, clock_);
  hive_manager_options hm{.rbee_home = options_.rbee_home,
                          .bin_dir = options_.bin_dir,
                          .local_hive_port = options_.local_hive_port,
                          .remote_hive_port = options_.remote_hive_port,
                          .queen_url = options_.public_url,
                          .hf_endpoint = options_.hf_endpoint,
                          .hf_token = options_.hf_token,
                          .connect_attempts = 3,
                          .connect_timeout = options_.hive_connect_timeout,
                          .connect_backoff = 1s,
                          .report_stale_after = options_.hive_stale_after,
                          .monitor_interval = 5s,
                          .ssh = ssh};
  hives_ = std::make_unique<hive_manager>(hm, *registry_, *scheduler_, launcher_, *ssh_, clock_);
  tasks_ =
      std::make_unique<task_runner>(task_runner_options{.loading_timeout = options_.loading_timeout,
                                                        .max_dispatch_attempts = 3,
                                                        .max_failovers = options_.max_failovers,
                                                        .stall_timeout = options_.stall_timeout,
                                                        .models = options_.models},
                                    *registry_, *hives_, *scheduler_, metrics_);
  server_ = std::make_unique<common::http_server>(server);
  register_routes();
}

queen_app::~queen_app() {
  shutdown();
}

void queen_app::start() {
  server_->start();
  if (options_.public_url.empty()) {
    std::string host = common::is_loopback(options_.host) || options_.host == "0.0.0.0"
                           ? "127.0.0.1"
                           : options_.host;
    hives_->set_queen_url("http://" + host + ":" + std::to_string(server_->port()));
  }
  hives_->start_monitor();
  spdlog::info("queen-rbee {} listening on {} (registry {})", common::version_string(),
               server_->base_url(), options_.database.string());
}

int queen_app::run_until_stopped() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  timespec tick{0, 200'000'000};
  while (!shutdown_requested_) {
    int sig = sigtimedwait(&set, nullptr, &tick);
    if (sig == SIGTERM || sig == SIGINT) {
      spdlog::info("signal {}: shutting down", sig);
      break;
    }
  }
  shutdown();
  return 0;
}

void queen_app::shutdown() {
  if (stopped_) return;
  stopped_ = true;
  shutting_down_ = true;
  tasks_->cancel_all(5s);
  server_->stop();
  hives_->stop_monitor();
  hives_->stop_started_hives(30s);
  hives_->close_ssh_masters();
  spdlog::info("queen-rbee stopped");
}

void queen_app::register_routes() {
  services_ =
      std::make_unique<queen_services>(queen_services{.nodes = *registry_,
                                                      .sched = *scheduler_,
                                                      .hives = *hives_,
                                                      .tasks = *tasks_,
                                                      .ssh = *ssh_,
                                                      .ssh_config = ssh_->options(),
                                                      .metrics = metrics_,
                                                      .clock = clock_,
                                                      .bin_dir = options_.bin_dir,
                                                      .api_keys = options_.api_keys,
                                                      .shutting_down = shutting_down_,
                                                      .shutdown_requested = shutdown_requested_});
  routes_ = std::make_unique<route_table>(*server_, metrics_);
  admin_ = std::make_unique<admin_routes>(*services_);
  registry_routes_ = std::make_unique<registry_routes>(*services_);
  worker_routes_ = std::make_unique<worker_routes>(*services_);
  task_routes_ = std::make_unique<task_routes>(*services_);
  openai_routes_ = std::make_unique<openai_routes>(*services_);
  dashboard_routes_ = std::make_unique<dashboard_routes>(*services_);
  admin_->add_to(*server_, *routes_);
  registry_routes_->add_to(*routes_);
  worker_routes_->add_to(*routes_);
  task_routes_->add_to(*routes_);
  openai_routes_->add_to(*routes_);
  dashboard_routes_->add_to(*routes_);
}

}  // namespace rbee::queen
