#include "common/log.h"

#include <openssl/evp.h>

#include <cstdlib>
#include <memory>
#include <stdexcept>

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "common/config.h"

namespace rbee::common {

void init_logging(std::string_view program, std::optional<std::string> level) {
  if (!level) {
    level = env_value("log").value_or("info");
  }
  // Not registered by name, so calling this again (tests, re-init) replaces the logger cleanly.
  auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>(std::string(program), sink));
  spdlog::set_pattern(std::string("%Y-%m-%dT%H:%M:%S.%e %^%l%$ ") + std::string(program) + " %v");
  auto parsed = spdlog::level::from_str(*level);
  // from_str maps unknown names to off; only "off" itself may mean off.
  if (parsed == spdlog::level::off && *level != "off") {
    spdlog::set_level(spdlog::level::info);
    spdlog::warn("unknown log level '{}' (RBEE_LOG), using info", *level);
  } else {
    spdlog::set_level(parsed);
  }
  spdlog::flush_on(spdlog::level::info);
}

std::string sha256_hex(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha256(), nullptr) != 1) {
    throw std::runtime_error("SHA-256 failed (OpenSSL EVP_Digest)");
  }
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(len * 2);
  for (unsigned int i = 0; i < len; ++i) {
    out.push_back(hex[digest[i] >> 4]);
    out.push_back(hex[digest[i] & 0xf]);
  }
  return out;
}

std::string token_fingerprint(std::string_view token) {
  if (token.empty()) return "none";
  return sha256_hex(token).substr(0, 8);
}

}  // namespace rbee::common
