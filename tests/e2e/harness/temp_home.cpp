#include "harness/temp_home.h"

#include <cstdlib>
#include <cstring>
#include <iostream>
#include <stdexcept>

namespace rbee::e2e {

temp_home::temp_home() {
  std::string pattern = "/tmp/rbee-test-XXXXXX";
  if (!::mkdtemp(pattern.data())) {
    throw std::runtime_error("temp_home: mkdtemp " + pattern + ": " + std::strerror(errno));
  }
  path_ = pattern;
  std::filesystem::create_directories(logs_dir());
}

temp_home::~temp_home() {
  if (const char* keep = std::getenv("RBEE_KEEP_TEST_DIRS"); keep && *keep) {
    std::cerr << "[temp_home] kept " << path_ << "\n";
    return;
  }
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
  if (ec) std::cerr << "[temp_home] cannot remove " << path_ << ": " << ec.message() << "\n";
}

std::filesystem::path temp_home::file(const std::filesystem::path& relative) const {
  auto p = path_ / relative;
  std::filesystem::create_directories(p.parent_path());
  return p;
}

}  // namespace rbee::e2e
