#include "common/paths.h"

#include <pwd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "common/config.h"

namespace rbee::common {

std::filesystem::path home_dir() {
  if (const char* home = std::getenv("HOME"); home && *home) return home;
  std::vector<char> buf(16384);
  passwd pw{};
  passwd* result = nullptr;
  if (getpwuid_r(::getuid(), &pw, buf.data(), buf.size(), &result) == 0 && result &&
      result->pw_dir && *result->pw_dir) {
    return result->pw_dir;
  }
  throw std::runtime_error("cannot determine the home directory: $HOME is unset and uid " +
                           std::to_string(::getuid()) + " has no passwd entry");
}

std::string expand_user(std::string_view path) {
  if (path == "~") return home_dir().string();
  if (path.starts_with("~/")) return (home_dir() / path.substr(2)).string();
  return std::string(path);
}

std::filesystem::path rbee_home() {
  if (auto env = env_value("home")) return expand_user(*env);
  return home_dir() / ".rbee";
}

std::filesystem::path models_dir(const std::filesystem::path& home) {
  return home / "models";
}
std::filesystem::path logs_dir(const std::filesystem::path& home) {
  return home / "logs";
}
std::filesystem::path models_dir() {
  return models_dir(rbee_home());
}
std::filesystem::path logs_dir() {
  return logs_dir(rbee_home());
}

const std::filesystem::path& ensure_dir(const std::filesystem::path& path, mode_t mode) {
  std::filesystem::path current;
  for (const auto& part : path) {
    current /= part;
    if (current.empty() || current == current.root_path()) continue;
    if (::mkdir(current.c_str(), mode) == 0) continue;
    if (errno != EEXIST) {
      throw std::runtime_error("cannot create directory " + current.string() + ": " +
                               std::strerror(errno));
    }
  }
  std::error_code ec;
  if (!std::filesystem::is_directory(path, ec)) {
    throw std::runtime_error("cannot use " + path.string() + " as a directory: " +
                             (ec ? ec.message() : std::string("exists and is not a directory")));
  }
  return path;
}

}  // namespace rbee::common
