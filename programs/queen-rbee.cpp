// queen-rbee: the orchestrator daemon (SPEC §1-§3). Parses flags, builds the app, runs it.
#include <cstdio>
#include <iostream>

#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include "common/config.h"
#include "common/log.h"
#include "common/version.h"
#include "queen/queen_app.h"

int main(int argc, char** argv) {
  CLI::App app{"queen-rbee: rbee's orchestrator (node registry, scheduler, task API)"};
  app.set_version_flag("--version", "queen-rbee " + rbee::common::version_string());
  std::string addr;
  std::string database;
  std::string public_url;
  int hive_port = 0;
  int queue_size = 0;
  int max_workers = 1;
  int slots = 0;
  int max_replicas = 0;
  std::string placement;
  int queue_timeout_s = 300;
  int hive_connect_timeout_s = 10;
  app.add_option("--addr", addr, "HOST:PORT to listen on (default from config: 127.0.0.1:8080)");
  app.add_option("--database", database, "Node registry file (default $RBEE_HOME/beehives.db)");
  app.add_option("--public-url", public_url, "URL hives use to reach the queen");
  app.add_option("--hive-port", hive_port, "Port of the hives this queen starts (default 9200)");
  app.add_option("--queue-size", queue_size, "Tasks that may wait for a slot (default 64)")
      ->check(CLI::Range(1, 100000));
  app.add_option("--max-workers-per-model", max_workers,
                 "Workers of one model per device (default 1)")
      ->check(CLI::Range(1, 64));
  app.add_option("--max-replicas", max_replicas,
                 "Workers of one model across the fleet (default from config: 2)")
      ->check(CLI::Range(1, 1024));
  app.add_option("--placement", placement,
                 "Where new workers go: spread or binpack (default from config: spread)")
      ->check(CLI::IsMember({"spread", "binpack"}));
  app.add_option("--slots-per-worker", slots,
                 "Cap on concurrent tasks per worker (default: what the hive reports)")
      ->check(CLI::Range(0, 256));
  app.add_option("--queue-timeout", queue_timeout_s, "Seconds a task may wait in the queue")
      ->check(CLI::Range(1, 86400));
  app.add_option("--hive-connect-timeout", hive_connect_timeout_s,
                 "Seconds of each of the 3 attempts to reach a hive after starting it")
      ->check(CLI::Range(1, 600));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  try {
    auto config = rbee::common::config::load();
    rbee::common::init_logging("queen-rbee", config.log_level());
    rbee::queen::queen_options options;
    options.host = config.queen_host();
    options.port = config.queen_port();
    if (!addr.empty()) {
      auto colon = addr.rfind(':');
      if (colon == std::string::npos) {
        std::cerr << "error: --addr must be HOST:PORT\n";
        return 2;
      }
      options.host = addr.substr(0, colon);
      options.port = std::stoi(addr.substr(colon + 1));
    }
    options.rbee_home = config.rbee_home();
    options.database = database;
    options.api_keys = config.api_keys();
    options.public_url = public_url;
    options.local_hive_port = hive_port > 0 ? hive_port : config.hive_port();
    options.remote_hive_port = config.hive_port();
    options.queue_size = static_cast<size_t>(queue_size > 0 ? queue_size : config.queue_size());
    options.max_workers_per_model = max_workers;
    options.slots_per_worker = slots;
    options.max_replicas = max_replicas > 0 ? max_replicas : config.max_replicas();
    options.placement =
        *rbee::queen::parse_placement_policy(placement.empty() ? config.placement() : placement);
    options.replica_queue_threshold = static_cast<size_t>(config.replica_queue_threshold());
    options.max_slots_per_client = config.max_slots_per_client();
    options.max_failovers = config.max_failovers();
    options.stall_timeout = config.stall_timeout();
    for (const auto& [model, fields] : config.model_settings()) {
      auto field = [&](const char* name, int fallback) {
        auto it = fields.find(name);
        return it == fields.end() ? fallback : static_cast<int>(it->second);
      };
      options.models[model] = {.ctx = field("ctx", 0),
                               .slots = field("slots", 0),
                               .keep_alive_s = field("keep_alive_s", -1),
                               .max_replicas = field("max_replicas", 0)};
    }
    options.queue_timeout = std::chrono::seconds(queue_timeout_s);
    options.loading_timeout = config.loading_timeout();
    options.hive_connect_timeout = std::chrono::seconds(hive_connect_timeout_s);
    options.hf_endpoint = config.hf_endpoint();
    options.connection_limits = config.connection_limits();
    options.hf_token = config.hf_token().value_or("");
    rbee::queen::queen_app::block_signals();
    rbee::queen::queen_app queen(options);
    queen.start();
    return queen.run_until_stopped();
  } catch (const std::exception& e) {
    spdlog::error("queen-rbee: {}", e.what());
    std::cerr << "queen-rbee: " << e.what() << "\n";
    return 1;
  }
}
