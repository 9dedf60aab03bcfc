#pragma once
// The CPU backend's KV cache: keys and values of every layer, sequence and KV head, F16
// (default) or F32. How many positions each sequence holds is the context's record
// (context.cpp), not the cache's.
// Layout [layer][seq][kv_head][pos][head_dim] keeps one head's history contiguous, so the
// attention of one (sequence, head) walks memory in order.
#include <cstddef>
#include <cstdint>
#include <memory>

namespace rbee::engine {

class kv_cache {
 public:
  kv_cache(int n_layer, int n_head_kv, int head_dim, int n_ctx, int n_seq, bool f16);

  static uint64_t bytes_needed(int n_layer, int kv_dim, int n_ctx, int n_seq, bool f16);

  bool f16() const { return f16_; }
  int n_ctx() const { return n_ctx_; }
  int n_seq() const { return n_seq_; }
  size_t element_bytes() const { return f16_ ? 2 : 4; }

  // The first of n_ctx rows of head_dim elements for (layer, seq, head).
  uint8_t* k(int layer, int seq, int head) { return data_.get() + offset(0, layer, seq, head); }
  uint8_t* v(int layer, int seq, int head) { return data_.get() + offset(1, layer, seq, head); }

 private:
  size_t offset(int kv, int layer, int seq, int head) const;

  int n_layer_, n_head_kv_, head_dim_, n_ctx_, n_seq_;
  bool f16_;
  std::unique_ptr<uint8_t[]> data_;
};

}  // namespace rbee::engine
