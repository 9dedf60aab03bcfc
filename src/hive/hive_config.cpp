#include "hive/hive_config.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <unistd.h>

#include "common/paths.h"
#include "common/process.h"
#include "common/secrets.h"

namespace rbee::hive {

std::string load_hive_token(const common::config& cfg, const std::filesystem::path& home) {
  if (auto t = cfg.hive_token()) return *t;
  if (auto f = cfg.hive_token_file()) return common::read_secret_file(*f);
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
  c.connection_limits = cfg.connection_limits();
  c.download.hf_endpoint = cfg.hf_endpoint();
  c.download.hf_token = cfg.hf_token();
  c.download.attempts = cfg.download_attempts();
  c.download.backoff_base = cfg.download_backoff();
  c.download.stall_timeout = cfg.download_stall_timeout();
  c.limits.ram_free_bytes = cfg.ram_limit_bytes();
  c.limits.vram_free_bytes = cfg.vram_limit_bytes();
  c.limits.disk_free_bytes = cfg.disk_limit_bytes();
  c.worker_binary =
      cfg.worker_binary()
          .value_or(std::filesystem::path(common::self_executable_dir()) / "llm-worker-rbee")
          .string();
  c.worker_port_start = cfg.worker_port_start();
  c.health_interval = cfg.hive_health_interval();
  c.health_failures = cfg.hive_health_failures();
  c.loading_timeout = cfg.loading_timeout();
  c.idle_timeout = cfg.worker_idle_timeout();
  c.sizing = {.max_ctx = cfg.worker_max_ctx(),
              .max_slots = cfg.worker_max_slots(),
              .max_slots_cpu = cfg.worker_max_slots_cpu()};
  c.stop_grace = cfg.worker_stop_grace();
  c.report_interval = cfg.hive_report_interval();
  c.node_name = host_name();
  return c;
}

}  // namespace rbee::hive
