#include "hive/hive_config.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <unistd.h>

#include <array>
#include <cstdlib>

#include "common/paths.h"
#include "common/process.h"
#include "common/secrets.h"

namespace rbee::hive {
namespace {

constexpr std::array<env_key, 9> keys = {{
    {"RBEE_HIVE_TOKEN", "Bearer token the hive requires (and sends to the queen); secret."},
    {"RBEE_HIVE_TOKEN_FILE",
     "File (mode 0600) holding the hive token, when RBEE_HIVE_TOKEN is unset."},
    {"RBEE_WORKER_BINARY", "Path of llm-worker-rbee (default: next to rbee-hive)."},
    {"RBEE_DISK_LIMIT", "Pretend this many bytes are free for models (overrides statvfs; tests)."},
    {"RBEE_DOWNLOAD_ATTEMPTS", "Download attempts before DOWNLOAD_FAILED (default 6)."},
    {"RBEE_DOWNLOAD_BACKOFF_MS", "First retry delay of a download in ms, doubling (default 1000)."},
    {"RBEE_DOWNLOAD_STALL_S",
     "Seconds below 1 B/s after which a download attempt is dropped (default 60)."},
    {"RBEE_HIVE_REPORT_INTERVAL_MS",
     "Heartbeat interval of reports to the queen in ms (default 15000)."},
    {"RBEE_WORKER_STOP_GRACE_MS",
     "Grace before a stopping worker is killed, in ms (default 30000)."},
}};

std::optional<std::string> env(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return std::nullopt;
  return std::string(v);
}

int64_t env_int(const char* name, int64_t def, int64_t min, int64_t max) {
  auto v = env(name);
  if (!v) return def;
  try {
    size_t used = 0;
    int64_t n = std::stoll(*v, &used);
    if (used != v->size() || n < min || n > max) throw std::out_of_range(*v);
    return n;
  } catch (const std::logic_error&) {
    throw common::config_error(std::string(name) + "=" + *v + " is not an integer in [" +
                               std::to_string(min) + ", " + std::to_string(max) + "]");
  }
}

}  // namespace

std::span<const env_key> hive_env_keys() {
  return keys;
}

std::string load_hive_token(const std::filesystem::path& home) {
  if (auto t = env("RBEE_HIVE_TOKEN")) return *t;
  if (auto f = env("RBEE_HIVE_TOKEN_FILE")) return common::read_secret_file(*f);
  auto default_file = home / "secrets" / "hive-token";
  std::error_code ec;
  if (std::filesystem::exists(default_file, ec)) return common::read_secret_file(default_file);
  return "";
}

std::string primary_ipv4() {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return "127.0.0.1";
  std::string found = "127.0.0.1";
  for (ifaddrs* a = list; a; a = a->ifa_next) {
    if (!a->ifa_addr || a->ifa_addr->sa_family != AF_INET) continue;
    if (!(a->ifa_flags & IFF_UP) || (a->ifa_flags & IFF_LOOPBACK)) continue;
    char buf[INET_ADDRSTRLEN] = {};
    auto* sin = reinterpret_cast<sockaddr_in*>(a->ifa_addr);
    if (inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof buf)) {
      found = buf;
      break;
    }
  }
  freeifaddrs(list);
  return found;
}

std::string host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0 || !buf[0]) return "localhost";
  return buf;
}

hive_config load_hive_config(const common::config& cfg) {
  hive_config c;
  c.home = cfg.rbee_home();
  c.host = cfg.hive_host();
  c.port = cfg.hive_port();
  c.download.hf_endpoint = cfg.hf_endpoint();
  c.download.hf_token = cfg.hf_token();
  c.download.attempts = static_cast<int>(env_int("RBEE_DOWNLOAD_ATTEMPTS", 6, 1, 100));
  c.download.backoff_base =
      std::chrono::milliseconds(env_int("RBEE_DOWNLOAD_BACKOFF_MS", 1000, 0, 600000));
  c.download.stall_timeout = std::chrono::seconds(env_int("RBEE_DOWNLOAD_STALL_S", 60, 1, 3600));
  c.limits.ram_free_bytes = cfg.ram_limit_bytes();
  c.limits.vram_free_bytes = cfg.vram_limit_bytes();
  if (env("RBEE_DISK_LIMIT")) {
    c.limits.disk_free_bytes = static_cast<uint64_t>(env_int("RBEE_DISK_LIMIT", 0, 0, INT64_MAX));
  }
  c.worker_binary =
      env("RBEE_WORKER_BINARY")
          .value_or(
              (std::filesystem::path(common::self_executable_dir()) / "llm-worker-rbee").string());
  c.worker_port_start = cfg.worker_port_start();
  c.health_interval = cfg.hive_health_interval();
  c.health_failures = cfg.hive_health_failures();
  c.loading_timeout = cfg.loading_timeout();
  c.idle_timeout = cfg.worker_idle_timeout();
  c.stop_grace = std::chrono::milliseconds(env_int("RBEE_WORKER_STOP_GRACE_MS", 30000, 0, 3600000));
  c.report_interval =
      std::chrono::milliseconds(env_int("RBEE_HIVE_REPORT_INTERVAL_MS", 15000, 100, 3600000));
  c.node_name = host_name();
  return c;
}

}  // namespace rbee::hive
