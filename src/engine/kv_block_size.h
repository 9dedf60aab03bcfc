#pragma once
// The positions of one block of the paged KV cache (engine.h, docs/kv-cache.md), in a header
// of its own so that device code (cuda/ops.h) uses the same constant without the engine's API.

namespace rbee::engine {

inline constexpr int kv_block_size = 16;

}  // namespace rbee::engine
