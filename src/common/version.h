#pragma once
// rbee's version, from the CMake project version. Daemons are compatible when major.minor match.

#include <compare>
#include <optional>
#include <string>
#include <string_view>

namespace rbee::common {

struct semver {
  int major = 0;
  int minor = 0;
  int patch = 0;
  auto operator<=>(const semver&) const = default;
  std::string to_string() const;
};

// The built version, or RBEE_VERSION_OVERRIDE when set (config_error if it is not a version).
semver current_version();
std::string version_string();  // "0.1.0"

// "1.2.3" or "v1.2.3"; a "-pre"/"+build" suffix is accepted and ignored. nullopt otherwise.
std::optional<semver> parse_semver(std::string_view text);

// major.minor equal.
bool compatible(semver a, semver b);

}  // namespace rbee::common
