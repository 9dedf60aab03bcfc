// The CUDA entry of a build without the CUDA backend (CMake compiles this file instead of
// cuda/engine_backend.cpp).
#include "engine/cuda/entry.h"

namespace rbee::engine::cuda {

backend_maker backend_entry() {
  throw engine_error(error_code::backend_unavailable,
                     "this build has no CUDA backend (available backends: cpu)");
}

std::string build_description() {
  return "no cuda";
}

}  // namespace rbee::engine::cuda
