#include "common/config.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/paths.h"

namespace rbee::common {

namespace {

constexpr config_key keys[] = {
    {"home", "RBEE_HOME", "~/.rbee", "State directory: databases, models, logs, secrets."},
    {"log", "RBEE_LOG", "info", "Log level: trace, debug, info, warn, error or off."},
    {"version_override", "RBEE_VERSION_OVERRIDE", "",
     "Report this version instead of the built one (compatibility tests of mixed releases)."},
    {"api_key", "RBEE_API_KEY", "",
     "API token: the CLI sends it to the queen; the queen accepts it.", true},
    {"queen.url", "RBEE_QUEEN_URL", "http://127.0.0.1:8080", "Where the CLI finds the queen."},
    {"queen.host", "RBEE_QUEEN_HOST", "127.0.0.1", "Address the queen listens on."},
    {"queen.port", "RBEE_QUEEN_PORT", "8080", "Port the queen listens on."},
    {"queen.api_keys", "RBEE_API_KEYS", "",
     "Extra client tokens the queen accepts (comma-separated, or a TOML string array).", true},
    {"queen.queue_size", "RBEE_QUEUE_SIZE", "64",
     "Tasks the queen queues per model before answering 503 QUEUE_FULL."},
    {"queen.placement", "RBEE_PLACEMENT", "spread",
     "Where new workers go among devices that fit: spread (most free memory) or binpack "
     "(least free memory that fits)."},
    {"queen.max_replicas", "RBEE_MAX_REPLICAS", "2",
     "Workers of one model across the fleet; another starts when all are busy and tasks queue."},
    {"queen.replica_queue_threshold", "RBEE_REPLICA_QUEUE_THRESHOLD", "2",
     "Tasks of a model waiting before the queen starts another replica."},
    {"queen.max_slots_per_client", "RBEE_MAX_SLOTS_PER_CLIENT", "0",
     "Slots one API key may hold at once (its other tasks wait); 0 = no limit."},
    {"queen.max_failovers", "RBEE_MAX_FAILOVERS", "2",
     "Times one answer may move to another worker after losing its worker mid-stream; 0 = "
     "never (the answer ends with an error)."},
    {"queen.stall_timeout_s", "RBEE_STALL_TIMEOUT", "30",
     "Seconds without a byte or a token from a worker mid-answer before the queen takes it for "
     "lost and moves the answer (keep it above the 5 s keep-alive)."},
    {"hive.host", "RBEE_HIVE_HOST", "0.0.0.0",
     "Address the hive listens on (loopback for the built-in localhost node)."},
    {"hive.port", "RBEE_HIVE_PORT", "9200", "Port the hive listens on."},
    {"hive.health_interval_s", "RBEE_HIVE_HEALTH_INTERVAL", "30",
     "Seconds between the hive's worker health checks."},
    {"hive.health_failures", "RBEE_HIVE_HEALTH_FAILURES", "3",
     "Failed health checks in a row after which a worker is removed."},
    {"hive.token", "RBEE_HIVE_TOKEN", "",
     "Bearer token the hive requires and sends to the queen (secret: never in argv).", true},
    {"hive.token_file", "RBEE_HIVE_TOKEN_FILE", "",
     "File (mode 0600) holding the hive token when hive.token is unset; default "
     "$RBEE_HOME/secrets/hive-token when it exists."},
    {"hive.report_interval_ms", "RBEE_HIVE_REPORT_INTERVAL_MS", "15000",
     "Milliseconds between the hive's heartbeat reports to the queen."},
    {"hive.download_attempts", "RBEE_DOWNLOAD_ATTEMPTS", "6",
     "Download attempts of a model file before DOWNLOAD_FAILED."},
    {"hive.download_backoff_ms", "RBEE_DOWNLOAD_BACKOFF_MS", "1000",
     "First retry delay of a download in milliseconds; it doubles per attempt."},
    {"hive.download_stall_s", "RBEE_DOWNLOAD_STALL_S", "60",
     "Seconds below 1 B/s after which a download attempt is dropped."},
    {"hive.disk_limit_bytes", "RBEE_DISK_LIMIT", "",
     "Pretend this many bytes are free for models (overrides statvfs; for tests and caps)."},
    {"hive.ram_limit_bytes", "RBEE_RAM_LIMIT", "",
     "Pretend this many bytes of RAM are free (overrides detection; for tests and caps)."},
    {"hive.vram_limit_bytes", "RBEE_VRAM_LIMIT", "",
     "Pretend this many bytes of VRAM are free per GPU (overrides detection)."},
    {"worker.binary", "RBEE_WORKER_BINARY", "",
     "Path of llm-worker-rbee the hive starts (default: next to rbee-hive)."},
    {"worker.token", "RBEE_WORKER_TOKEN", "",
     "Bearer token a worker requires; its hive sets it per worker (secret: never in argv).", true},
    {"worker.port_start", "RBEE_WORKER_PORT_START", "8001",
     "First port tried for a worker; the next free one is used."},
    {"worker.idle_timeout_s", "RBEE_WORKER_IDLE_TIMEOUT", "300",
     "Seconds after a worker's last job ended (its health idle_ms) before its hive stops it."},
    {"worker.max_ctx", "RBEE_WORKER_MAX_CTX", "8192",
     "Context per slot of a new worker: the model's trained context, capped here."},
    {"worker.max_slots", "RBEE_WORKER_MAX_SLOTS", "16",
     "Slots of a new GPU worker: as many as fit in the device's free memory, up to this."},
    {"worker.max_slots_cpu", "RBEE_WORKER_MAX_SLOTS_CPU", "4",
     "Slots of a new CPU worker: as many as fit in free RAM, up to this (the cores are shared)."},
    {"worker.loading_timeout_s", "RBEE_LOADING_TIMEOUT", "300",
     "Seconds a worker may take to load its model before LOADING_TIMEOUT."},
    {"worker.stop_grace_ms", "RBEE_WORKER_STOP_GRACE_MS", "30000",
     "Milliseconds a stopping worker gets to drain before its hive kills it."},
    {"server.max_connections", "RBEE_MAX_CONNECTIONS", "4096",
     "Open connections a daemon serves at once; more get 503 SERVER_BUSY."},
    {"server.max_connections_per_client", "RBEE_MAX_CONNECTIONS_PER_CLIENT", "256",
     "Open connections one client address may hold; more get 429 TOO_MANY_CONNECTIONS."},
    {"server.request_timeout_ms", "RBEE_REQUEST_TIMEOUT_MS", "30000",
     "Time a client has to send a whole request (headers and body); then 408."},
    {"server.idle_timeout_ms", "RBEE_IDLE_TIMEOUT_MS", "5000",
     "Time a kept-alive connection may sit idle between requests before it is closed."},
    {"hf.endpoint", "HF_ENDPOINT", "https://huggingface.co", "Hugging Face hub base URL."},
    {"hf.token", "HF_TOKEN", "", "Hugging Face token for gated or private models.", true},
};

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

[[noreturn]] void fail(std::string_view origin, int line, const std::string& msg) {
  throw config_error(std::string(origin) + ":" + std::to_string(line) + ": " + msg);
}

bool valid_key_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-' || c == '.';
}

// Parses a quoted string starting at s[0] == '"'; returns the value and the rest after it.
std::string parse_quoted(std::string_view& s, std::string_view origin, int line) {
  std::string out;
  size_t i = 1;
  for (; i < s.size() && s[i] != '"'; ++i) {
    char c = s[i];
    if (c != '\\') {
      out.push_back(c);
      continue;
    }
    if (++i >= s.size()) break;
    switch (s[i]) {
      case 'n':
        out.push_back('\n');
        break;
      case 't':
        out.push_back('\t');
        break;
      case '"':
        out.push_back('"');
        break;
      case '\\':
        out.push_back('\\');
        break;
      default:
        fail(origin, line, std::string("unsupported escape '\\") + s[i] + "'");
    }
  }
  if (i >= s.size()) fail(origin, line, "unterminated string");
  s.remove_prefix(i + 1);
  return out;
}

// Rest of a line after a value may hold only whitespace and a comment.
void expect_line_end(std::string_view rest, std::string_view origin, int line) {
  rest = trim(rest);
  if (!rest.empty() && rest.front() != '#') {
    fail(origin, line, "unexpected text after value: '" + std::string(rest) + "'");
  }
}

std::string parse_value(std::string_view v, std::string_view origin, int line) {
  if (v.empty()) fail(origin, line, "missing value");
  if (v.front() == '"') {
    std::string out = parse_quoted(v, origin, line);
    expect_line_end(v, origin, line);
    return out;
  }
  if (v.front() == '\'') {
    auto end = v.find('\'', 1);
    if (end == std::string_view::npos) fail(origin, line, "unterminated string");
    expect_line_end(v.substr(end + 1), origin, line);
    return std::string(v.substr(1, end - 1));
  }
  if (v.front() == '[') {
    // Arrays of strings only (token lists); kept as one comma-joined value.
    std::string joined;
    v.remove_prefix(1);
    bool first = true;
    while (true) {
      v = trim(v);
      if (v.empty()) fail(origin, line, "unterminated array (arrays must fit on one line)");
      if (v.front() == ']') {
        v.remove_prefix(1);
        break;
      }
      if (v.front() != '"') fail(origin, line, "arrays may only hold double-quoted strings");
      std::string item = parse_quoted(v, origin, line);
      if (item.find(',') != std::string::npos) fail(origin, line, "array items may not hold ','");
      if (!first) joined.push_back(',');
      joined += item;
      first = false;
      v = trim(v);
      if (!v.empty() && v.front() == ',') v.remove_prefix(1);
    }
    expect_line_end(v, origin, line);
    return joined;
  }
  // Bare value: number or boolean, up to a comment.
  auto hash = v.find('#');
  std::string_view bare = trim(v.substr(0, hash));
  if (bare == "true" || bare == "false") return std::string(bare);
  std::string text(bare);
  text.erase(std::remove(text.begin(), text.end(), '_'), text.end());  // TOML 1_000
  char* end = nullptr;
  errno = 0;
  std::strtod(text.c_str(), &end);
  if (text.empty() || errno != 0 || *end != '\0') {
    fail(origin, line,
         "invalid value '" + std::string(bare) +
             "' (strings need quotes; numbers and true/false are bare)");
  }
  return text;
}

std::optional<std::string> process_getenv(std::string_view name) {
  const char* v = std::getenv(std::string(name).c_str());
  if (!v) return std::nullopt;
  return std::string(v);
}

struct model_setting {
  std::string model, field;
  int64_t value = 0;
};

// `models.<id>.<field> = N` from a `[models.<id>]` section; nullopt for other keys. The field
// follows the last dot, so ids may contain dots ("tinyllama-1.1b").
std::optional<model_setting> parse_model_setting(const std::string& name, const std::string& value,
                                                 const std::string& origin) {
  constexpr std::string_view prefix = "models.";
  if (!name.starts_with(prefix)) return std::nullopt;
  auto dot = name.rfind('.');
  model_setting s{name.substr(prefix.size(), dot - prefix.size()), name.substr(dot + 1), 0};
  if (dot < prefix.size() || s.model.empty()) {
    throw config_error(origin + ": '" + name + "' must be models.<model id>.<setting>");
  }
  auto known = std::find(std::begin(model_setting_fields), std::end(model_setting_fields), s.field);
  if (known == std::end(model_setting_fields)) {
    throw config_error(origin + ": unknown model setting '" + s.field + "' in '" + name +
                       "' (known: ctx, slots, keep_alive_s, max_replicas)");
  }
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), s.value);
  if (ec != std::errc() || end != value.data() + value.size() || s.value < 0 ||
      s.value > 1'000'000'000) {
    throw config_error(origin + ": '" + name + "' must be a non-negative integer, got '" + value +
                       "'");
  }
  return s;
}

}  // namespace

std::span<const config_key> config_keys() {
  return keys;
}

const config_key* find_config_key(std::string_view name) {
  for (const auto& k : keys) {
    if (k.name == name) return &k;
  }
  return nullptr;
}

std::string_view to_string(config_source s) {
  switch (s) {
    case config_source::flag:
      return "flag";
    case config_source::env:
      return "env";
    case config_source::file:
      return "file";
    case config_source::default_value:
      return "default";
    case config_source::unset:
      return "unset";
  }
  return "unknown";
}

std::map<std::string, std::string> parse_config_text(std::string_view text,
                                                     std::string_view origin) {
  std::map<std::string, std::string> out;
  std::string section;
  int line_no = 0;
  while (!text.empty()) {
    ++line_no;
    auto nl = text.find('\n');
    std::string_view line = trim(text.substr(0, nl));
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (line.empty() || line.front() == '#') continue;
    if (line.front() == '[') {
      auto close = line.find(']');
      if (close == std::string_view::npos) fail(origin, line_no, "unterminated section header");
      section = std::string(trim(line.substr(1, close - 1)));
      if (section.empty() || !std::all_of(section.begin(), section.end(), valid_key_char)) {
        fail(origin, line_no, "invalid section name '" + section + "'");
      }
      expect_line_end(line.substr(close + 1), origin, line_no);
      continue;
    }
    auto eq = line.find('=');
    if (eq == std::string_view::npos) fail(origin, line_no, "expected 'key = value'");
    std::string_view key = trim(line.substr(0, eq));
    if (key.empty() || !std::all_of(key.begin(), key.end(), valid_key_char)) {
      fail(origin, line_no, "invalid key '" + std::string(key) + "'");
    }
    std::string full = section.empty() ? std::string(key) : section + "." + std::string(key);
    if (out.contains(full)) fail(origin, line_no, "duplicate key '" + full + "'");
    out[full] = parse_value(trim(line.substr(eq + 1)), origin, line_no);
  }
  return out;
}

std::optional<std::filesystem::path> find_config_file(const config_sources& sources) {
  auto getenv = sources.getenv ? sources.getenv : process_getenv;
  if (auto explicit_path = getenv("RBEE_CONFIG"); explicit_path && !explicit_path->empty()) {
    // An explicitly named file must exist: silently ignoring it would hide typos.
    std::filesystem::path p = expand_user(*explicit_path);
    if (!std::filesystem::exists(p)) {
      throw config_error("RBEE_CONFIG names " + p.string() + ", which does not exist");
    }
    return p;
  }
  std::filesystem::path home = sources.home_dir ? *sources.home_dir : home_dir();
  auto user = home / ".config" / "rbee" / "config.toml";
  if (std::filesystem::exists(user)) return user;
  if (!sources.system_config.empty() && std::filesystem::exists(sources.system_config)) {
    return sources.system_config;
  }
  return std::nullopt;
}

config config::load(const std::map<std::string, std::string>& overrides,
                    const config_sources& sources) {
  auto getenv = sources.getenv ? sources.getenv : process_getenv;
  config c;
  for (const auto& k : keys) {
    if (!k.default_value.empty()) {
      c.values_[std::string(k.name)] = {std::string(k.default_value), config_source::default_value};
    }
  }
  if (auto file = find_config_file(sources)) {
    std::ifstream in(*file, std::ios::binary);
    if (!in) {
      throw config_error("cannot read config file " + file->string() + ": " + std::strerror(errno));
    }
    std::stringstream ss;
    ss << in.rdbuf();
    for (const auto& [name, value] : parse_config_text(ss.str(), file->string())) {
      if (auto setting = parse_model_setting(name, value, file->string())) {
        c.model_settings_[setting->model][setting->field] = setting->value;
        continue;
      }
      if (!find_config_key(name)) {
        throw config_error(file->string() + ": unknown key '" + name + "'");
      }
      c.values_[name] = {value, config_source::file};
    }
    c.file_ = *file;
  }
  for (const auto& k : keys) {
    if (k.env_var.empty()) continue;
    // An empty variable counts as unset, as `RBEE_API_KEY= rbee ...` users expect.
    if (auto v = getenv(k.env_var); v && !v->empty()) {
      c.values_[std::string(k.name)] = {*v, config_source::env};
    }
  }
  for (const auto& [name, value] : overrides) {
    if (!find_config_key(name)) throw config_error("unknown config key '" + name + "'");
    c.values_[name] = {value, config_source::flag};
  }
  return c;
}

std::optional<std::string> config::get(std::string_view name) const {
  if (!find_config_key(name)) {
    throw std::out_of_range("unknown config key '" + std::string(name) + "'");
  }
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return it->second.value;
}

std::string config::get_or(std::string_view name, std::string_view fallback) const {
  auto v = get(name);
  return v ? *v : std::string(fallback);
}

config_source config::source(std::string_view name) const {
  if (!find_config_key(name)) {
    throw std::out_of_range("unknown config key '" + std::string(name) + "'");
  }
  auto it = values_.find(name);
  return it == values_.end() ? config_source::unset : it->second.source;
}

namespace {

[[noreturn]] void bad_value(std::string_view name, const std::string& value,
                            std::string_view expected, config_source src) {
  const config_key* k = find_config_key(name);
  std::string where(to_string(src));
  if (src == config_source::env && k) where = "env " + std::string(k->env_var);
  throw config_error("config '" + std::string(name) + "' (from " + where + ") must be " +
                     std::string(expected) + ", got '" + value + "'");
}

}  // namespace

int64_t config::get_int(std::string_view name) const {
  auto v = get(name);
  if (!v) throw config_error("config '" + std::string(name) + "' is not set");
  int64_t out = 0;
  auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), out);
  if (ec != std::errc() || end != v->data() + v->size()) {
    bad_value(name, *v, "an integer", source(name));
  }
  return out;
}

double config::get_double(std::string_view name) const {
  auto v = get(name);
  if (!v) throw config_error("config '" + std::string(name) + "' is not set");
  char* end = nullptr;
  errno = 0;
  double d = std::strtod(v->c_str(), &end);
  if (v->empty() || errno != 0 || *end != '\0') bad_value(name, *v, "a number", source(name));
  return d;
}

bool config::get_bool(std::string_view name) const {
  auto v = get(name);
  if (!v) throw config_error("config '" + std::string(name) + "' is not set");
  if (*v == "true" || *v == "1" || *v == "yes" || *v == "on") return true;
  if (*v == "false" || *v == "0" || *v == "no" || *v == "off") return false;
  bad_value(name, *v, "a boolean", source(name));
}

namespace {

int64_t in_range(const config& c, std::string_view name, int64_t min, int64_t max) {
  int64_t v = c.get_int(name);
  if (v < min || v > max) {
    bad_value(name, std::to_string(v),
              "between " + std::to_string(min) + " and " + std::to_string(max), c.source(name));
  }
  return v;
}

}  // namespace

std::string config::queen_url() const {
  return get_or("queen.url", "");
}
std::optional<std::string> config::api_key() const {
  return get("api_key");
}

std::vector<std::string> config::api_keys() const {
  std::vector<std::string> out;
  if (auto list = get("queen.api_keys")) {
    std::string_view rest = *list;
    while (!rest.empty()) {
      auto comma = rest.find(',');
      auto item = trim(rest.substr(0, comma));
      if (!item.empty()) out.emplace_back(item);
      rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    }
  }
  if (auto key = api_key(); key && !key->empty()) out.push_back(*key);
  return out;
}

std::filesystem::path config::rbee_home() const {
  return expand_user(get_or("home", "~/.rbee"));
}
std::string config::hf_endpoint() const {
  return get_or("hf.endpoint", "");
}
std::optional<std::string> config::hf_token() const {
  return get("hf.token");
}
std::string config::queen_host() const {
  return get_or("queen.host", "");
}
int config::queen_port() const {
  return static_cast<int>(in_range(*this, "queen.port", 0, 65535));
}
std::string config::hive_host() const {
  return get_or("hive.host", "");
}
int config::hive_port() const {
  return static_cast<int>(in_range(*this, "hive.port", 0, 65535));
}
int config::worker_port_start() const {
  return static_cast<int>(in_range(*this, "worker.port_start", 1, 65535));
}
std::chrono::seconds config::worker_idle_timeout() const {
  return std::chrono::seconds(in_range(*this, "worker.idle_timeout_s", 1, INT32_MAX));
}
std::chrono::seconds config::hive_health_interval() const {
  return std::chrono::seconds(in_range(*this, "hive.health_interval_s", 1, INT32_MAX));
}
int config::hive_health_failures() const {
  return static_cast<int>(in_range(*this, "hive.health_failures", 1, 1000));
}
std::chrono::seconds config::loading_timeout() const {
  return std::chrono::seconds(in_range(*this, "worker.loading_timeout_s", 1, INT32_MAX));
}
std::string config::placement() const {
  auto policy = get_or("queen.placement", "spread");
  if (policy != "spread" && policy != "binpack") {
    bad_value("queen.placement", policy, "spread or binpack", source("queen.placement"));
  }
  return policy;
}
int config::max_replicas() const {
  return static_cast<int>(in_range(*this, "queen.max_replicas", 1, 1024));
}
int config::replica_queue_threshold() const {
  return static_cast<int>(in_range(*this, "queen.replica_queue_threshold", 1, 1'000'000));
}
int config::max_slots_per_client() const {
  return static_cast<int>(in_range(*this, "queen.max_slots_per_client", 0, 1'000'000));
}

int config::max_failovers() const {
  return static_cast<int>(in_range(*this, "queen.max_failovers", 0, 100));
}

std::chrono::seconds config::stall_timeout() const {
  return std::chrono::seconds(in_range(*this, "queen.stall_timeout_s", 1, 86'400));
}
int config::worker_max_ctx() const {
  return static_cast<int>(in_range(*this, "worker.max_ctx", 64, 1 << 22));
}
int config::worker_max_slots() const {
  return static_cast<int>(in_range(*this, "worker.max_slots", 1, 256));
}
int config::worker_max_slots_cpu() const {
  return static_cast<int>(in_range(*this, "worker.max_slots_cpu", 1, 256));
}

int config::queue_size() const {
  return static_cast<int>(in_range(*this, "queen.queue_size", 0, 1'000'000));
}
std::optional<uint64_t> config::ram_limit_bytes() const {
  if (!get("hive.ram_limit_bytes")) return std::nullopt;
  return static_cast<uint64_t>(in_range(*this, "hive.ram_limit_bytes", 0, INT64_MAX));
}
std::optional<uint64_t> config::vram_limit_bytes() const {
  if (!get("hive.vram_limit_bytes")) return std::nullopt;
  return static_cast<uint64_t>(in_range(*this, "hive.vram_limit_bytes", 0, INT64_MAX));
}
connection_limits config::connection_limits() const {
  common::connection_limits l;
  l.max_connections = static_cast<size_t>(in_range(*this, "server.max_connections", 1, 1'000'000));
  l.max_connections_per_client =
      static_cast<size_t>(in_range(*this, "server.max_connections_per_client", 1, 1'000'000));
  l.request_read_timeout =
      std::chrono::milliseconds(in_range(*this, "server.request_timeout_ms", 100, INT32_MAX));
  l.idle_timeout =
      std::chrono::milliseconds(in_range(*this, "server.idle_timeout_ms", 100, INT32_MAX));
  return l;
}
std::string config::log_level() const {
  return get_or("log", "info");
}
namespace {

// An empty value (`key = ""` in the file) counts as unset, as it does for env vars.
std::optional<std::string> non_empty(std::optional<std::string> v) {
  if (v && v->empty()) return std::nullopt;
  return v;
}

}  // namespace

std::optional<std::string> config::hive_token() const {
  return non_empty(get("hive.token"));
}
std::optional<std::filesystem::path> config::hive_token_file() const {
  auto v = non_empty(get("hive.token_file"));
  if (!v) return std::nullopt;
  return expand_user(*v);
}
std::chrono::milliseconds config::hive_report_interval() const {
  return std::chrono::milliseconds(in_range(*this, "hive.report_interval_ms", 100, 3'600'000));
}
int config::download_attempts() const {
  return static_cast<int>(in_range(*this, "hive.download_attempts", 1, 100));
}
std::chrono::milliseconds config::download_backoff() const {
  return std::chrono::milliseconds(in_range(*this, "hive.download_backoff_ms", 0, 600'000));
}
std::chrono::seconds config::download_stall_timeout() const {
  return std::chrono::seconds(in_range(*this, "hive.download_stall_s", 1, 3600));
}
std::optional<uint64_t> config::disk_limit_bytes() const {
  if (!get("hive.disk_limit_bytes")) return std::nullopt;
  return static_cast<uint64_t>(in_range(*this, "hive.disk_limit_bytes", 0, INT64_MAX));
}
std::optional<std::filesystem::path> config::worker_binary() const {
  auto v = non_empty(get("worker.binary"));
  if (!v) return std::nullopt;
  return expand_user(*v);
}
std::optional<std::string> config::worker_token() const {
  return non_empty(get("worker.token"));
}
std::chrono::milliseconds config::worker_stop_grace() const {
  return std::chrono::milliseconds(in_range(*this, "worker.stop_grace_ms", 0, 3'600'000));
}

std::string env_var_for(std::string_view name) {
  const config_key* k = find_config_key(name);
  if (!k || k->env_var.empty()) {
    throw std::out_of_range("config key '" + std::string(name) + "' has no environment variable");
  }
  return std::string(k->env_var);
}

std::optional<std::string> env_value(std::string_view name) {
  const config_key* k = find_config_key(name);
  if (!k) throw std::out_of_range("unknown config key '" + std::string(name) + "'");
  if (k->env_var.empty()) return std::nullopt;
  auto v = process_getenv(k->env_var);
  if (!v || v->empty()) return std::nullopt;
  return v;
}

}  // namespace rbee::common
