#pragma once
// The worker's lifecycle, reported as structured JSON (/v1/health, /v1/ready), never scraped
// from logs.
//
//   loading ──ok──> idle <──> busy        (busy while at least one slot generates)
//      │              │        │
//    fail        shutdown   shutdown
//      v              v        v
//    error         draining ───────> stopped
//      │                  (streams ended, model freed)
//      └──> (reported for a moment, then exit 1)

#include <string_view>

namespace rbee::worker {

enum class worker_state { loading, idle, busy, draining, error, stopped };

std::string_view to_string(worker_state state);

// The /v1/health status: "loading", "healthy" or "unhealthy".
std::string_view health_status(worker_state state);

}  // namespace rbee::worker
