#pragma once
// Launchers of the device kernels (one op per .cu file). Pointers are device pointers;
// matrices are row-major with rows = tokens of the batch unless said otherwise. Every
// launcher checks its launch (RBEE_CUDA_CHECK_LAUNCH).
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "engine/kv_block_size.h"
#include "engine/sampling_knobs.h"
#include "engine/tensor_types.h"

namespace rbee::engine::cuda {

// Activations quantized to int8 in blocks of 32 for the integer dot products of the quantized
// weights: x[32*b + j] ~ d_b * qs[32*b + j], with (d_b, s_b = d_b * sum of the block's qs) at
// ds[2*b], ds[2*b+1]. Two arrays so that a warp's loads are contiguous; floats, not halves,
// so the activations' rounding stays below the weights'. Rows of n values take n/32 blocks.
struct q8_blocks {
  int8_t* qs = nullptr;
  float* ds = nullptr;
  __host__ __device__ explicit operator bool() const { return qs != nullptr; }
};
inline size_t q8_bytes(size_t n_blocks) {
  return n_blocks * 32 + n_blocks * 2 * sizeof(float) + 16;
}
// Carves the two arrays out of q8_bytes(n_blocks) bytes at `mem` (16-byte aligned).
inline q8_blocks q8_view(void* mem, size_t n_blocks) {
  auto* p = static_cast<int8_t*>(mem);
  return {p, reinterpret_cast<float*>(p + (n_blocks * 32 + 15) / 16 * 16)};
}

// Q4_0, Q8_0 and Q6_K rows live on the device with each field of all their blocks together
// (quants, then scales; for Q6_K ql, qh, scales, d), 16-byte aligned where the row is; same
// row size as in the file.
bool repacked(tensor_type type);
// src (rows, cols) in file layout -> dst in device layout (types with repacked(type) only).
void repack(tensor_type type, const void* src, void* dst, int64_t rows, int64_t cols,
            cudaStream_t stream);

// Weight types whose matrix x vector kernel takes q8 activations (the integer types); the
// others (f32, f16, bf16) take fp32 activations.
bool uses_q8(tensor_type type);

// The matrix x vector route handles up to this many tokens; bigger batches use gemm.
inline constexpr int max_matvec_tokens = 8;

// y (n_tok, rows) = x (n_tok, cols) @ W^T with W (rows, cols) packed in `type`; x as fp32
// rows (float types) or q8 blocks (n_tok, cols/32) (integer types).
void matvec(tensor_type type, const void* w, int64_t rows, int64_t cols, const float* x,
            q8_blocks xq, int n_tok, float* y, cudaStream_t stream);

// x (n_rows, n) -> q8 blocks (n_rows, n/32); n a multiple of 32.
void quantize_q8(const float* x, int n_rows, int n, q8_blocks out, cudaStream_t stream);

// W (rows, cols) packed in `type` -> fp16 or fp32 (rows, cols).
void dequantize(tensor_type type, const void* w, int64_t rows, int64_t cols, void* out,
                bool out_f16, cudaStream_t stream);
// out (n, cols) fp32 = W[rows[i]] (the token embedding lookup).
void get_rows(tensor_type type, const void* w, int64_t cols, const int32_t* rows, int n, float* out,
              cudaStream_t stream);

// The batched products. gemm: y (n_tok, rows) = x (n_tok, cols) @ W^T, fp32 accumulation,
// through gemm_pipelined for the integer types up to max_pipelined_tokens tokens where
// gemm_pipelined_supported, else through gemm_mma for weight types with mma_type() up to
// max_mma_tokens tokens (bf16; integer rows that are no whole steps; older devices), else
// through gemm_cublas (gemm.cu says why). The WMMA kernel's cut at 32 is measured as
// max_pipelined_tokens is (below): 1.46x cuBLAS's aggregate decode at 16 sequences, 1.21x at
// 32, 0.91x at 64.
inline constexpr int max_mma_tokens = 32;
// Scratch bytes gemm needs for W (rows, cols) and up to n_tok tokens.
size_t gemm_scratch_bytes(tensor_type type, int64_t rows, int64_t cols, int n_tok);
void gemm(cublasHandle_t handle, tensor_type type, const void* w, int64_t rows, int64_t cols,
          const float* x, int n_tok, float* y, void* scratch, cudaStream_t stream);

// The weight types of the tensor-core product: the integer types and bf16.
bool mma_type(tensor_type type);
// y (n_tok, rows) = x (n_tok, cols) @ W^T on tensor cores, W read in its packed form (tiles
// decoded to fp16 in shared memory), x_f16 the activations as fp16; any n_tok >= 1. Blocks
// take tiles of tokens_per_tile tokens (16, 32, 64 or 128; 0: chosen for the batch, the
// matrix and the device).
void gemm_mma(tensor_type type, const void* w, int64_t rows, int64_t cols, const __half* x_f16,
              int n_tok, float* y, cudaStream_t stream, int tokens_per_tile = 0);
// Integer weights on tensor cores through a pipeline of packed blocks decoded in shared
// memory (gemm_pipelined.cu): rows of whole 256-column steps, compute capability 8.0 and up.
// The cut at 64 tokens is measured on an H200, 7B Q4_0 shape, rbee-engine bench --parallel
// beside the previous route (WMMA to 32, then dequantization + cuBLAS) in one run: aggregate
// decode 1.11x at 16 sequences, 1.30x at 32, 1.19x at 48, 1.17x at 64, but 0.82x at 96 and
// 0.84x at 128, and 0.44x of cuBLAS's pp512: there the dequantization is amortised and
// cuBLAS's Hopper kernels outrun mma.sync.
inline constexpr int max_pipelined_tokens = 64;
bool gemm_pipelined_supported(tensor_type type, int64_t cols);
// The block tiles of gemm_pipelined: weight rows x tokens, or the launcher's choice.
enum class gemm_tile { chosen, rows64_tokens32, rows64_tokens64 };
// y (n_tok, rows) = x (n_tok, cols) @ W^T with x_f16 the activations as fp16; any n_tok >= 1.
// A product whose tiles fill the device's waves of blocks badly is cut into column parts whose
// sums meet in `parts`, scratch of gemm_pipelined_parts_bytes() (added in a fixed order: the
// result does not depend on timing).
size_t gemm_pipelined_parts_bytes();
void gemm_pipelined(tensor_type type, const void* w, int64_t rows, int64_t cols,
                    const __half* x_f16, int n_tok, float* y, float* parts, cudaStream_t stream,
                    gemm_tile shape = gemm_tile::chosen);
// x (n,) fp32 -> out (n,) fp16.
void to_f16(const float* x, int64_t n, __half* out, cudaStream_t stream);

// Through cuBLAS: W dequantized whole into scratch (fp16, or fp32 for bf16; f16 and f32
// weights as they are), fp32 accumulation; scratch of gemm_cublas_scratch_bytes.
size_t gemm_cublas_scratch_bytes(tensor_type type, int64_t rows, int64_t cols, int n_tok);
void gemm_cublas(cublasHandle_t handle, tensor_type type, const void* w, int64_t rows, int64_t cols,
                 const float* x, int n_tok, float* y, void* scratch, cudaStream_t stream);

// Widest row add_rmsnorm takes (the CUDA backend refuses models with a wider n_embd).
inline constexpr int max_norm_width = 32768;
// x += y (when y is not null), then out = x / rms(x) * w per row of n; also writes out's q8
// blocks when out_q is set (n a multiple of 32).
void add_rmsnorm(float* x, const float* y, const float* w, int n_rows, int n, float eps, float* out,
                 q8_blocks out_q, cudaStream_t stream);

// out (n_rows, n) = silu(gate) * up elementwise, gate and up rows in_stride floats apart;
// q8 blocks too when out_q is set.
void silu_mul(const float* gate, const float* up, int in_stride, int n_rows, int n, float* out,
              q8_blocks out_q, cudaStream_t stream);

// out (n_rows, n) = gelu_tanh(gate) * up elementwise (gemma's FFN), as silu_mul.
void gelu_mul(const float* gate, const float* up, int in_stride, int n_rows, int n, float* out,
              q8_blocks out_q, cudaStream_t stream);

// Each head (head_dim <= 256 floats) of n_tok rows of n_heads heads, rows row_stride floats
// apart, normalised in place: x / rms(x) * w (qwen3's and gemma3's Q/K norms).
void head_rmsnorm(float* x, int row_stride, int n_tok, int n_heads, int head_dim, const float* w,
                  float eps, cudaStream_t stream);

// y (n,) += x (tensor parallelism: one part's partial sums onto another's).
void add(float* y, const float* x, int64_t n, cudaStream_t stream);
// x (n,) *= s in place (gemma's embedding scale).
void scale(float* x, int64_t n, float s, cudaStream_t stream);
// x (n,) = cap * tanh(x / cap) in place (gemma2's final logit soft cap).
void softcap(float* x, int64_t n, float cap, cudaStream_t stream);

// Mixture of experts. A batch of n_tok tokens routes n_pairs = n_tok * n_used (token, slot)
// pairs, pair p = t * n_used + k: the k-th expert token t chose.
//
// ids, weights (n_tok, n_used) = each token's n_used most likely experts (lower index first on
// ties) by the softmax of its router logits (n_tok, n_expert), and their probabilities,
// renormalised to sum 1 when `normalize`. The logits are overwritten (scratch).
void moe_route(float* logits, int n_tok, int n_expert, int n_used, bool normalize, int32_t* ids,
               float* weights, cudaStream_t stream);

// One kind of the experts' matrices (gate, up or down) of a layer in device memory: expert e's
// (rows, cols) matrix at w + e * stride, rows row_bytes apart.
struct expert_matrices {
  tensor_type type = tensor_type::f32;
  const uint8_t* w = nullptr;
  size_t stride = 0, row_bytes = 0;
  int64_t rows = 0, cols = 0;
};

// Decode-sized batches (n_tok <= max_matvec_tokens): y[i] (n_pairs, rows) = pair p's expert
// ids[p] times x row p / x_div (x_div n_used: the token's row; 1: the pair's own row), for
// the one or two matrices given (y[1] for m[1]; m[1].w null: one). Grouped by expert: each
// chosen expert's rows are read once for all the pairs routed to it, the others not at all.
// x as fp32 rows (float types) or q8 blocks (integer types), as matvec.
void moe_matvec(const expert_matrices (&m)[2], const int32_t* ids, int n_tok, int n_used, int x_div,
                const float* x, q8_blocks xq, float* const (&y)[2], cudaStream_t stream);

// Larger batches, grouped for one product per chosen expert: offsets (n_expert + 1) =
// where each expert's pairs start in `order` (the pairs expert by expert, each expert's in pair
// order), row_of (n_pairs) = each pair's place in order, and xg (n_pairs, n) = the x row of the
// token of each pair of order.
void moe_group(const int32_t* ids, int n_tok, int n_used, int n_expert, const float* x, int n,
               int32_t* offsets, int32_t* order, int32_t* row_of, float* xg, cudaStream_t stream);

// acc (n_tok, n) = sum over k of weights[t, k] * y[row_of[t * n_used + k]] (row_of null: the
// pair's own row).
void moe_combine(float* acc, const float* y, const float* weights, const int32_t* row_of, int n_tok,
                 int n_used, int n, cudaStream_t stream);
// qwen2moe's shared expert: acc (n_tok, n) += sigmoid(gate (n,) . x[t]) * y[t] per token t.
void moe_add_shared(float* acc, const float* y, const float* x, const float* gate, int n_tok, int n,
                    cudaStream_t stream);

// out (n, cols) = x[rows[i]] (the rows that want logits).
void gather_rows(const float* x, const int32_t* rows, int n, int cols, float* out,
                 cudaStream_t stream);

// table (n_tok, n_rot/2) = (cos, sin) of freq_scale * pos[i] * inv_freq[j], inv_freq[j] =
// base^(-2j/n_rot) / rope_freqs[j]: the angles of every layer's rotation, once per batch.
// Both times mscale (phi3's LongRoPE attention factor; 1 otherwise).
void rope_table(const double* inv_freq, float freq_scale, float mscale, int n_rot,
                const int32_t* pos, int n_tok, float2* table, cudaStream_t stream);

struct rope_args {
  int n_head, n_head_kv, head_dim, n_rot;
  bool halves;            // qwen2's NeoX style, else llama's adjacent pairs
  const float2* cos_sin;  // rope_table of the batch
  int n_ctx;              // cache rows per (seq, kv head) of a ring layer
  int n_seq;
  // A paged layer: the block tables (n_seq, max_blocks) of the KV pool (engine/backend.h);
  // null for a ring layer.
  const int32_t* block_table = nullptr;
  int max_blocks = 0;
};
// Per token i of the batch (position pos[i], sequence seq[i]): adds the biases (when not
// null) to q, k, v, rotates q into q_out (n_tok, n_head*head_dim) and k, and stores k and v
// into this layer's fp16 caches. A paged layer's cache is laid out
// [block][kv_head][kv_block_size][head_dim], position p in row p % kv_block_size of block
// block_table[seq * max_blocks + p / kv_block_size]; a ring layer's (a sliding window's)
// [seq][kv_head][n_ctx][head_dim], position p in row p % n_ctx. Rows of q are q_stride floats
// apart, rows of k and v kv_stride.
void rope_store(const rope_args& a, const float* q, int q_stride, const float* k, const float* v,
                int kv_stride, const float* bq, const float* bk, const float* bv,
                const int32_t* pos, const int32_t* seq, int n_tok, float* q_out, __half* k_cache,
                __half* v_cache, cudaStream_t stream);

// Positions of the cache handled by one block of the split attention.
inline constexpr int attention_split = 128;
// Scratch floats for partial results of n_tok tokens. `counters` (n_tok * n_head ints, for the
// largest n_tok used) are zeroed before the first call; each call leaves them at zero.
size_t attention_scratch_floats(int n_tok, int n_head, int head_dim, int n_ctx);

struct attention_shape {
  int n_head, n_head_kv, head_dim;
  int rows;       // positions a sequence holds at most in this layer (a ring layer: its rows)
  int window;     // a query sees the `window` latest positions, its own included; 0: all
  float scale;    // of the scores q . k
  float softcap;  // scores become softcap * tanh(scores / softcap); 0: none
  // A paged layer: the block tables as in rope_args; null: a ring, position p in row p % rows.
  const int32_t* block_table = nullptr;
  int max_blocks = 0;
};
// out (n_tok, n_head*head_dim): causal attention of each token over its sequence's cached
// positions (0..pos[i], or the window's) (GQA) in the cache layout rope_store writes, long
// contexts split across blocks, then combined; q8 blocks of out too when out_q is set.
// head_dim at most 256; scratch sized for at least s.rows positions.
void attention(const float* q, const __half* k_cache, const __half* v_cache, const int32_t* pos,
               const int32_t* seq, int n_tok, const attention_shape& s, float* scratch,
               int* counters, float* out, q8_blocks out_q, cudaStream_t stream);

// Prefill attention on tensor cores (flash_attention.cu): the same result as attention() for
// batches whose rows come in runs of one sequence, each key and value row read once per tile
// of up to flash_tile_rows rows instead of once per row. Queries and softmax weights are
// rounded to half for the products.
inline constexpr int flash_tile_rows = 64;
struct attention_tile {
  int32_t first_row, n_rows;  // consecutive batch rows of one sequence
};
// Writes the tiles of a batch of n rows whose sequences are `seq` (runs of equal ids, cut
// every flash_tile_rows rows) to `tiles` (room for n); returns how many.
int attention_tiles(const int32_t* seq, int n, attention_tile* tiles);
// Whether flash_attention has a kernel for this head size on the current device (compute
// capability 8.0 or newer).
bool flash_attention_supported(int head_dim);
// out (n_tok, n_head*head_dim) for the rows of the n_tiles tiles (device), as attention().
void flash_attention(const float* q, const __half* k_cache, const __half* v_cache,
                     const int32_t* pos, const int32_t* seq, const attention_tile* tiles,
                     int n_tiles, const attention_shape& s, float* out, cudaStream_t stream);

// Sampling (sample.cu): one choice of engine.h's sampler from a logits row of n entries.
// Device scratch bytes for rows of n entries.
size_t sample_scratch_bytes(int n);
// *token = the choice among the n_allowed tokens whose bit is set in `allowed` (device, n
// bits; null: all n): repeat penalty on the n_pen distinct tokens at `penalized` (device), the
// n_off offsets (distinct tokens, device) added, then argmax, or a sort by (logit desc, id asc)
// and top-k, softmax, top-p, min-p and temperature, and the first candidate whose cumulative
// weight exceeds uniform * total.
void sample_row(const float* logits, int n, const uint64_t* allowed, int n_allowed,
                const int32_t* penalized, int n_pen, const token_offset* offsets, int n_off,
                const sampling_knobs& p, void* scratch, int32_t* token, cudaStream_t stream);
// Log-softmax of the raw row: out[0] at *token (device), out[1 + j] and out_ids[j] for the
// n_top (<= 64, <= n) most likely tokens, logit desc then id asc. Uses sample_row's scratch.
void logprobs_row(const float* logits, int n, const int32_t* token, int n_top, void* scratch,
                  float* out, int32_t* out_ids, cudaStream_t stream);

}  // namespace rbee::engine::cuda
