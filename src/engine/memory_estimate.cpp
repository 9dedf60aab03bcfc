#include "engine/memory_estimate.h"

#include <algorithm>

#include "engine/kv_block_size.h"

namespace rbee::engine {

namespace {

constexpr uint64_t mib = 1024 * 1024;
constexpr uint64_t batch = 512;            // context_params' default n_batch
constexpr uint64_t attention_split = 128;  // positions per block of the CUDA attention

}  // namespace

memory_needs estimate_memory(const model_shape& s, int n_ctx, int n_seq, bool on_gpu) {
  const uint64_t ctx = static_cast<uint64_t>(std::max(n_ctx, 0));
  const uint64_t seqs = static_cast<uint64_t>(std::max(n_seq, 1));
  const uint64_t head_dim = s.head_dim > 0 ? s.head_dim : s.n_head > 0 ? s.n_embd / s.n_head : 0;
  const uint64_t q_dim = s.n_head * head_dim, kv_dim = s.n_head_kv * head_dim;
  const uint64_t swa_layers = s.n_swa > 0 ? std::min(s.n_swa_layers, s.n_layer) : 0;
  const uint64_t swa_rows = std::min(ctx, s.n_swa + batch - 1);
  // The default block pool: every sequence's context in whole blocks (engine.h's n_kv_tokens).
  const uint64_t block = kv_block_size;
  const uint64_t paged_rows = (ctx + block - 1) / block * block;
  memory_needs m;
  m.weights = s.weight_bytes;
  m.kv_cache =
      2 * seqs * kv_dim * 2 * ((s.n_layer - swa_layers) * paged_rows + swa_layers * swa_rows);
  if (!on_gpu) {
    // The CPU pass's activations, one logits row per sequence, and the process around them.
    m.scratch = batch * 4 * (3 * s.n_embd + 2 * s.n_ff + 2 * kv_dim) + seqs * s.n_vocab * 4 +
                64 * mib + s.weight_bytes / 20;
    return m;
  }
  // The CUDA context's buffers for a full batch: activations, logits of every row, attention
  // partials, the largest weight dequantized for prefill with its fp16 input, sampling, small
  // buffers, and the CUDA runtime with cuBLAS's workspace.
  const uint64_t activations =
      batch * 4 * (4 * s.n_embd + (q_dim + 2 * kv_dim) + 2 * q_dim + 3 * s.n_ff);
  const uint64_t logits = batch * s.n_vocab * 4;
  const uint64_t attention =
      batch * s.n_head * ((ctx + attention_split - 1) / attention_split) * (head_dim + 2) * 4;
  const uint64_t largest_matrix = std::max({s.n_vocab, 2 * s.n_ff, q_dim + 2 * kv_dim}) * s.n_embd;
  const uint64_t dequantized =
      largest_matrix * (s.bf16_weights ? 4 : 2) + batch * std::max(s.n_embd, s.n_ff) * 2;
  const uint64_t sampling = s.n_vocab * 4 * 6;
  m.scratch = activations + logits + attention + dequantized + sampling + 16 * mib + 300 * mib;
  return m;
}

}  // namespace rbee::engine
