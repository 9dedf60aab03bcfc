#pragma once
// Logging: spdlog to stderr, level from RBEE_LOG (trace|debug|info|warn|error|off).

#include <optional>
#include <string>
#include <string_view>

namespace rbee::common {

// Sets the default spdlog logger to a stderr logger named after the program. level overrides
// RBEE_LOG; an unknown level name falls back to info with a warning.
void init_logging(std::string_view program, std::optional<std::string> level = std::nullopt);

// First 8 hex chars of SHA-256(token): the only form in which a token may be logged.
// Empty token -> "none".
std::string token_fingerprint(std::string_view token);

// Lower-case hex SHA-256 of data.
std::string sha256_hex(std::string_view data);

}  // namespace rbee::common
