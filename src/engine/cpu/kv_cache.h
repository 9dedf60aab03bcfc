#pragma once
// The CPU backend's KV cache: keys and values of every layer and KV head, F16 (default) or
// F32. Which positions a sequence holds, and in which blocks, is the context's record
// (context.cpp, kv_blocks.h), not the cache's.
// A full-attention layer keeps the pool's blocks: [layer][block][kv_head] tiles of
// kv_block_size rows of head_dim elements. A layer that only looks back a sliding window keeps a
// ring per sequence instead, [layer][seq][kv_head][tile] with rows a multiple of kv_block_size,
// position p in row p % rows. Within a tile, values are stored by row ([row][head_dim]) and keys
// by column ([head_dim][row]), so that the attention kernels (cpu/dispatch.h) multiply a query
// element with the keys of a tile's positions in one vector.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

namespace rbee::engine {

class kv_cache {
 public:
  // ring_rows: per layer, the rows of its ring per (sequence, head), or 0 for a layer that
  // keeps n_blocks blocks of kv_block_size rows per head.
  kv_cache(std::span<const int> ring_rows, int n_head_kv, int head_dim, int n_seq, int n_blocks,
           bool f16);

  static uint64_t bytes_needed(std::span<const int> ring_rows, int kv_dim, int n_seq, int n_blocks,
                               bool f16);

  bool f16() const { return f16_; }
  bool paged(int layer) const { return ring_rows_[static_cast<size_t>(layer)] == 0; }
  int ring_rows(int layer) const { return ring_rows_[static_cast<size_t>(layer)]; }
  size_t element_bytes() const { return f16_ ? 2 : 4; }
  size_t row_bytes() const { return static_cast<size_t>(head_dim_) * element_bytes(); }

  // A paged layer: the kv_block_size rows of head_dim elements of (layer, block, head).
  uint8_t* k_block(int layer, int block, int head) { return at(0, layer, block, head); }
  uint8_t* v_block(int layer, int block, int head) { return at(1, layer, block, head); }
  // A ring layer: the first of ring_rows(layer) rows of (layer, seq, head).
  uint8_t* k_ring(int layer, int seq, int head) { return at(0, layer, seq, head); }
  uint8_t* v_ring(int layer, int seq, int head) { return at(1, layer, seq, head); }

 private:
  // (layer, unit, head) with unit a block of a paged layer or a sequence of a ring layer.
  uint8_t* at(int kv, int layer, int unit, int head);

  std::vector<int> ring_rows_;
  std::vector<size_t> layer_start_;  // (n_layer + 1,) element offsets of each layer's K
  int n_head_kv_, head_dim_, n_seq_, n_blocks_;
  bool f16_;
  std::unique_ptr<uint8_t[]> data_;
};

}  // namespace rbee::engine
