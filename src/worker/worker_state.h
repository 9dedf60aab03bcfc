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

#include "api/worker_record.h"

namespace rbee::worker {

using api::worker_state;

// The /v1/health status: "loading", "healthy" or "unhealthy".
std::string_view health_status(worker_state state);

}  // namespace rbee::worker
