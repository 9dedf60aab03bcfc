#include "engine/cpu/kv_cache.h"

#include <cassert>

namespace rbee::engine {

kv_cache::kv_cache(std::span<const int> layer_rows, int n_head_kv, int head_dim, int n_seq,
                   bool f16)
    : layer_rows_(layer_rows.begin(), layer_rows.end()),
      n_head_kv_(n_head_kv),
      head_dim_(head_dim),
      n_seq_(n_seq),
      f16_(f16),
      // Not zeroed: a position is always written before it is read.
      data_(std::make_unique_for_overwrite<uint8_t[]>(
          bytes_needed(layer_rows, n_head_kv * head_dim, n_seq, f16))) {
  layer_start_.push_back(0);
  for (const int rows : layer_rows_)
    layer_start_.push_back(layer_start_.back() + static_cast<size_t>(n_seq) * n_head_kv *
                                                     static_cast<size_t>(rows) * head_dim);
}

uint64_t kv_cache::bytes_needed(std::span<const int> layer_rows, int kv_dim, int n_seq, bool f16) {
  uint64_t rows = 0;
  for (const int r : layer_rows) rows += static_cast<uint64_t>(r);
  return 2ull * static_cast<uint64_t>(n_seq) * rows * static_cast<uint64_t>(kv_dim) * (f16 ? 2 : 4);
}

size_t kv_cache::offset(int kv, int layer, int seq, int head) const {
  assert(layer >= 0 && layer < static_cast<int>(layer_rows_.size()) && seq >= 0 && seq < n_seq_ &&
         head >= 0 && head < n_head_kv_ && "kv_cache index out of range");
  const size_t head_elements = static_cast<size_t>(rows(layer)) * static_cast<size_t>(head_dim_);
  const size_t elements =
      static_cast<size_t>(kv) * layer_start_.back() + layer_start_[static_cast<size_t>(layer)] +
      (static_cast<size_t>(seq) * n_head_kv_ + static_cast<size_t>(head)) * head_elements;
  return elements * element_bytes();
}

}  // namespace rbee::engine
