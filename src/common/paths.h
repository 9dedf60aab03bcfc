#pragma once
// Where rbee keeps its state (SPEC §1): $RBEE_HOME, default ~/.rbee.

#include <sys/stat.h>

#include <filesystem>
#include <string>
#include <string_view>

namespace rbee::common {

// $HOME, else the passwd entry; throws std::runtime_error when neither is known.
std::filesystem::path home_dir();
// "~" and "~/x" expand to home_dir(); other paths are returned unchanged.
std::string expand_user(std::string_view path);

std::filesystem::path rbee_home();   // $RBEE_HOME (user-expanded) else ~/.rbee
std::filesystem::path models_dir();  // rbee_home()/models
std::filesystem::path logs_dir();    // rbee_home()/logs
std::filesystem::path models_dir(const std::filesystem::path& home);
std::filesystem::path logs_dir(const std::filesystem::path& home);

// Creates path and its parents (each new one with mode); returns path. Throws
// std::runtime_error naming the path when it cannot, or when it exists as a non-directory.
const std::filesystem::path& ensure_dir(const std::filesystem::path& path, mode_t mode = 0755);

}  // namespace rbee::common
