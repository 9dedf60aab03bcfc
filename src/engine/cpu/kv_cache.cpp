#include "engine/cpu/kv_cache.h"

#include <cassert>

#include "engine/engine.h"

namespace rbee::engine {

namespace {

// Rows a layer keeps per head: its rings, or the pool's blocks.
size_t layer_rows(int ring_rows, int n_seq, int n_blocks) {
  return ring_rows > 0 ? static_cast<size_t>(n_seq) * static_cast<size_t>(ring_rows)
                       : static_cast<size_t>(n_blocks) * kv_block_size;
}

}  // namespace

kv_cache::kv_cache(std::span<const int> ring_rows, int n_head_kv, int head_dim, int n_seq,
                   int n_blocks, bool f16)
    : ring_rows_(ring_rows.begin(), ring_rows.end()),
      n_head_kv_(n_head_kv),
      head_dim_(head_dim),
      n_seq_(n_seq),
      n_blocks_(n_blocks),
      f16_(f16),
      // Not zeroed: a position is written before it is used. The attention kernels read whole
      // tiles, and keep the results of written positions only.
      data_(std::make_unique_for_overwrite<uint8_t[]>(
          bytes_needed(ring_rows, n_head_kv * head_dim, n_seq, n_blocks, f16))) {
  layer_start_.push_back(0);
  for (const int rows : ring_rows_)
    layer_start_.push_back(layer_start_.back() + layer_rows(rows, n_seq, n_blocks) *
                                                     static_cast<size_t>(n_head_kv) * head_dim);
}

uint64_t kv_cache::bytes_needed(std::span<const int> ring_rows, int kv_dim, int n_seq, int n_blocks,
                                bool f16) {
  uint64_t rows = 0;
  for (const int r : ring_rows) rows += layer_rows(r, n_seq, n_blocks);
  return 2ull * rows * static_cast<uint64_t>(kv_dim) * (f16 ? 2 : 4);
}

uint8_t* kv_cache::at(int kv, int layer, int unit, int head) {
  assert(layer >= 0 && layer < static_cast<int>(ring_rows_.size()) && head >= 0 &&
         head < n_head_kv_ && unit >= 0 && unit < (paged(layer) ? n_blocks_ : n_seq_) &&
         "kv_cache index out of range");
  const int rows = paged(layer) ? kv_block_size : ring_rows(layer);
  const size_t head_elements = static_cast<size_t>(rows) * static_cast<size_t>(head_dim_);
  const size_t elements =
      static_cast<size_t>(kv) * layer_start_.back() + layer_start_[static_cast<size_t>(layer)] +
      (static_cast<size_t>(unit) * n_head_kv_ + static_cast<size_t>(head)) * head_elements;
  return data_.get() + elements * element_bytes();
}

}  // namespace rbee::engine
