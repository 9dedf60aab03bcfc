#pragma once
// The communicators (communicator.h) of tensor-parallel parts on GPUs: parts on one device
// add on that device (device_communicator.cpp); parts on different devices all-reduce with
// NCCL, loaded at run time (nccl_communicator.cpp).
#include <memory>
#include <vector>

#include "engine/communicator.h"

namespace rbee::engine::cuda {

std::unique_ptr<communicator> make_same_device_communicator(int device, int n_ranks);
// engine_error(backend_unavailable) when libnccl.so.2 cannot be loaded (nccl_api.h).
std::unique_ptr<communicator> make_nccl_communicator(const std::vector<int>& devices);

}  // namespace rbee::engine::cuda
