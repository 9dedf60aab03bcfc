#pragma once
// The dashboard's static files (src/queen/dashboard), compiled into the queen by
// cmake/embed_files.cmake.

#include <span>
#include <string_view>

namespace rbee::queen {

struct embedded_file {
  std::string_view path;  // relative to src/queen/dashboard, e.g. "app.js"
  std::string_view bytes;
};

std::span<const embedded_file> dashboard_files();

}  // namespace rbee::queen
