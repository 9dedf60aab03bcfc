// The CUDA entry of a build without the CUDA backend (CMake compiles this file instead of
// cuda/engine_backend.cpp).
#include "engine/cuda/entry.h"
#include "engine/model.h"

namespace rbee::engine::cuda {

backend_maker backend_entry() {
  throw engine_error(error_code::backend_unavailable,
                     "this build has no CUDA backend (available backends: cpu)");
}

uint64_t free_bytes(int device) {
  throw engine_error(error_code::backend_unavailable,
                     str("device cuda:", device,
                         ": this build has no CUDA backend (available "
                         "backends: cpu)"));
}

std::unique_ptr<communicator> make_communicator(const std::vector<int>&) {
  throw engine_error(error_code::backend_unavailable,
                     "this build has no CUDA backend (available backends: cpu)");
}

std::string build_description() {
  return "no cuda";
}

}  // namespace rbee::engine::cuda
