#pragma once
// The CPU backend: weights used in place from the mapping, the KV cache in host RAM
// (kv_cache.h) and the forward pass of the llama family on a thread pool (backend.cpp).
#include <memory>

#include "engine/backend.h"

namespace rbee::engine::cpu {

// Reads every weight page of the part now (reporting progress), so the first decode does not
// wait for the disk. The host is device 0 (model_load checks the devices a split names).
std::unique_ptr<backend> make_backend(const model& m, const model_params& params,
                                      const backend_part& part);

}  // namespace rbee::engine::cpu
