#pragma once
// The CUDA backend as model_load sees it. A build with CUDA defines it in engine_backend.cpp;
// a build without defines it in engine/no_cuda.cpp (CMake compiles one of the two).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "engine/communicator.h"

namespace rbee::engine::cuda {

// The maker of CUDA backends; engine_error(backend_unavailable) when this build has none.
backend_maker backend_entry();
// Free memory of CUDA device `device`, for the layer split's plan; engine_error
// (backend_unavailable) listing the devices that exist when there is no such device.
uint64_t free_bytes(int device);
// The communicator of a tensor-parallel model's parts on these devices (one per part, in
// rank order; communicator.h).
std::unique_ptr<communicator> make_communicator(const std::vector<int>& devices);
// The CUDA part of this build: "cuda (sm 80-real 90-real)", the architectures its kernels
// were compiled for, or "no cuda".
std::string build_description();

}  // namespace rbee::engine::cuda
