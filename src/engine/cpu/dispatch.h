#pragma once
// Internal to cpu/: the per-instruction-set kernel tables and the activation formats the
// quantized kernels read. kernels_scalar.cpp, kernels_avx2.cpp and kernels_avx512.cpp each
// fill one table; a null entry falls back to the next lower level.
#include <cstddef>
#include <cstdint>

#include "engine/cpu/kernels.h"
#include "engine/tensor_types.h"

namespace rbee::engine::cpu {

// How a weight type wants its activations.
//  f32:   the fp32 row as given.
//  q8_32: per token: int8 qs[n] | float d[n/32] | int32 sum[n/32]   (x ≈ qs * d per block of
//         32; sum = Σ qs of the block, used for the offset of q4_0/q5_0 and the min of q4_1/q5_1;
//         also iq4_nl's)
//  q8_k:  per token: int8 qs[n] | float d[n/256] | int16 bsums[n/16] (k-quant and iq4_xs weights)
// Each token gets act_row_bytes (a multiple of 64). That is the layout of the scalar and
// AVX2 levels; a level may arrange a tile of tokens differently inside the same bytes (the
// AVX-512 q8_32 kernels interleave tokens, see kernels_avx512.cpp): activations are only read
// by kernels of the level that quantized them.
enum class act_format { f32, q8_32, q8_k };

act_format act_format_of(tensor_type t);
size_t act_row_bytes(act_format f, int64_t n);

struct act_q8_32 {
  const int8_t* qs;
  const float* d;
  const int32_t* sum;
};
inline act_q8_32 view_q8_32(const uint8_t* row, int64_t n) {
  const int8_t* qs = reinterpret_cast<const int8_t*>(row);
  const float* d = reinterpret_cast<const float*>(row + n);
  return {qs, d, reinterpret_cast<const int32_t*>(d + n / 32)};
}

struct act_q8_k {
  const int8_t* qs;
  const float* d;
  const int16_t* bsums;
};
inline act_q8_k view_q8_k(const uint8_t* row, int64_t n) {
  const int8_t* qs = reinterpret_cast<const int8_t*>(row);
  const float* d = reinterpret_cast<const float*>(row + n);
  return {qs, d, reinterpret_cast<const int16_t*>(d + n / qk_k)};
}

// The per-token-row layout above, for the levels that use it.
template <void (*quantize_row)(const float*, uint8_t*, int64_t)>
void quantize_token_rows(const float* x, int64_t n, int64_t tok, int64_t, uint8_t* act,
                         size_t stride) {
  quantize_row(x, act + tok * stride, n);
}

// One call computes y[tok * y_stride + row] for rows [0, n_rows) and tokens [0, n_tok) of the
// given slices; activations are in the weight type's act_format.
struct gemm_args {
  const uint8_t* w;
  size_t w_stride;
  int64_t n_rows;
  const uint8_t* x;
  size_t x_stride;
  int64_t n_tok;
  float* y;
  int64_t y_stride;
  int64_t n;  // columns
};
using gemm_fn = void (*)(const gemm_args&);

// Weight types matmul handles, as table slots.
enum weight_slot {
  slot_f32,
  slot_f16,
  slot_bf16,
  slot_q4_0,
  slot_q4_1,
  slot_q5_0,
  slot_q5_1,
  slot_q8_0,
  slot_q4_k,
  slot_q5_k,
  slot_q6_k,
  slot_q2_k,
  slot_q3_k,
  slot_iq4_nl,
  slot_iq4_xs,
  n_weight_slots
};
int weight_slot_of(tensor_type t);  // -1 when matmul does not support t

// A block of 32 columns of a group of 16 q4_0 rows in the rows16 layout (kernels.h): the
// rows' scales, then four registers of 64 bytes; in register k, row r's bytes 4r..4r+3 hold
// the row's quants 8k..8k+3 (low nibbles) and 8k+4..8k+7 (high nibbles). The quants are those
// of block_q4_0 (value = d * (q - 8)); element j of a block_q4_0 is qs[j] & 15 for j < 16,
// qs[j - 16] >> 4 after.
inline constexpr int rows16 = 16;
struct q4_0_rows16_block {
  fp16_t d[rows16];
  uint8_t qs[4][64];
};
static_assert(sizeof(q4_0_rows16_block) == rows16 * sizeof(block_q4_0),
              "a repacked group takes the bytes of its rows");
// Quant j (0..31) of row r of a rows16 block.
inline int rows16_quant(const q4_0_rows16_block& b, int r, int j) {
  const uint8_t byte = b.qs[j / 8][4 * r + j % 4];
  return j % 8 < 4 ? byte & 15 : byte >> 4;
}
// q8_0 likewise, with eight registers: in register k, row r's bytes 4r..4r+3 are its quants
// 4k..4k+3 (value = d * q).
struct q8_0_rows16_block {
  fp16_t d[rows16];
  int8_t qs[8][64];
};
static_assert(sizeof(q8_0_rows16_block) == rows16 * sizeof(block_q8_0),
              "a repacked group takes the bytes of its rows");
inline int rows16_quant(const q8_0_rows16_block& b, int r, int j) {
  return b.qs[j / 4][4 * r + j % 4];
}

// q4_k: a super-block of 256 columns of a group of 16 rows: each row's d and dmin; its 6-bit
// scales and mins as 16 sets of 16 rows (the scale of sub-block j is set j, its min set 8 + j):
// the low 4 bits of row r in nibble r % 2 of byte r / 2, the high 2 bits in bits 2r and 2r + 1
// of a word; then each sub-block's 32 quants as a q4_0_rows16_block's (value of quant q of
// sub-block j: d * scale_j * q - dmin * min_j, as in block_q4_k).
struct q4_k_rows16_block {
  fp16_t d[rows16];
  fp16_t dmin[rows16];
  uint8_t set_low[16][rows16 / 2];
  uint32_t set_high[16];
  uint8_t qs[8][4][64];
};
static_assert(sizeof(q4_k_rows16_block) == rows16 * sizeof(block_q4_k),
              "a repacked group takes the bytes of its rows");
// Set `set` (0..15) of row r.
inline int rows16_set(const q4_k_rows16_block& b, int set, int r) {
  const int low = b.set_low[set][r / 2] >> 4 * (r % 2) & 15;
  return low | (b.set_high[set] >> 2 * r & 3) << 4;
}
// Quant l (0..31) of sub-block j of row r.
inline int rows16_quant(const q4_k_rows16_block& b, int r, int j, int l) {
  const uint8_t byte = b.qs[j][l / 8][4 * r + l % 4];
  return l % 8 < 4 ? byte & 15 : byte >> 4;
}

struct kernel_table {
  gemm_fn gemm[n_weight_slots] = {};
  // Weights in the rows16 layout (kernels.h); null for types that have none.
  gemm_fn gemm_rows16[n_weight_slots] = {};
  // Whether this level's rows16 kernels are its fastest (the others are there so that weights
  // repacked at one level still multiply at another).
  bool prefers_rows16 = false;
  // Token `tok` of n_tok (fp32 row x, n values) into `act`, act_row_bytes = stride per token.
  using quantize_fn = void (*)(const float* x, int64_t n, int64_t tok, int64_t n_tok, uint8_t* act,
                               size_t stride);
  quantize_fn quantize_q8_32 = nullptr;
  quantize_fn quantize_q8_k = nullptr;
  void (*f16_to_f32)(const fp16_t* x, float* y, int64_t n) = nullptr;
  void (*f32_to_f16)(const float* x, fp16_t* y, int64_t n) = nullptr;
  // Attention over one tile of the KV cache (kv_cache.h), for n_q query heads that share a
  // KV head, with elements of the cache's type (f16 or f32; the _f16/_f32 entries):
  // tile_scores: keys stored by column (element d of the tile's position j at
  //   k[d * kv_block_size + j]), q (n_q, hd) -> scores[g * kv_block_size + j] = q[g] . key j.
  // weighted_rows: values stored by row (v (n_rows, hd)) ->
  //   out[g * hd + d] += sum over j < n_rows of p[g * p_stride + j] * v[j * hd + d], j in order.
  using tile_scores_fn = void (*)(const uint8_t* k, const float* q, int n_q, int hd, float* scores);
  using weighted_rows_fn = void (*)(const float* p, int64_t p_stride, int n_q, const uint8_t* v,
                                    int n_rows, int hd, float* out);
  tile_scores_fn tile_scores_f16 = nullptr;
  tile_scores_fn tile_scores_f32 = nullptr;
  weighted_rows_fn weighted_rows_f16 = nullptr;
  weighted_rows_fn weighted_rows_f32 = nullptr;
  void (*rmsnorm)(const float* x, const float* w, float* out, int64_t n, float eps) = nullptr;
  void (*softmax)(float* x, int64_t n) = nullptr;
  void (*silu_mul)(const float* g, const float* u, float* out, int64_t n) = nullptr;
};

// Each fills only what it accelerates; scalar fills everything.
void fill_scalar_kernels(kernel_table& t);
void fill_avx2_kernels(kernel_table& t);
void fill_avx512_kernels(kernel_table& t);

// The complete table of a level (lower levels filled in); level must be <= detected_isa().
const kernel_table& kernels_for(isa level);
inline const kernel_table& active_kernels() {
  return kernels_for(active_isa());
}

}  // namespace rbee::engine::cpu
