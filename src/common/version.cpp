#include "common/version.h"

#include <charconv>

#include "common/config.h"

#include "rbee_version_generated.h"

namespace rbee::common {

std::string semver::to_string() const {
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
}

semver current_version() {
  // Read once: a daemon reports one version for its whole life. The override lets one build
  // play an older or newer release in the version-compatibility scenarios.
  static const semver version = [] {
    if (auto text = env_value("version_override")) {
      if (auto parsed = parse_semver(*text)) return *parsed;
      throw config_error("RBEE_VERSION_OVERRIDE=" + *text +
                         " is not a version (major.minor.patch)");
    }
    return semver{RBEE_VERSION_MAJOR, RBEE_VERSION_MINOR, RBEE_VERSION_PATCH};
  }();
  return version;
}

std::string version_string() {
  return current_version().to_string();
}

std::optional<semver> parse_semver(std::string_view text) {
  if (!text.empty() && (text.front() == 'v' || text.front() == 'V')) text.remove_prefix(1);
  if (auto cut = text.find_first_of("-+"); cut != std::string_view::npos) {
    text = text.substr(0, cut);
  }
  int parts[3];
  const char* p = text.data();
  const char* end = text.data() + text.size();
  for (int i = 0; i < 3; ++i) {
    if (p == end || *p < '0' || *p > '9') return std::nullopt;
    auto [next, ec] = std::from_chars(p, end, parts[i]);
    if (ec != std::errc()) return std::nullopt;
    p = next;
    if (i < 2) {
      if (p == end || *p != '.') return std::nullopt;
      ++p;
    }
  }
  if (p != end) return std::nullopt;
  return semver{parts[0], parts[1], parts[2]};
}

bool compatible(semver a, semver b) {
  return a.major == b.major && a.minor == b.minor;
}

}  // namespace rbee::common
