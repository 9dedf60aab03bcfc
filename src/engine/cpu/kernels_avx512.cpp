// AVX-512 level (F/BW/VL/DQ + VNNI): 512-bit matmul kernels for every weight type; helpers
// and the q8_k activation quantizer come from the shared 256-bit code (kernels_simd.inc).
// The token tile is 8 (32 vector registers hold the accumulators); k-quants use 4.
//
// GCC 12's AVX-512 headers start some intrinsics from _mm512_undefined_*(), which its own
// -W(maybe-)uninitialized then reports once inlined; the values are fully overwritten.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "engine/cpu/dispatch.h"
#include "engine/kv_block_size.h"

#define RBEE_SIMD_AVX512 1
#define RBEE_SIMD_TILE 8

namespace rbee::engine::cpu {
namespace avx512 {
#include "engine/cpu/kernels_simd.inc"

namespace {

// Activations of the 32-element block types at this level. Two consecutive blocks of a row go
// into one 512-bit register as signed bytes w = q - offset, so one vpdpbusd multiplies them
// with 64 activation bytes. Activations are stored as unsigned u = x + 128, so
// Σ u*w = Σ x*w + 128 Σ w, and the second term, which depends on the weights only, is
// subtracted once per block pair for all tokens.
//
// Tokens are quantized in groups of max_tile (the last group may be smaller); a group of T
// tokens starting at token t0 occupies the bytes of tokens t0..t0+T-1 and is laid out so the
// kernel addresses every token of a tile from one pointer with constant offsets:
//   u8    qs[np][T][64]     block pairs (np = ceil(nb / 2); an odd tail is padded with x = 0)
//   float d[np][T][2]       scale of each block of the pair (0 for the padding)
//   int32 sum[np][T][2]     Σ x of each block (for the min of q4_1/q5_1)
struct group_view {
  const uint8_t* qs;
  const float* d;
  const int32_t* sum;
};
inline group_view view_group(const uint8_t* base, int64_t n, int tile) {
  const int64_t np = (n / 32 + 1) / 2;
  const auto* d = reinterpret_cast<const float*>(base + tile * np * 64);
  return {base, d, reinterpret_cast<const int32_t*>(d + tile * np * 2)};
}

void quantize_q8_32_grouped(const float* x, int64_t n, int64_t tok, int64_t n_tok, uint8_t* act,
                            size_t stride) {
  const int64_t t0 = tok / max_tile * max_tile;
  const int tile = static_cast<int>(std::min<int64_t>(max_tile, n_tok - t0));
  const int i = static_cast<int>(tok - t0);
  uint8_t* base = act + t0 * stride;
  const int64_t nb = n / 32, np = (nb + 1) / 2;
  auto* d = reinterpret_cast<float*>(base + tile * np * 64);
  auto* sum = reinterpret_cast<int32_t*>(d + tile * np * 2);
  const __m256i flip = _mm256_set1_epi8(-128);
  for (int64_t b = 0; b < np * 2; ++b) {
    const int64_t slot = (b / 2 * tile + i) * 2 + b % 2;
    uint8_t* qs = base + (b / 2 * tile + i) * 64 + (b % 2) * 32;
    if (b == nb) {  // padding of an odd tail
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(qs), flip);
      d[slot] = 0;
      sum[slot] = 0;
      continue;
    }
    const float db = amax32(x + b * 32) / 127;
    const float id = db ? 1 / db : 0;
    const __m256i q = round_pack32(x + b * 32, _mm256_set1_ps(id));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(qs), _mm256_xor_si256(q, flip));
    d[slot] = db;
    sum[slot] = sum_i8(q);
  }
}

inline __m512i nibbles2(const uint8_t* qs0, const uint8_t* qs1) {
  const __m256i v = _mm256_set_m128i(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qs1)),
                                     _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs0)));
  __m512i t = _mm512_zextsi256_si512(v);
  t = _mm512_shuffle_i64x2(t, t, _MM_SHUFFLE(1, 1, 0, 0));  // 128-bit lanes: b0 b0 b1 b1
  t = _mm512_mask_srli_epi16(t, 0xff00ff00, t, 4);          // lanes 1, 3: high nibbles
  return _mm512_and_si512(t, _mm512_set1_epi8(0x0f));
}

// 0x10 in byte i where bit i of the two blocks' qh words is set.
template <class Block>
inline __m512i high_bits2(const Block& b0, const Block& b1) {
  uint32_t h0, h1;
  std::memcpy(&h0, b0.qh, 4);
  std::memcpy(&h1, b1.qh, 4);
  return _mm512_maskz_mov_epi8(h0 | (uint64_t{h1} << 32), _mm512_set1_epi8(0x10));
}

struct q4_0_w {
  using block = block_q4_0;
  static constexpr bool has_min = false;
  static __m512i unpack2(const block& b0, const block& b1) {
    return _mm512_sub_epi8(nibbles2(b0.qs, b1.qs), _mm512_set1_epi8(8));
  }
};
struct q4_1_w {
  using block = block_q4_1;
  static constexpr bool has_min = true;
  static __m512i unpack2(const block& b0, const block& b1) { return nibbles2(b0.qs, b1.qs); }
};
struct q5_0_w {
  using block = block_q5_0;
  static constexpr bool has_min = false;
  static __m512i unpack2(const block& b0, const block& b1) {
    const __m512i q = _mm512_or_si512(nibbles2(b0.qs, b1.qs), high_bits2(b0, b1));
    return _mm512_sub_epi8(q, _mm512_set1_epi8(16));
  }
};
struct q5_1_w {
  using block = block_q5_1;
  static constexpr bool has_min = true;
  static __m512i unpack2(const block& b0, const block& b1) {
    return _mm512_or_si512(nibbles2(b0.qs, b1.qs), high_bits2(b0, b1));
  }
};
struct iq4_nl_w {
  using block = block_iq4_nl;
  static constexpr bool has_min = false;
  static __m512i unpack2(const block& b0, const block& b1) {
    const __m512i table =
        _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(iq4_levels)));
    return _mm512_shuffle_epi8(table, nibbles2(b0.qs, b1.qs));
  }
};
struct q8_0_w {
  using block = block_q8_0;
  static constexpr bool has_min = false;
  static __m512i unpack2(const block& b0, const block& b1) {
    const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b0.qs));
    const __m256i hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b1.qs));
    return _mm512_inserti64x4(_mm512_zextsi256_si512(lo), hi, 1);
  }
};

// Scale d0 in lanes 0..7 and d1 in lanes 8..15: two word broadcasts and one conversion.
inline __m512 pair_scales(fp16_t d0, fp16_t d1) {
  const __m256i h = _mm256_mask_set1_epi16(_mm256_set1_epi16(static_cast<int16_t>(d0)), 0xff00,
                                           static_cast<int16_t>(d1));
  return _mm512_cvtph_ps(h);
}

// A block pair of one row, ready to multiply: signed weights, the weights-only correction
// -128 Σ w per lane, and each block's scale in the lanes of its block.
struct weight_pair {
  __m512i wv, neg_corr;
  __m512 dw;
};

// Block pair p (blocks 2p, 2p+1; only 2p when `single`) of row w.
template <class P, bool single>
inline weight_pair unpack_pair(const typename P::block* w, int64_t p) {
  const typename P::block& w0 = w[2 * p];
  const typename P::block& w1 = single ? w0 : w[2 * p + 1];
  const __m512i wv = P::unpack2(w0, w1);
  const __m512i zero = _mm512_setzero_si512();
  const __m512i neg_corr =
      _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, _mm512_set1_epi8(-128), wv));
  return {wv, neg_corr, pair_scales(w0.d, w1.d)};
}

// Activation scales of block pair p of token t (of a group of T): d of block 2p in the low 8
// lanes, of block 2p+1 in the high 8 (0 for the padding of an odd tail).
template <int T>
inline __m512 act_scales(const group_view& g, int64_t p, int t) {
  const float* xd = g.d + (p * T + t) * 2;
  return _mm512_mask_broadcastss_ps(_mm512_set1_ps(xd[0]), 0xff00, _mm_load_ss(xd + 1));
}

// acc + Σ x*w of the pair, scaled by the weight and activation scales.
inline __m512 pair_dot(const weight_pair& w, __m512i x, __m512 dx, __m512 acc) {
  const __m512i dot = _mm512_dpbusd_epi32(w.neg_corr, x, w.wv);
  return _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(dot), w.dw), dx, acc);
}

// Block pair p of one row against the T tokens of a group, into acc[t].
template <class P, int T, bool single>
inline void pair_step(const typename P::block* w, int64_t p, const group_view& g, __m512* acc) {
  const weight_pair wp = unpack_pair<P, single>(w, p);
  for (int t = 0; t < T; ++t) {
    const __m512i x = _mm512_loadu_si512(g.qs + (p * T + t) * 64);
    acc[t] = pair_dot(wp, x, act_scales<T>(g, p, t), acc[t]);
  }
}

// q4_1/q5_1: x = q*d + m, so each block adds m * dx * Σ qx.
template <class P, int T>
inline void add_min_terms(const typename P::block* w, const group_view& g, int64_t nb, float* out) {
  if constexpr (P::has_min) {
    for (int64_t b = 0; b < nb; ++b) {
      const float m = _cvtsh_ss(w[b].m);
      const int64_t slot = b / 2 * T * 2 + b % 2;
      for (int t = 0; t < T; ++t) {
        out[t] += m * g.d[slot + 2 * t] * static_cast<float>(g.sum[slot + 2 * t]);
      }
    }
  }
}

// One weight row against a group of T tokens. Every tile size sums a token's block pairs in the
// same order, so a token's result does not depend on how many tokens share its batch: a seeded
// answer is the same under any load, and a resumed one continues exactly (docs/failover.md).
// Measured on the TinyLlama shape, Q4_0, 2 threads: two alternating accumulator sets at every
// tile size decode no faster and prefill 14% slower; the former decode-only sets and q4_0
// layout decoded 8% faster but gave a token a different result in a larger batch.
template <class P, int T>
void row_q8_32(const uint8_t* wr, const uint8_t* const* xs, int64_t n, float* out) {
  const auto* w = reinterpret_cast<const typename P::block*>(wr);
  const group_view g = view_group(xs[0], n, T);
  __m512 acc[T];
  for (auto& a : acc) a = _mm512_setzero_ps();
  const int64_t nb = n / 32, full_pairs = nb / 2;
  for (int64_t p = 0; p < full_pairs; ++p) pair_step<P, T, false>(w, p, g, acc);
  if (nb % 2) pair_step<P, T, true>(w, full_pairs, g, acc);
  for (int t = 0; t < T; ++t) out[t] = _mm512_reduce_add_ps(acc[t]);
  add_min_terms<P, T>(w, g, nb, out);
}

// ---- q4_0 and q8_0 in the rows16 layout (kernels.h, dispatch.h): each of a group's 16 rows
// has a vector lane, so a block's dot products need no horizontal sums and one conversion and
// one multiply-add scale them for all 16 rows. Per block: the group's quants are unpacked once
// for the tile's tokens; per token, 8 vpdpbusd take 4 activation bytes each, broadcast.

// The signed quants of a group's block as 8 registers of 4 quants per row, and -128 Σ of them
// per row (activations are stored as x + 128).
struct rows16_quants {
  __m512i q[8];
  __m512i neg_corr;
};
// The sums run in four independent chains: one chain of dependent vpdpbusd would bound a
// single token's decode by their latency (integer sums: the same result in any order).
inline void add_correction(rows16_quants& u) {
  __m512i corr[4];
  for (int c = 0; c < 4; ++c)
    corr[c] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(-128), u.q[c]);
  for (int c = 0; c < 4; ++c)
    corr[c] = _mm512_dpbusd_epi32(corr[c], _mm512_set1_epi8(-128), u.q[4 + c]);
  const __m512i sum =
      _mm512_add_epi32(_mm512_add_epi32(corr[0], corr[1]), _mm512_add_epi32(corr[2], corr[3]));
  u.neg_corr = _mm512_sub_epi32(_mm512_setzero_si512(), sum);
}
struct q4_0_rows16 {
  using block = q4_0_rows16_block;
  static rows16_quants unpack(const block& b) {
    const __m512i low = _mm512_set1_epi8(0x0f), eight = _mm512_set1_epi8(8);
    rows16_quants u;
    for (int k = 0; k < 4; ++k) {
      const __m512i packed = _mm512_loadu_si512(b.qs[k]);
      u.q[2 * k] = _mm512_sub_epi8(_mm512_and_si512(packed, low), eight);
      u.q[2 * k + 1] = _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16(packed, 4), low), eight);
    }
    add_correction(u);
    return u;
  }
};
struct q8_0_rows16 {
  using block = q8_0_rows16_block;
  static rows16_quants unpack(const block& b) {
    rows16_quants u;
    for (int k = 0; k < 8; ++k) u.q[k] = _mm512_loadu_si512(b.qs[k]);
    add_correction(u);
    return u;
  }
};

// Asks for the cache lines of the `bytes` bytes at `at` (an address, as an integer: it may lie
// past the weights' end, where a prefetch does nothing).
inline void prefetch(uintptr_t at, size_t bytes) {
  for (size_t line = 0; line < bytes; line += 64)
    _mm_prefetch(reinterpret_cast<const char*>(at + line), _MM_HINT_T0);
}

// y[t * y_stride + r] for the group's 16 rows r and the T tokens of activation group g.
template <class P, int T>
void rows16_tile(const typename P::block* w, const group_view& g, int64_t nb, float* y,
                 int64_t y_stride) {
  __m512 acc[T];
  for (auto& a : acc) a = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    // Four blocks ahead (2 KB of q8_0): measured best for a single token's decode, which waits
    // on the weights; 2, 8 and 16 were slower.
    prefetch(reinterpret_cast<uintptr_t>(w) + (b + 4) * sizeof(*w), sizeof(*w));
    const rows16_quants u = P::unpack(w[b]);
    const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].d)));
    const int64_t p = b / 2, half = b % 2;
    for (int t = 0; t < T; ++t) {
      const uint8_t* x = g.qs + (p * T + t) * 64 + half * 32;
      // Few tokens leave the vpdpbusd of one token's dot product to run side by side: in
      // `chains` independent sums then (as add_correction).
      constexpr int chains = T >= 4 ? 1 : 4;
      __m512i part[chains];
      part[0] = u.neg_corr;
      for (int c = 1; c < chains; ++c) part[c] = _mm512_setzero_si512();
      for (int m = 0; m < 8; ++m) {
        int32_t four;
        std::memcpy(&four, x + 4 * m, 4);
        part[m % chains] = _mm512_dpbusd_epi32(part[m % chains], _mm512_set1_epi32(four), u.q[m]);
      }
      __m512i dot = part[0];
      for (int c = 1; c < chains; ++c) dot = _mm512_add_epi32(dot, part[c]);
      const __m512 scale = _mm512_mul_ps(dw, _mm512_set1_ps(g.d[(p * T + t) * 2 + half]));
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), scale, acc[t]);
    }
  }
  for (int t = 0; t < T; ++t) _mm512_storeu_ps(y + t * y_stride, acc[t]);
}

// q4_k in the rows16 layout: a sub-block's quants are unsigned (0..15) and the q8_k
// activations signed, so vpdpbusd takes them as they are. Per super-block, each token's
// sub-block dot products are weighted by the rows' scales in integers, and the mins by the
// activations' block sums.

// Set `set` of the 16 rows (q4_k_rows16_block) as 16 int32 lanes.
inline __m512i rows16_set_lanes(const q4_k_rows16_block& b, int set) {
  const __m128i packed = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b.set_low[set]));
  const __m128i nibble = _mm_set1_epi8(0x0f);
  const __m128i low = _mm_unpacklo_epi8(_mm_and_si128(packed, nibble),
                                        _mm_and_si128(_mm_srli_epi16(packed, 4), nibble));
  const __m512i shifts =
      _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  const __m512i high = _mm512_and_si512(
      _mm512_srlv_epi32(_mm512_set1_epi32(static_cast<int32_t>(b.set_high[set])), shifts),
      _mm512_set1_epi32(3));
  return _mm512_or_si512(_mm512_cvtepu8_epi32(low), _mm512_slli_epi32(high, 4));
}

template <int T>
void rows16_q4_k_tile(const q4_k_rows16_block* w, const act_q8_k* a, int64_t nb, float* y,
                      int64_t y_stride) {
  __m512 acc[T];
  for (auto& v : acc) v = _mm512_setzero_ps();
  const __m512i low = _mm512_set1_epi8(0x0f);
  for (int64_t b = 0; b < nb; ++b) {
    const q4_k_rows16_block& blk = w[b];
    // The next super-block (2.3 KB, as rows16_tile's distance): without it a single token's
    // decode ran 30 % slower than the file layout's kernel.
    prefetch(reinterpret_cast<uintptr_t>(w) + (b + 1) * sizeof(*w), sizeof(*w));
    __m512i isum[T];
    for (auto& v : isum) v = _mm512_setzero_si512();
    for (int j = 0; j < 8; ++j) {
      __m512i q[8];
      for (int k = 0; k < 4; ++k) {
        const __m512i packed = _mm512_loadu_si512(blk.qs[j][k]);
        q[2 * k] = _mm512_and_si512(packed, low);
        q[2 * k + 1] = _mm512_and_si512(_mm512_srli_epi16(packed, 4), low);
      }
      const __m512i scale = rows16_set_lanes(blk, j);
      for (int t = 0; t < T; ++t) {
        const int8_t* x = a[t].qs + b * qk_k + 32 * j;
        // As rows16_tile: independent sums when few tokens would leave one chain waiting.
        constexpr int chains = T >= 4 ? 1 : 4;
        __m512i part[chains];
        for (auto& v : part) v = _mm512_setzero_si512();
        for (int m = 0; m < 8; ++m) {
          int32_t four;
          std::memcpy(&four, x + 4 * m, 4);
          part[m % chains] = _mm512_dpbusd_epi32(part[m % chains], q[m], _mm512_set1_epi32(four));
        }
        __m512i dot = part[0];
        for (int c = 1; c < chains; ++c) dot = _mm512_add_epi32(dot, part[c]);
        isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(dot, scale));
      }
    }
    __m512i msum[T];
    for (auto& v : msum) v = _mm512_setzero_si512();
    for (int j = 0; j < 8; ++j) {
      const __m512i min = rows16_set_lanes(blk, 8 + j);
      for (int t = 0; t < T; ++t) {
        const int16_t* bs = a[t].bsums + b * (qk_k / 16) + 2 * j;
        msum[t] =
            _mm512_add_epi32(msum[t], _mm512_mullo_epi32(min, _mm512_set1_epi32(bs[0] + bs[1])));
      }
    }
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.d)));
    const __m512 dmin =
        _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.dmin)));
    for (int t = 0; t < T; ++t) {
      const __m512 dx = _mm512_set1_ps(a[t].d[b]);
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_mul_ps(d, dx), acc[t]);
      acc[t] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(msum[t]), _mm512_mul_ps(dmin, dx), acc[t]);
    }
  }
  for (int t = 0; t < T; ++t) _mm512_storeu_ps(y + t * y_stride, acc[t]);
}

// The layouts' tile kernels and the activations they read, for gemm_rows16: q8_32 activations
// as the quantizer grouped them (q4_0, q8_0), q8_k activations one row per token (q4_k).
template <class Unpack>
struct q8_32_rows16 {
  using block = typename Unpack::block;
  static constexpr int columns = 32;
  using acts = group_view;
  static acts view(const gemm_args& a, int64_t t0, int nt) {
    return view_group(a.x + t0 * a.x_stride, a.n, nt);
  }
  template <int T>
  static void tile(const block* w, const acts& x, int64_t nb, float* y, int64_t y_stride) {
    rows16_tile<Unpack, T>(w, x, nb, y, y_stride);
  }
};
struct q4_k_rows16 {
  using block = q4_k_rows16_block;
  static constexpr int columns = qk_k;
  struct acts {
    act_q8_k token[max_tile];
  };
  static acts view(const gemm_args& a, int64_t t0, int nt) {
    acts x{};
    for (int t = 0; t < nt; ++t) x.token[t] = view_q8_k(a.x + (t0 + t) * a.x_stride, a.n);
    return x;
  }
  template <int T>
  static void tile(const block* w, const acts& x, int64_t nb, float* y, int64_t y_stride) {
    rows16_q4_k_tile<T>(w, x.token, nb, y, y_stride);
  }
};

template <class P, int T>
void rows16_run(int nt, const typename P::block* w, const typename P::acts& x, int64_t nb, float* y,
                int64_t y_stride) {
  if (nt == T) {
    P::template tile<T>(w, x, nb, y, y_stride);
  } else if constexpr (T > 1) {
    rows16_run<P, T - 1>(nt, w, x, nb, y, y_stride);
  }
}

// Groups are taken in blocks that stay in L2 while every token tile passes over them (as
// gemm_tiled); rows past the last whole group go to the file layout's kernel, file_gemm.
template <class P, gemm_fn file_gemm>
void gemm_rows16(const gemm_args& a) {
  const int64_t nb = a.n / P::columns, groups = a.n_rows / rows16;
  const size_t group_bytes = rows16 * a.w_stride;
  const int64_t group_block = std::max<int64_t>(1, (256 << 10) / static_cast<int64_t>(group_bytes));
  for (int64_t g0 = 0; g0 < groups; g0 += group_block) {
    const int64_t g1 = std::min(groups, g0 + group_block);
    for (int64_t t0 = 0; t0 < a.n_tok; t0 += max_tile) {
      const int nt = static_cast<int>(std::min<int64_t>(max_tile, a.n_tok - t0));
      const typename P::acts x = P::view(a, t0, nt);
      for (int64_t gi = g0; gi < g1; ++gi) {
        const auto* w = reinterpret_cast<const typename P::block*>(a.w + gi * group_bytes);
        rows16_run<P, max_tile>(nt, w, x, nb, a.y + t0 * a.y_stride + gi * rows16, a.y_stride);
      }
    }
  }
  gemm_args tail = a;
  tail.w += groups * group_bytes;
  tail.n_rows -= groups * rows16;
  tail.y += groups * rows16;
  if (tail.n_rows > 0) file_gemm(tail);
}

// ---- k-quants: the same sub-block arithmetic as the 256-bit kernels, 64 elements at a time.

// q4_k / q5_k: 64-element chunk c holds sub-blocks 2c (low nibbles) and 2c+1 (high nibbles).
template <bool five, int T>
void row_qk_affine_512(const uint8_t* wr, const uint8_t* const* xs, int64_t n, float* out) {
  using block = std::conditional_t<five, block_q5_k, block_q4_k>;
  const auto* w = reinterpret_cast<const block*>(wr);
  act_q8_k a[T];
  for (int t = 0; t < T; ++t) a[t] = view_q8_k(xs[t], n);
  __m512 acc[T];
  __m256 corr[T];  // Σ dmin*dx*m_j*bsum_j, reduced at the end
  for (int t = 0; t < T; ++t) {
    acc[t] = _mm512_setzero_ps();
    corr[t] = _mm256_setzero_ps();
  }
  const __m512i m4 = _mm512_set1_epi8(0x0f);
  for (int64_t b = 0; b < n / qk_k; ++b) {
    const block& wb = w[b];
    const scales_mins sm = unpack_scale_min_k4(wb.scales);
    const __m512i sc16 =
        _mm512_zextsi128_si512(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(static_cast<int64_t>(sm.sc))));
    const __m256i m16 = mins_for_bsums(sm.m);

    __m512i isum[T];
    for (int t = 0; t < T; ++t) isum[t] = _mm512_setzero_si512();
    [[maybe_unused]] __m512i qh;
    if constexpr (five) {
      const __m256i h = load256(wb.qh);
      qh = _mm512_inserti64x4(_mm512_zextsi256_si512(h), _mm256_srli_epi16(h, 1), 1);
    }
    for (int c = 0; c < 4; ++c) {
      const __m256i q = load256(wb.qs + 32 * c);
      __m512i v = _mm512_inserti64x4(_mm512_zextsi256_si512(q), _mm256_srli_epi16(q, 4), 1);
      v = _mm512_and_si512(v, m4);
      if constexpr (five) {
        v = _mm512_or_si512(v, _mm512_slli_epi16(_mm512_and_si512(qh, _mm512_set1_epi8(1)), 4));
        qh = _mm512_srli_epi16(qh, 2);
      }
      // Scale of sub-block 2c for the low 32 bytes, 2c + 1 for the high 32.
      const __m512i pick = _mm512_mask_set1_epi16(_mm512_set1_epi16(static_cast<int16_t>(2 * c)),
                                                  0xffff0000, static_cast<int16_t>(2 * c + 1));
      const __m512i s16 = _mm512_permutexvar_epi16(pick, sc16);

      for (int t = 0; t < T; ++t) {
        const __m512i x = _mm512_loadu_si512(a[t].qs + b * qk_k + 64 * c);
        isum[t] = _mm512_add_epi32(isum[t], _mm512_madd_epi16(_mm512_maddubs_epi16(v, x), s16));
      }
    }
    const float d = _cvtsh_ss(wb.d), dmin = _cvtsh_ss(wb.dmin);
    for (int t = 0; t < T; ++t) {
      const float dx = a[t].d[b];
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_set1_ps(d * dx), acc[t]);
      const __m256i mins = _mm256_madd_epi16(load256(a[t].bsums + b * 16), m16);
      corr[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mins), _mm256_set1_ps(dmin * dx), corr[t]);
    }
  }
  for (int t = 0; t < T; ++t)
    out[t] = _mm512_reduce_add_ps(_mm512_sub_ps(acc[t], _mm512_zextps256_ps512(corr[t])));
}

// q6_k: each 128-element half is two registers of 64 (elements 0..63 and 64..127), with one
// 8-bit scale per 16 elements.
template <int T>
void row_q6_k_512(const uint8_t* wr, const uint8_t* const* xs, int64_t n, float* out) {
  const auto* w = reinterpret_cast<const block_q6_k*>(wr);
  act_q8_k a[T];
  for (int t = 0; t < T; ++t) a[t] = view_q8_k(xs[t], n);
  __m512 acc[T];
  __m256 corr[T];  // 32 * d * dx * Σ scale_j * bsum_j, reduced at the end
  for (int t = 0; t < T; ++t) {
    acc[t] = _mm512_setzero_ps();
    corr[t] = _mm256_setzero_ps();
  }
  const __m512i m4 = _mm512_set1_epi8(0x0f);
  const __m512i m3 = _mm512_set1_epi8(0x03);
  // int16 lane i of a 64-element register belongs to scale i / 8 (set_epi16 lists lane 31 first).
  const __m512i spread = _mm512_set_epi16(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1,
                                          1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
  for (int64_t b = 0; b < n / qk_k; ++b) {
    const block_q6_k& wb = w[b];
    const __m256i sc16_256 =
        _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wb.scales)));
    const __m512i sc16 = _mm512_zextsi256_si512(sc16_256);
    __m512i isum[T];
    for (int t = 0; t < T; ++t) isum[t] = _mm512_setzero_si512();
    for (int half = 0; half < 2; ++half) {
      const __m512i ql = _mm512_loadu_si512(wb.ql + 64 * half);
      const __m256i h = load256(wb.qh + 32 * half);
      const __m512i qh = _mm512_inserti64x4(_mm512_zextsi256_si512(h), _mm256_srli_epi16(h, 2), 1);
      const __m512i lo =
          _mm512_or_si512(_mm512_and_si512(ql, m4), _mm512_slli_epi16(_mm512_and_si512(qh, m3), 4));
      const __m512i hi =
          _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                          _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(qh, 4), m3), 4));
      // Scales 8*half + 0..3 for elements 0..63, 8*half + 4..7 for 64..127.
      const __m512i s_lo = _mm512_permutexvar_epi16(
          _mm512_add_epi16(spread, _mm512_set1_epi16(static_cast<int16_t>(8 * half))), sc16);
      const __m512i s_hi = _mm512_permutexvar_epi16(
          _mm512_add_epi16(spread, _mm512_set1_epi16(static_cast<int16_t>(8 * half + 4))), sc16);
      for (int t = 0; t < T; ++t) {
        const int8_t* x = a[t].qs + b * qk_k + 128 * half;
        const __m512i x0 = _mm512_loadu_si512(x), x1 = _mm512_loadu_si512(x + 64);
        isum[t] = _mm512_add_epi32(isum[t], _mm512_madd_epi16(_mm512_maddubs_epi16(lo, x0), s_lo));
        isum[t] = _mm512_add_epi32(isum[t], _mm512_madd_epi16(_mm512_maddubs_epi16(hi, x1), s_hi));
      }
    }
    const float d = _cvtsh_ss(wb.d);

    for (int t = 0; t < T; ++t) {
      const float dx = a[t].d[b];
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_set1_ps(d * dx), acc[t]);
      const __m256i c = _mm256_madd_epi16(load256(a[t].bsums + b * 16), sc16_256);
      corr[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(c), _mm256_set1_ps(32 * d * dx), corr[t]);
    }
  }
  for (int t = 0; t < T; ++t)
    out[t] = _mm512_reduce_add_ps(_mm512_sub_ps(acc[t], _mm512_zextps256_ps512(corr[t])));
}

// ---- q2_k, q3_k, iq4_xs: 64 elements at a time, one sub-block scale per 128-bit lane or half.

// int16 lane i of a 64-element register belongs to sub-block first + i / 8 (of 16 elements).
inline __m512i spread_scales16(__m512i scales16, int first) {
  const __m512i spread = _mm512_set_epi16(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1,
                                          1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
  return _mm512_permutexvar_epi16(
      _mm512_add_epi16(spread, _mm512_set1_epi16(static_cast<int16_t>(first))), scales16);
}

// The 2-bit levels of elements 64*pair .. 64*pair + 63 of a 128-element half of q2_k/q3_k:
// bits 4*pair (the first 32) and 4*pair + 2 (the next 32) of the half's 32 bytes.
inline __m512i two_bit_pair(__m512i half_bytes, int pair) {
  const __m512i shifts = _mm512_mask_set1_epi16(_mm512_set1_epi16(static_cast<int16_t>(4 * pair)),
                                                0xffff0000, static_cast<int16_t>(4 * pair + 2));
  return _mm512_and_si512(_mm512_srlv_epi16(half_bytes, shifts), _mm512_set1_epi8(3));
}

// The 32 bytes at p in both 256-bit halves.
inline __m512i broadcast256(const uint8_t* p) {
  return _mm512_broadcast_i64x4(load256(p));
}

template <int T>
void row_q2_k_512(const uint8_t* wr, const uint8_t* const* xs, int64_t n, float* out) {
  const auto* w = reinterpret_cast<const block_q2_k*>(wr);
  act_q8_k a[T];
  for (int t = 0; t < T; ++t) a[t] = view_q8_k(xs[t], n);
  __m512 acc[T];
  __m256 corr[T];  // Σ dmin*dx*m_j*bsum_j, reduced at the end
  for (int t = 0; t < T; ++t) {
    acc[t] = _mm512_setzero_ps();
    corr[t] = _mm256_setzero_ps();
  }
  for (int64_t b = 0; b < n / qk_k; ++b) {
    const block_q2_k& wb = w[b];
    const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(wb.scales));
    const __m512i sc16 =
        _mm512_zextsi256_si512(_mm256_cvtepu8_epi16(_mm_and_si128(packed, _mm_set1_epi8(0x0f))));
    const __m256i mins16 =
        _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(packed, 4), _mm_set1_epi8(0x0f)));
    __m512i isum[T];
    for (int t = 0; t < T; ++t) isum[t] = _mm512_setzero_si512();
    for (int half = 0; half < 2; ++half) {
      const __m512i bytes = broadcast256(wb.qs + 32 * half);
      for (int pair = 0; pair < 2; ++pair) {
        const __m512i q = two_bit_pair(bytes, pair);
        const __m512i s16 = spread_scales16(sc16, 8 * half + 4 * pair);
        for (int t = 0; t < T; ++t) {
          const __m512i x = _mm512_loadu_si512(a[t].qs + b * qk_k + 128 * half + 64 * pair);
          isum[t] = _mm512_add_epi32(isum[t], _mm512_madd_epi16(_mm512_maddubs_epi16(q, x), s16));
        }
      }
    }
    const float d = _cvtsh_ss(wb.d), dmin = _cvtsh_ss(wb.dmin);
    for (int t = 0; t < T; ++t) {
      const float dx = a[t].d[b];
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_set1_ps(d * dx), acc[t]);
      const __m256i mins = _mm256_madd_epi16(load256(a[t].bsums + b * 16), mins16);
      corr[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mins), _mm256_set1_ps(dmin * dx), corr[t]);
    }
  }
  for (int t = 0; t < T; ++t)
    out[t] = _mm512_reduce_add_ps(_mm512_sub_ps(acc[t], _mm512_zextps256_ps512(corr[t])));
}

// q3_k: levels u = low | high << 2 in [0, 7] stand for u - 4 (see row_q3_k).
template <int T>
void row_q3_k_512(const uint8_t* wr, const uint8_t* const* xs, int64_t n, float* out) {
  const auto* w = reinterpret_cast<const block_q3_k*>(wr);
  act_q8_k a[T];
  for (int t = 0; t < T; ++t) a[t] = view_q8_k(xs[t], n);
  __m512 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
  const __m512i one = _mm512_set1_epi8(1);
  for (int64_t b = 0; b < n / qk_k; ++b) {
    const block_q3_k& wb = w[b];
    const q3_k_codes codes = unpack_q3_k_codes(wb.scales);
    const __m128i code_bytes =
        _mm_setr_epi32(static_cast<int>(codes.w[0]), static_cast<int>(codes.w[1]),
                       static_cast<int>(codes.w[2]), static_cast<int>(codes.w[3]));
    const __m256i scales16 = _mm256_cvtepi8_epi16(_mm_sub_epi8(code_bytes, _mm_set1_epi8(32)));
    const __m512i sc16 = _mm512_zextsi256_si512(scales16);
    const __m512i hm = broadcast256(wb.hmask);
    __m512i isum[T];
    for (int t = 0; t < T; ++t) isum[t] = _mm512_setzero_si512();
    for (int half = 0; half < 2; ++half) {
      const __m512i bytes = broadcast256(wb.qs + 32 * half);
      for (int pair = 0; pair < 2; ++pair) {
        // High bit of element 32*s + l of this half: bit 4*half + s of hmask[l].
        const int s = 2 * pair;
        const __m512i hshift =
            _mm512_mask_set1_epi16(_mm512_set1_epi16(static_cast<int16_t>(4 * half + s)),
                                   0xffff0000, static_cast<int16_t>(4 * half + s + 1));
        const __m512i high = _mm512_and_si512(_mm512_srlv_epi16(hm, hshift), one);
        const __m512i u = _mm512_or_si512(two_bit_pair(bytes, pair), _mm512_slli_epi16(high, 2));
        const __m512i s16 = spread_scales16(sc16, 8 * half + 4 * pair);
        for (int t = 0; t < T; ++t) {
          const __m512i x = _mm512_loadu_si512(a[t].qs + b * qk_k + 128 * half + 64 * pair);
          isum[t] = _mm512_add_epi32(isum[t], _mm512_madd_epi16(_mm512_maddubs_epi16(u, x), s16));
        }
      }
    }
    const float d = _cvtsh_ss(wb.d);
    for (int t = 0; t < T; ++t) {
      const __m256i offsets = _mm256_madd_epi16(load256(a[t].bsums + b * 16), scales16);
      const __m512i total =
          _mm512_sub_epi32(isum[t], _mm512_zextsi256_si512(_mm256_slli_epi32(offsets, 2)));
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(total), _mm512_set1_ps(d * a[t].d[b]), acc[t]);
    }
  }
  for (int t = 0; t < T; ++t) out[t] = _mm512_reduce_add_ps(acc[t]);
}

// iq4_xs: sub-blocks 2c and 2c + 1 in one register; |level| times x with the level's sign.
template <int T>
void row_iq4_xs_512(const uint8_t* wr, const uint8_t* const* xs, int64_t n, float* out) {
  const auto* w = reinterpret_cast<const block_iq4_xs*>(wr);
  act_q8_k a[T];
  for (int t = 0; t < T; ++t) a[t] = view_q8_k(xs[t], n);
  __m512 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
  const __m512i table =
      _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(iq4_levels)));
  const __m512i zero = _mm512_setzero_si512();
  for (int64_t b = 0; b < n / qk_k; ++b) {
    const block_iq4_xs& wb = w[b];
    uint32_t low_codes;  // nibble j: low 4 bits of sub-block j's code
    std::memcpy(&low_codes, wb.scales_l, 4);
    const uint32_t high_codes = wb.scales_h;
    __m512i isum[T];
    for (int t = 0; t < T; ++t) isum[t] = _mm512_setzero_si512();
    for (int c = 0; c < 4; ++c) {
      const int j = 2 * c;
      const int code0 =
          static_cast<int>(((low_codes >> (4 * j)) & 0xf) | (((high_codes >> (2 * j)) & 3) << 4));
      const int code1 = static_cast<int>(((low_codes >> (4 * j + 4)) & 0xf) |
                                         (((high_codes >> (2 * j + 2)) & 3) << 4));
      const __m512i s16 =
          _mm512_mask_set1_epi16(_mm512_set1_epi16(static_cast<int16_t>(code0 - 32)), 0xffff0000,
                                 static_cast<int16_t>(code1 - 32));
      const __m512i v = _mm512_shuffle_epi8(table, nibbles2(wb.qs + 16 * j, wb.qs + 16 * j + 16));
      const __m512i magnitude = _mm512_abs_epi8(v);
      const __mmask64 negative = _mm512_movepi8_mask(v);
      for (int t = 0; t < T; ++t) {
        __m512i x = _mm512_loadu_si512(a[t].qs + b * qk_k + 64 * c);
        x = _mm512_mask_sub_epi8(x, negative, zero, x);
        isum[t] =
            _mm512_add_epi32(isum[t], _mm512_madd_epi16(_mm512_maddubs_epi16(magnitude, x), s16));
      }
    }
    const float d = _cvtsh_ss(wb.d);
    for (int t = 0; t < T; ++t) {
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_set1_ps(d * a[t].d[b]), acc[t]);
    }
  }
  for (int t = 0; t < T; ++t) out[t] = _mm512_reduce_add_ps(acc[t]);
}

template <int T>
struct q2_k_row_512 {
  static void run(const uint8_t* w, const uint8_t* const* xs, int64_t n, float* out) {
    row_q2_k_512<T>(w, xs, n, out);
  }
};
template <int T>
struct q3_k_row_512 {
  static void run(const uint8_t* w, const uint8_t* const* xs, int64_t n, float* out) {
    row_q3_k_512<T>(w, xs, n, out);
  }
};
template <int T>
struct iq4_xs_row_512 {
  static void run(const uint8_t* w, const uint8_t* const* xs, int64_t n, float* out) {
    row_iq4_xs_512<T>(w, xs, n, out);
  }
};

// ---- float weights, 16 at a time.

struct f32_load512 {
  static __m512 load(const uint8_t* w, int64_t i) {
    return _mm512_loadu_ps(reinterpret_cast<const float*>(w) + i);
  }
  using scalar = f32_load;
};
struct f16_load512 {
  static __m512 load(const uint8_t* w, int64_t i) {
    return _mm512_cvtph_ps(load256(reinterpret_cast<const fp16_t*>(w) + i));
  }
  using scalar = f16_load;
};
struct bf16_load512 {
  static __m512 load(const uint8_t* w, int64_t i) {
    const __m256i h = load256(reinterpret_cast<const bf16_t*>(w) + i);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  using scalar = bf16_load;
};

template <class L, int T>
void row_float_512(const uint8_t* w, const uint8_t* const* xs, int64_t n, float* out) {
  const float* x[T];
  for (int t = 0; t < T; ++t) x[t] = reinterpret_cast<const float*>(xs[t]);
  __m512 acc[T];  // one order of summation at every tile size, as in row_q8_32
  for (auto& a : acc) a = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 wv = L::load(w, i);
    for (int t = 0; t < T; ++t) acc[t] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x[t] + i), acc[t]);
  }
  for (int t = 0; t < T; ++t) {
    float s = _mm512_reduce_add_ps(acc[t]);
    for (int64_t j = i; j < n; ++j) s += L::scalar::scalar(w, j) * x[t][j];
    out[t] = s;
  }
}

// ---- attention tiles (dispatch.h) on 512-bit vectors: a tile's 16 positions are one vector.
// Each head's sums run in the same order whatever the number of heads a call takes, so a
// token's attention does not depend on how its batch split the heads (split_attention).
static_assert(kv_block_size == 16, "a tile's positions are one 512-bit vector");

// Two chains per head (even and odd elements), joined at the end: one chain would wait on
// each multiply-add when a call takes few heads.
template <class L, int G>
void tile_scores_512(const uint8_t* k, const float* q, int hd, float* scores) {
  __m512 even[G], odd[G];
  for (int g = 0; g < G; ++g) even[g] = odd[g] = _mm512_setzero_ps();
  int d = 0;
  for (; d + 2 <= hd; d += 2) {
    const __m512 k0 = L::load(k, d * kv_block_size), k1 = L::load(k, (d + 1) * kv_block_size);
    for (int g = 0; g < G; ++g) {
      even[g] = _mm512_fmadd_ps(_mm512_set1_ps(q[g * hd + d]), k0, even[g]);
      odd[g] = _mm512_fmadd_ps(_mm512_set1_ps(q[g * hd + d + 1]), k1, odd[g]);
    }
  }
  if (d < hd) {
    const __m512 k0 = L::load(k, d * kv_block_size);
    for (int g = 0; g < G; ++g)
      even[g] = _mm512_fmadd_ps(_mm512_set1_ps(q[g * hd + d]), k0, even[g]);
  }
  for (int g = 0; g < G; ++g)
    _mm512_storeu_ps(scores + g * kv_block_size, _mm512_add_ps(even[g], odd[g]));
}

template <class L>
void tile_scores_v512(const uint8_t* k, const float* q, int n_q, int hd, float* scores) {
  in_head_groups<8>(n_q, [&]<int G>(int g0) {
    tile_scores_512<L, G>(k, q + g0 * hd, hd, scores + g0 * kv_block_size);
  });
}

// C vectors of 16 output elements of G heads stay in registers over all rows (C larger for
// fewer heads, so that enough independent sums run); each value vector is loaded once.
template <class L, int G, int C>
void weighted_chunks_512(const float* p, int64_t p_stride, const uint8_t* v, int n_rows, int hd,
                         int d0, float* out) {
  __m512 acc[G][C];
  for (int g = 0; g < G; ++g)
    for (int c = 0; c < C; ++c) acc[g][c] = _mm512_loadu_ps(out + g * hd + d0 + 16 * c);
  for (int j = 0; j < n_rows; ++j) {
    __m512 vj[C];
    for (int c = 0; c < C; ++c) vj[c] = L::load(v, int64_t{j} * hd + d0 + 16 * c);
    for (int g = 0; g < G; ++g) {
      const __m512 pj = _mm512_set1_ps(p[g * p_stride + j]);
      for (int c = 0; c < C; ++c) acc[g][c] = _mm512_fmadd_ps(pj, vj[c], acc[g][c]);
    }
  }
  for (int g = 0; g < G; ++g)
    for (int c = 0; c < C; ++c) _mm512_storeu_ps(out + g * hd + d0 + 16 * c, acc[g][c]);
}

template <class L, int G>
void weighted_rows_512(const float* p, int64_t p_stride, const uint8_t* v, int n_rows, int hd,
                       float* out) {
  constexpr int chunks = std::max(1, 8 / G);
  int d = 0;
  for (; d + 16 * chunks <= hd; d += 16 * chunks)
    weighted_chunks_512<L, G, chunks>(p, p_stride, v, n_rows, hd, d, out);
  for (; d + 16 <= hd; d += 16) weighted_chunks_512<L, G, 1>(p, p_stride, v, n_rows, hd, d, out);
  for (; d < hd; ++d)
    for (int g = 0; g < G; ++g)
      for (int j = 0; j < n_rows; ++j)
        out[g * hd + d] += p[g * p_stride + j] * L::scalar::scalar(v, int64_t{j} * hd + d);
}

template <class L>
void weighted_rows_v512(const float* p, int64_t p_stride, int n_q, const uint8_t* v, int n_rows,
                        int hd, float* out) {
  in_head_groups<8>(n_q, [&]<int G>(int g0) {
    weighted_rows_512<L, G>(p + g0 * p_stride, p_stride, v, n_rows, hd, out + g0 * hd);
  });
}

template <class L>
struct float_rows_512 {
  template <int T>
  struct row {
    static void run(const uint8_t* w, const uint8_t* const* xs, int64_t n, float* out) {
      row_float_512<L, T>(w, xs, n, out);
    }
  };
};

template <bool five>
struct qk_affine_rows_512 {
  template <int T>
  struct row {
    static void run(const uint8_t* w, const uint8_t* const* xs, int64_t n, float* out) {
      row_qk_affine_512<five, T>(w, xs, n, out);
    }
  };
};
template <int T>
struct q6_k_row_512 {
  static void run(const uint8_t* w, const uint8_t* const* xs, int64_t n, float* out) {
    row_q6_k_512<T>(w, xs, n, out);
  }
};

template <class P>
struct rows_512 {
  template <int T>
  struct row {
    static void run(const uint8_t* w, const uint8_t* const* xs, int64_t n, float* out) {
      row_q8_32<P, T>(w, xs, n, out);
    }
  };
};

}  // namespace
}  // namespace avx512

void fill_avx512_kernels(kernel_table& t) {
  avx512::fill_table(t);
  t.quantize_q8_32 = avx512::quantize_q8_32_grouped;
  t.tile_scores_f16 = avx512::tile_scores_v512<avx512::f16_load512>;
  t.tile_scores_f32 = avx512::tile_scores_v512<avx512::f32_load512>;
  t.weighted_rows_f16 = avx512::weighted_rows_v512<avx512::f16_load512>;
  t.weighted_rows_f32 = avx512::weighted_rows_v512<avx512::f32_load512>;
  t.gemm[slot_f32] = avx512::gemm_tiled<avx512::float_rows_512<avx512::f32_load512>::row>;
  t.gemm[slot_f16] = avx512::gemm_tiled<avx512::float_rows_512<avx512::f16_load512>::row>;
  t.gemm[slot_bf16] = avx512::gemm_tiled<avx512::float_rows_512<avx512::bf16_load512>::row>;

  t.gemm[slot_q4_0] = avx512::gemm_tiled<avx512::rows_512<avx512::q4_0_w>::row>;
  t.gemm[slot_q4_1] = avx512::gemm_tiled<avx512::rows_512<avx512::q4_1_w>::row>;
  t.gemm[slot_q5_0] = avx512::gemm_tiled<avx512::rows_512<avx512::q5_0_w>::row>;
  t.gemm[slot_q5_1] = avx512::gemm_tiled<avx512::rows_512<avx512::q5_1_w>::row>;
  t.gemm[slot_q8_0] = avx512::gemm_tiled<avx512::rows_512<avx512::q8_0_w>::row>;
  t.gemm[slot_iq4_nl] = avx512::gemm_tiled<avx512::rows_512<avx512::iq4_nl_w>::row>;
  t.gemm[slot_q4_k] = avx512::gemm_tiled<avx512::qk_affine_rows_512<false>::row, 4>;
  t.gemm[slot_q5_k] = avx512::gemm_tiled<avx512::qk_affine_rows_512<true>::row, 4>;
  t.gemm[slot_q6_k] = avx512::gemm_tiled<avx512::q6_k_row_512, 4>;
  t.gemm[slot_q2_k] = avx512::gemm_tiled<avx512::q2_k_row_512, 4>;
  t.gemm[slot_q3_k] = avx512::gemm_tiled<avx512::q3_k_row_512, 4>;
  t.gemm[slot_iq4_xs] = avx512::gemm_tiled<avx512::iq4_xs_row_512, 4>;

  using avx512::gemm_rows16, avx512::gemm_tiled, avx512::q8_32_rows16, avx512::rows_512;
  t.gemm_rows16[slot_q4_0] =
      gemm_rows16<q8_32_rows16<avx512::q4_0_rows16>, gemm_tiled<rows_512<avx512::q4_0_w>::row>>;
  t.gemm_rows16[slot_q8_0] =
      gemm_rows16<q8_32_rows16<avx512::q8_0_rows16>, gemm_tiled<rows_512<avx512::q8_0_w>::row>>;
  t.gemm_rows16[slot_q4_k] =
      gemm_rows16<avx512::q4_k_rows16, gemm_tiled<avx512::qk_affine_rows_512<false>::row, 4>>;
  t.prefers_rows16 = true;
}

}  // namespace rbee::engine::cpu
