#pragma once
// Everything a hive daemon is configured with. Every key (and its environment variable) is
// owned by common::config (config.h: hive.*, worker.*, hf.*); `rbee-hive daemon` flags may
// override the result.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "common/config.h"
#include "hive/capabilities.h"
#include "hive/downloader.h"
#include "hive/preflight.h"

namespace rbee::hive {

struct hive_config {
  std::filesystem::path home;  // $RBEE_HOME
  std::string host = "0.0.0.0";
  int port = 9200;
  std::string token;           // required for a non-loopback bind
  std::string queen_url;       // "" = no reporting
  std::string node_name;       // default: host name
  std::string advertise_host;  // host in URLs given out; default: derived from host
  download_options download;
  resource_limits limits;
  std::string worker_binary;  // default: llm-worker-rbee next to this executable
  int worker_port_start = 8001;
  int worker_threads = 0;
  std::vector<std::string> worker_extra_args;  // appended to every worker's command line
  sizing_limits sizing;  // how workers are sized when a spawn request leaves it to the hive
  std::chrono::milliseconds health_interval{30000};
  int health_failures = 3;
  std::chrono::milliseconds loading_timeout{300000};
  std::chrono::milliseconds idle_timeout{300000};
  std::chrono::milliseconds stop_grace{30000};
  std::chrono::milliseconds report_interval{15000};
  common::connection_limits connection_limits{};
};

// The hive's settings from the config (defaults < file < env). Throws common::config_error for
// malformed values.
hive_config load_hive_config(const common::config& cfg);

// The hive token: hive.token ($RBEE_HIVE_TOKEN), else the 0600 file hive.token_file
// ($RBEE_HIVE_TOKEN_FILE), else $RBEE_HOME/secrets/hive-token when it exists; "" when none.
std::string load_hive_token(const common::config& cfg, const std::filesystem::path& home);

// The first non-loopback IPv4 address of an up interface; "127.0.0.1" when there is none.
std::string primary_ipv4();
std::string host_name();

}  // namespace rbee::hive
