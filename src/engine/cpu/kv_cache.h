#pragma once
// The CPU backend's KV cache: keys and values of every layer, sequence and KV head, F16
// (default) or F32. How many positions each sequence holds is the context's record
// (context.cpp), not the cache's.
// Layout [layer][seq][kv_head][row][head_dim] keeps one head's history contiguous, so the
// attention of one (sequence, head) walks memory in order. A layer holds n_ctx rows, or
// fewer when it only looks back a sliding window: position p then lives in row p % rows.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

namespace rbee::engine {

class kv_cache {
 public:
  // layer_rows: the rows each layer keeps per (sequence, head).
  kv_cache(std::span<const int> layer_rows, int n_head_kv, int head_dim, int n_seq, bool f16);

  static uint64_t bytes_needed(std::span<const int> layer_rows, int kv_dim, int n_seq, bool f16);

  bool f16() const { return f16_; }
  int n_seq() const { return n_seq_; }
  int rows(int layer) const { return layer_rows_[static_cast<size_t>(layer)]; }
  size_t element_bytes() const { return f16_ ? 2 : 4; }

  // The first of rows(layer) rows of head_dim elements for (layer, seq, head).
  uint8_t* k(int layer, int seq, int head) { return data_.get() + offset(0, layer, seq, head); }
  uint8_t* v(int layer, int seq, int head) { return data_.get() + offset(1, layer, seq, head); }

 private:
  size_t offset(int kv, int layer, int seq, int head) const;

  std::vector<int> layer_rows_;
  std::vector<size_t> layer_start_;  // (n_layer + 1,) element offsets of each layer's K
  int n_head_kv_, head_dim_, n_seq_;
  bool f16_;
  std::unique_ptr<uint8_t[]> data_;
};

}  // namespace rbee::engine
