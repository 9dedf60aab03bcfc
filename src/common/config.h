#pragma once
// The one module that owns every config key and environment variable (like Ollama's envconfig).
// Precedence: CLI flag (overrides) > env > config file > default. `rbee config keys` prints the
// table; docs/configuration.md lists it too. Not keys: RBEE_CONFIG (which file to read, below)
// and RBEE_CPU_ISA (read by the engine, which does not link common).
// Config file: $RBEE_CONFIG, else ~/.config/rbee/config.toml, else /etc/rbee/config.toml (the
// first that exists). Its format is a TOML subset: `key = "string"`, numbers, booleans, arrays
// of strings, `[section]` (keys become `section.key`) and `#` comments.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "common/connection_limits.h"

namespace rbee::common {

// What a [models.<id>] section of the config file may set for one model.
inline constexpr std::string_view model_setting_fields[] = {"ctx", "slots", "keep_alive_s",
                                                            "max_replicas"};

struct config_key {
  std::string_view name;           // "queen.url" (the file key; also the override key)
  std::string_view env_var;        // "RBEE_QUEEN_URL"; "" when there is none
  std::string_view default_value;  // "" = unset
  std::string_view doc;            // one line for `--help` and docs
  bool secret = false;             // a credential: never printed, never passed to a child in argv
};

// Every key rbee knows, in documentation order.
std::span<const config_key> config_keys();
const config_key* find_config_key(std::string_view name);

// A config file could not be read or parsed; what() names the file and line.
class config_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Parses the TOML subset; values are kept as strings (arrays joined with ','). `origin` names
// the file in errors. Throws config_error("<origin>:<line>: ...").
std::map<std::string, std::string> parse_config_text(std::string_view text,
                                                     std::string_view origin);

// Where config::load looks; every field is injectable for tests.
struct config_sources {
  // Lookup for environment variables; default reads the process environment.
  std::function<std::optional<std::string>(std::string_view)> getenv{};
  std::optional<std::filesystem::path> home_dir{};  // default: paths.h home_dir()
  std::filesystem::path system_config = "/etc/rbee/config.toml";
};

enum class config_source { flag, env, file, default_value, unset };
std::string_view to_string(config_source s);

class config {
 public:
  // overrides: key name -> value from CLI flags. Unknown keys (in overrides or the file) are a
  // config_error; so are values that fail their getter's parse when read.
  static config load(const std::map<std::string, std::string>& overrides = {},
                     const config_sources& sources = {});

  // Raw lookup by key name; nullopt when unset at every level. Throws std::out_of_range for
  // names not in config_keys() (a programming error).
  std::optional<std::string> get(std::string_view name) const;
  std::string get_or(std::string_view name, std::string_view fallback) const;
  int64_t get_int(std::string_view name) const;  // throws config_error if unset or not an int
  double get_double(std::string_view name) const;
  bool get_bool(std::string_view name) const;
  config_source source(std::string_view name) const;
  // The config file that was read; empty when none existed.
  const std::filesystem::path& file() const { return file_; }

  std::string queen_url() const;                // queen.url / RBEE_QUEEN_URL
  std::optional<std::string> api_key() const;   // api_key / RBEE_API_KEY (sent by the CLI)
  std::vector<std::string> api_keys() const;    // queen.api_keys + api_key (accepted by queen)
  std::filesystem::path rbee_home() const;      // home / RBEE_HOME, user-expanded
  std::string hf_endpoint() const;              // hf.endpoint / HF_ENDPOINT
  std::optional<std::string> hf_token() const;  // hf.token / HF_TOKEN
  std::string queen_host() const;
  int queen_port() const;
  std::string hive_host() const;
  int hive_port() const;
  int worker_port_start() const;
  std::chrono::seconds worker_idle_timeout() const;
  std::chrono::seconds hive_health_interval() const;
  int hive_health_failures() const;
  std::chrono::seconds loading_timeout() const;
  int queue_size() const;
  std::string placement() const;  // queen.placement: "spread" or "binpack"
  int max_replicas() const;
  int replica_queue_threshold() const;
  int max_slots_per_client() const;
  int max_failovers() const;
  std::chrono::seconds stall_timeout() const;
  int worker_max_ctx() const;
  int worker_max_slots() const;
  int worker_max_slots_cpu() const;
  // Per-model settings of the config file ([models.<id>] sections): model id -> field -> value,
  // fields among model_setting_fields.
  const std::map<std::string, std::map<std::string, int64_t>>& model_settings() const {
    return model_settings_;
  }
  std::optional<uint64_t> ram_limit_bytes() const;               // overrides detected free RAM
  std::optional<uint64_t> vram_limit_bytes() const;              // overrides detected free VRAM
  common::connection_limits connection_limits() const;           // server.*
  std::string log_level() const;                                 // log / RBEE_LOG
  std::optional<std::string> hive_token() const;                 // hive.token / RBEE_HIVE_TOKEN
  std::optional<std::filesystem::path> hive_token_file() const;  // user-expanded
  std::chrono::milliseconds hive_report_interval() const;
  int download_attempts() const;
  std::chrono::milliseconds download_backoff() const;
  std::chrono::seconds download_stall_timeout() const;
  std::optional<uint64_t> disk_limit_bytes() const;            // overrides statvfs for models
  std::optional<std::filesystem::path> worker_binary() const;  // user-expanded
  std::optional<std::string> worker_token() const;             // worker.token / RBEE_WORKER_TOKEN
  std::chrono::milliseconds worker_stop_grace() const;

 private:
  struct entry {
    std::string value;
    config_source source;
  };
  std::map<std::string, entry, std::less<>> values_;
  std::map<std::string, std::map<std::string, int64_t>> model_settings_;
  std::filesystem::path file_;
};

// One key's environment variable from the process environment (nullopt when unset or empty),
// for the few readers that run before or without a config (logging, paths). Throws
// std::out_of_range for names not in config_keys().
std::optional<std::string> env_value(std::string_view name);
// The environment variable of a key, for setting it in a child's environment (secrets travel
// there, never in argv). Throws std::out_of_range for unknown keys or keys without one.
std::string env_var_for(std::string_view name);

// Which file config::load would read (nullopt when none exists).
std::optional<std::filesystem::path> find_config_file(const config_sources& sources);

}  // namespace rbee::common
