#pragma once
// The CPU backend: weights used in place from the mapping, the KV cache in host RAM
// (kv_cache.h) and the forward pass of the llama family on a thread pool (backend.cpp).
#include <memory>

#include "engine/backend.h"

namespace rbee::engine::cpu {

// Reads every weight page now (reporting progress), so the first decode does not wait for
// the disk.
std::unique_ptr<backend> make_backend(const model& m, const model_params& params);

}  // namespace rbee::engine::cpu
