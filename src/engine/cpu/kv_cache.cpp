#include "engine/cpu/kv_cache.h"

#include <cassert>

namespace rbee::engine {

kv_cache::kv_cache(int n_layer, int n_head_kv, int head_dim, int n_ctx, int n_seq, bool f16)
    : n_layer_(n_layer),
      n_head_kv_(n_head_kv),
      head_dim_(head_dim),
      n_ctx_(n_ctx),
      n_seq_(n_seq),
      f16_(f16),
      // Not zeroed: a position is always written before it is read.
      data_(std::make_unique_for_overwrite<uint8_t[]>(
          bytes_needed(n_layer, n_head_kv * head_dim, n_ctx, n_seq, f16))) {}

uint64_t kv_cache::bytes_needed(int n_layer, int kv_dim, int n_ctx, int n_seq, bool f16) {
  return 2ull * static_cast<uint64_t>(n_layer) * static_cast<uint64_t>(n_seq) *
         static_cast<uint64_t>(n_ctx) * static_cast<uint64_t>(kv_dim) * (f16 ? 2 : 4);
}

size_t kv_cache::offset(int kv, int layer, int seq, int head) const {
  assert(layer >= 0 && layer < n_layer_ && seq >= 0 && seq < n_seq_ && head >= 0 &&
         head < n_head_kv_ && "kv_cache index out of range");
  const size_t row = static_cast<size_t>(n_ctx_) * static_cast<size_t>(head_dim_);
  const size_t idx = ((static_cast<size_t>(kv) * n_layer_ + static_cast<size_t>(layer)) * n_seq_ +
                      static_cast<size_t>(seq)) *
                         n_head_kv_ +
                     static_cast<size_t>(head);
  return idx * row * element_bytes();
}

}  // namespace rbee::engine
