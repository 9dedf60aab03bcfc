#pragma once
// Host wrappers that run one device op on host buffers (upload, launch, download) on the
// current device: the kernel tests compare them with the CPU reference. Plain C++; test
// support only (rbee_engine_testing), never in a product.
#include <cstdint>
#include <span>
#include <vector>

#include "engine/cuda/cuda_backend.h"
#include "engine/tensor_types.h"

namespace rbee::engine::cuda::testing {

// matvec: the decode route; cublas: dequantize + cuBLAS; mma: the WMMA tensor-core kernel;
// pipelined: the pipelined tensor-core kernel; gemm: the batched products' choice among the
// last three, as a context makes it.
enum class product_route { matvec, cublas, mma, pipelined, gemm };

// y (n_tok, rows) = x (n_tok, cols) @ W^T, W (rows, cols) packed in `type`; tile: the
// tensor-core routes' tile (mma: tokens per tile; pipelined: a gemm_tile; 0: their choice).
std::vector<float> matmul(tensor_type type, std::span<const uint8_t> w, int64_t rows, int64_t cols,
                          std::span<const float> x, int n_tok, product_route route, int tile = 0);

// Rows `ids` of W (rows, cols) as fp32 (the embedding lookup), or all rows as fp16 -> fp32
// when ids is empty (the prefill dequantization).
std::vector<float> dequantize(tensor_type type, std::span<const uint8_t> w, int64_t rows,
                              int64_t cols, std::span<const int32_t> ids);

// x += y (y may be empty), returns the normalised rows; x is updated in place.
std::vector<float> add_rmsnorm(std::vector<float>& x, std::span<const float> y,
                               std::span<const float> w, int n_rows, float eps);

std::vector<float> silu_mul(std::span<const float> gate, std::span<const float> up);

// Dequantized q8 blocks of x (n a multiple of 32).
std::vector<float> quantize_q8_roundtrip(std::span<const float> x);

// One layer's attention of n_tok tokens of one sequence at positions 0.. (q, k, v rows as
// the projections give them; rope_freqs none, adjacent pairs or halves), starting from an
// empty cache: the first half as one batch, then one token per call. Returns the attention
// output (n_tok, n_head*head_dim). `paged`: the cache is a pool of blocks that the
// sequence's block table names in reverse order (else one contiguous ring of n_ctx rows).
struct attention_case {
  int n_head, n_head_kv, head_dim, n_ctx;
  bool halves;
  float freq_base;
  bool paged = false;
  bool flash = false;  // the first half's batch through flash_attention
};
std::vector<float> rope_attention(const attention_case& c, std::span<const float> q,
                                  std::span<const float> k, std::span<const float> v, int n_tok);

// One batch's attention by the split kernel and by flash attention, over caches of random
// fp16 keys and values (c.n_ctx positions per sequence, paged in reverse block order or rings)
// and random queries from `seed`: sequence i contributes rows[i] consecutive rows at positions
// history[i], history[i] + 1, ... `window` and `softcap` as in attention_shape.
struct attention_pair {
  std::vector<float> split, flash;
};
attention_pair split_and_flash_attention(const attention_case& c, std::span<const int> history,
                                         std::span<const int> rows, int window, float softcap,
                                         uint32_t seed);

// The device's sampling choice from one logits row, as a context makes it.
token_id sample(std::span<const float> logits, const sampling_step& step);

}  // namespace rbee::engine::cuda::testing
