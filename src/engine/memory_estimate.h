#pragma once
// The memory a model needs with a given context, from its header alone (no weights read).
// One formula for engine.h's estimate_memory_bytes and the hive's preflight before it starts
// a worker; it follows what the backends allocate (model_llama.cpp, cuda/backend.cpp).
#include <cstdint>

namespace rbee::engine {

struct model_shape {
  uint64_t weight_bytes = 0;  // the GGUF file: weights are mapped (CPU) or copied (GPU) as stored
  uint64_t n_layer = 0, n_embd = 0, n_head = 0, n_head_kv = 0, n_ff = 0, n_vocab = 0;
  uint64_t head_dim = 0;  // 0: n_embd / n_head (qwen3 and gemma heads are wider)
  // Sliding-window layers (gemma2/3) keep a ring of window + batch - 1 positions, not n_ctx.
  uint64_t n_swa = 0, n_swa_layers = 0;
  bool bf16_weights = false;  // dequantized to fp32 (not fp16) for the GPU's prefill products
};

struct memory_needs {
  uint64_t weights = 0;
  // f16 K and V of every layer, position and sequence: the default block pool (each
  // sequence's context in whole blocks of kv_block_size), and a sliding layer's ring slots
  uint64_t kv_cache = 0;
  uint64_t scratch = 0;  // activations, logits and the runtime's share
  uint64_t total() const { return weights + kv_cache + scratch; }
};

// Host RAM (on_gpu false) or device memory (true) for n_seq sequences of n_ctx positions,
// with batches of up to 512 tokens (the default n_batch).
memory_needs estimate_memory(const model_shape& shape, int n_ctx, int n_seq, bool on_gpu);

}  // namespace rbee::engine
