#include "worker/worker_state.h"

namespace rbee::worker {

std::string_view to_string(worker_state state) {
  switch (state) {
    case worker_state::loading:
      return "loading";
    case worker_state::idle:
      return "idle";
    case worker_state::busy:
      return "busy";
    case worker_state::draining:
      return "draining";
    case worker_state::error:
      return "error";
    case worker_state::stopped:
      return "stopped";
  }
  return "unknown";
}

std::string_view health_status(worker_state state) {
  switch (state) {
    case worker_state::loading:
      return "loading";
    case worker_state::idle:
    case worker_state::busy:
    case worker_state::draining:
      return "healthy";
    case worker_state::error:
    case worker_state::stopped:
      return "unhealthy";
  }
  return "unhealthy";
}

}  // namespace rbee::worker
