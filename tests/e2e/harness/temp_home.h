#pragma once
// A throw-away RBEE_HOME per test: /tmp/rbee-test-XXXXXX, removed in the destructor unless
// RBEE_KEEP_TEST_DIRS is set (then its path is printed for post-mortems).

#include <filesystem>
#include <string>

namespace rbee::e2e {

class temp_home {
 public:
  temp_home();
  ~temp_home();
  temp_home(const temp_home&) = delete;
  temp_home& operator=(const temp_home&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::string str() const { return path_.string(); }
  // path()/relative, creating its parent directories.
  std::filesystem::path file(const std::filesystem::path& relative) const;
  std::filesystem::path logs_dir() const { return path_ / "logs"; }

 private:
  std::filesystem::path path_;
};

}  // namespace rbee::e2e
