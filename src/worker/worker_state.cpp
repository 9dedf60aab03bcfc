#include "worker/worker_state.h"

namespace rbee::worker {

std::string_view health_status(worker_state state) {
  switch (state) {
    case worker_state::loading:
      return "loading";
    case worker_state::idle:
    case worker_state::busy:
    case worker_state::draining:
      return "healthy";
    case worker_state::spawning:  // states of the hive's and the queen's views only
    case worker_state::stopping:
    case worker_state::error:
    case worker_state::stopped:
      return "unhealthy";
  }
  return "unhealthy";
}

}  // namespace rbee::worker
