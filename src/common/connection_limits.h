#pragma once
// The limits every daemon's HTTP server applies to its connections (http_connections.h);
// set from config keys server.* (config.h).

#include <chrono>
#include <cstddef>

namespace rbee::common {

struct connection_limits {
  size_t max_connections = 4096;                           // all clients together
  size_t max_connections_per_client = 256;                 // one remote address
  std::chrono::milliseconds request_read_timeout{30'000};  // first byte to the handler
  std::chrono::milliseconds idle_timeout{5'000};           // between requests (keep-alive)
  std::chrono::milliseconds write_timeout{5'000};          // a peer that stops reading
};

}  // namespace rbee::common
