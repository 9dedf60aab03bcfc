#pragma once
// Unpacking of the integer block types, 32 elements (a "chunk") at a time, into signed 8-bit
// integers and scales: element j of chunk u of a row is
//   sc0 * q[j] + mn  (j < 16),  sc1 * q[j] + mn1  (j >= 16),
// with q[j] the j-th byte of the ints q[0..7]; mn1 == mn except for the types whose halves
// have their own minimum (block_traits::split_min: q2_k). Offsets (q - 8, q - 32, ...) and
// the non-linear levels of iq4_nl/iq4_xs are folded into q, so a dot product with q8
// activations is one dp4a sequence per half plus mn * sum(x) (per half for split_min).
// Layouts are ggml's (tensor_types.h), except Q4_0, Q8_0 and Q6_K rows, which are repacked
// on the device (ops.h: each field of all blocks together) for 16-byte loads.
#include <type_traits>

#include "engine/cuda/common.cuh"

namespace rbee::engine::cuda {

struct chunk {
  int q[8];
  float sc0, sc1, mn, mn1;
};

template <tensor_type T>
struct block_traits {
  static constexpr bool split_min = false;
};
template <>
struct block_traits<tensor_type::q4_0> {
  static constexpr int bytes = 18, chunks = 1;
  static constexpr bool split_min = false;
};
template <>
struct block_traits<tensor_type::q4_1> {
  static constexpr int bytes = 20, chunks = 1;
  static constexpr bool split_min = false;
};
template <>
struct block_traits<tensor_type::q5_0> {
  static constexpr int bytes = 22, chunks = 1;
  static constexpr bool split_min = false;
};
template <>
struct block_traits<tensor_type::q5_1> {
  static constexpr int bytes = 24, chunks = 1;
  static constexpr bool split_min = false;
};
template <>
struct block_traits<tensor_type::q8_0> {
  static constexpr int bytes = 34, chunks = 1;
  static constexpr bool split_min = false;
};
template <>
struct block_traits<tensor_type::q4_k> {
  static constexpr int bytes = 144, chunks = 8;
  static constexpr bool split_min = false;
};
template <>
struct block_traits<tensor_type::q5_k> {
  static constexpr int bytes = 176, chunks = 8;
  static constexpr bool split_min = false;
};
template <>
struct block_traits<tensor_type::q6_k> {
  static constexpr int bytes = 210, chunks = 8;
  static constexpr bool split_min = false;
};

template <>
struct block_traits<tensor_type::q2_k> {
  static constexpr int bytes = 84, chunks = 8;
  static constexpr bool split_min = true;
};
template <>
struct block_traits<tensor_type::q3_k> {
  static constexpr int bytes = 110, chunks = 8;
  static constexpr bool split_min = false;
};
template <>
struct block_traits<tensor_type::iq4_nl> {
  static constexpr int bytes = 18, chunks = 1;
  static constexpr bool split_min = false;
};
template <>
struct block_traits<tensor_type::iq4_xs> {
  static constexpr int bytes = 136, chunks = 8;
  static constexpr bool split_min = false;
};

// Four iq4 levels, bytes of one word (levels 4k..4k+3 in word k).
constexpr uint32_t iq4_level_word(int k) {
  uint32_t w = 0;
  for (int i = 0; i < 4; ++i)
    w |= static_cast<uint32_t>(static_cast<uint8_t>(iq4_levels[4 * k + i])) << (8 * i);
  return w;
}
// Scalars, not an array: device code may use constexpr variables of scalar type only.
constexpr uint32_t iq4_word0 = iq4_level_word(0), iq4_word1 = iq4_level_word(1),
                   iq4_word2 = iq4_level_word(2), iq4_word3 = iq4_level_word(3);

// The iq4 levels of 4 indices (0..15, one per byte of idx), as 4 signed bytes: each byte is
// looked up among levels 0..7 and 8..15 (__byte_perm picks bytes of an 8-byte pair by 3-bit
// selectors) and bit 3 of the index chooses.
__device__ __forceinline__ int iq4_lookup4(uint32_t idx) {
  const uint32_t sel =
      (idx & 0x7u) | ((idx >> 4) & 0x70u) | ((idx >> 8) & 0x700u) | ((idx >> 12) & 0x7000u);
  const uint32_t lo = __byte_perm(iq4_word0, iq4_word1, sel);
  const uint32_t hi = __byte_perm(iq4_word2, iq4_word3, sel);
  const uint32_t upper = ((idx >> 3) & 0x01010101u) * 0xFFu;
  return static_cast<int>((lo & ~upper) | (hi & upper));
}

// The signed scale (code - 32) of sub-block j of a q3_k block from its 12 scale bytes as the
// words b0..b2: the code's low 4 bits are nibble j/8 of byte j%8, its high 2 bits sit at bit
// 2*(j/4) of byte 8 + j%4.
__device__ __forceinline__ int q3_k_scale(uint32_t b0, uint32_t b1, uint32_t b2, int j) {
  const uint64_t low_bytes = static_cast<uint64_t>(b0) | (static_cast<uint64_t>(b1) << 32);
  const int low = static_cast<int>((low_bytes >> (8 * (j % 8) + 4 * (j / 8))) & 0xF);
  const int high = static_cast<int>((b2 >> (8 * (j % 4) + 2 * (j / 4))) & 3);
  return (low | (high << 4)) - 32;
}

// The 5th bits of 4 elements (bits 0..3 of b) moved to bit 4 of each byte.
__device__ __forceinline__ int spread_bit4(uint32_t b) {
  return static_cast<int>(((b & 1u) << 4) | ((b & 2u) << 11) | ((b & 4u) << 18) | ((b & 8u) << 25));
}

// n bytes (a multiple of 16) at p into words: 16-byte loads when p is aligned (rows whose
// size is a multiple of 16 bytes), else 2-byte loads.
template <int N>
__device__ __forceinline__ void load_words(const uint8_t* p, uint32_t (&w)[N / 4]) {
  if ((reinterpret_cast<uintptr_t>(p) & 15) == 0) {
#pragma unroll
    for (int i = 0; i < N / 16; ++i) {
      const uint4 v = reinterpret_cast<const uint4*>(p)[i];
      w[4 * i] = v.x, w[4 * i + 1] = v.y, w[4 * i + 2] = v.z, w[4 * i + 3] = v.w;
    }
  } else {
#pragma unroll
    for (int i = 0; i < N / 4; ++i) w[i] = load_u32_a2(p + 4 * i);
  }
}

// Calls f(std::integral_constant<tensor_type, T>{}) for the integer type `type` and returns
// true; false for the other types. The one list of the types decode_chunk knows, for every
// launcher of a kernel templated on it.
template <class F>
bool with_integer_type(tensor_type type, F&& f) {
  switch (type) {
#define RBEE_T(T)                                             \
  case tensor_type::T:                                        \
    f(std::integral_constant<tensor_type, tensor_type::T>{}); \
    return true;
    RBEE_T(q4_0)
    RBEE_T(q4_1)
    RBEE_T(q5_0)
    RBEE_T(q5_1)
    RBEE_T(q8_0)
    RBEE_T(q4_k)
    RBEE_T(q5_k)
    RBEE_T(q6_k)
    RBEE_T(q2_k)
    RBEE_T(q3_k)
    RBEE_T(iq4_nl)
    RBEE_T(iq4_xs)
#undef RBEE_T
    default:
      return false;
  }
}

// Chunk u of a row of n_blocks chunks (n_blocks matters for the repacked types only).
template <tensor_type T>
__device__ __forceinline__ chunk decode_chunk(const uint8_t* row, int u, int n_blocks) {
  chunk c;
  constexpr int nb = block_traits<T>::bytes, nc = block_traits<T>::chunks;
  const uint8_t* b = row + static_cast<size_t>(u / nc) * nb;
  if constexpr (T == tensor_type::q4_0) {
    uint32_t w[4];
    load_words<16>(row + 16 * static_cast<size_t>(u), w);
    c.sc0 = c.sc1 = h2f(load_u16(row + 16 * static_cast<size_t>(n_blocks) + 2 * u));
    c.mn = 0.0f;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      c.q[i] = static_cast<int>(__vsub4(w[i] & 0x0F0F0F0Fu, 0x08080808u));
      c.q[i + 4] = static_cast<int>(__vsub4((w[i] >> 4) & 0x0F0F0F0Fu, 0x08080808u));
    }
  } else if constexpr (T == tensor_type::q4_1) {
    c.sc0 = c.sc1 = h2f(load_u16(b));
    c.mn = h2f(load_u16(b + 2));
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint32_t w = load_u32(b + 4 + 4 * i);
      c.q[i] = static_cast<int>(w & 0x0F0F0F0Fu);
      c.q[i + 4] = static_cast<int>((w >> 4) & 0x0F0F0F0Fu);
    }
  } else if constexpr (T == tensor_type::q5_0 || T == tensor_type::q5_1) {
    constexpr bool has_min = T == tensor_type::q5_1;
    const uint8_t* qh_at = b + (has_min ? 4 : 2);
    const uint32_t qh = has_min ? load_u32(qh_at) : load_u32_a2(qh_at);
    c.sc0 = c.sc1 = h2f(load_u16(b));
    c.mn = has_min ? h2f(load_u16(b + 2)) : 0.0f;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint32_t w = has_min ? load_u32(qh_at + 4 + 4 * i) : load_u32_a2(qh_at + 4 + 4 * i);
      uint32_t lo = (w & 0x0F0F0F0Fu) | spread_bit4((qh >> (4 * i)) & 0xF);
      uint32_t hi = ((w >> 4) & 0x0F0F0F0Fu) | spread_bit4((qh >> (16 + 4 * i)) & 0xF);
      if (!has_min) {
        lo = __vsub4(lo, 0x10101010u);
        hi = __vsub4(hi, 0x10101010u);
      }
      c.q[i] = static_cast<int>(lo);
      c.q[i + 4] = static_cast<int>(hi);
    }
  } else if constexpr (T == tensor_type::q8_0) {
    uint32_t w[8];
    load_words<32>(row + 32 * static_cast<size_t>(u), w);
    c.sc0 = c.sc1 = h2f(load_u16(row + 32 * static_cast<size_t>(n_blocks) + 2 * u));
    c.mn = 0.0f;
#pragma unroll
    for (int i = 0; i < 8; ++i) c.q[i] = static_cast<int>(w[i]);
  } else if constexpr (T == tensor_type::q4_k || T == tensor_type::q5_k) {
    // Sub-block s of 32: qs bytes 32*(s/2).., low nibbles for even s, high for odd.
    constexpr bool five = T == tensor_type::q5_k;
    const int s = u % 8;
    // d, dmin and the 12 scale bytes in one 16-byte load; bytes picked by shifts (a
    // runtime index into a register array would go through local memory).
    uint32_t hw[4];
    load_words<16>(b, hw);
    const int shift = 8 * (s & 3);
    const int b1 = (hw[1] >> shift) & 0xFF, b2 = (hw[2] >> shift) & 0xFF,
              b3 = (hw[3] >> shift) & 0xFF;  // scales[s%4], [s%4 + 4], [s%4 + 8]
    const int sc = s < 4 ? b1 & 63 : (b3 & 0xF) | ((b1 >> 6) << 4);
    const int m = s < 4 ? b2 & 63 : (b3 >> 4) | ((b2 >> 6) << 4);
    c.sc0 = c.sc1 = h2f(static_cast<uint16_t>(hw[0] & 0xFFFF)) * static_cast<float>(sc);
    c.mn = -h2f(static_cast<uint16_t>(hw[0] >> 16)) * static_cast<float>(m);
    // Super-blocks of 144 and 176 bytes keep the 32-byte runs 16-byte aligned.
    const uint8_t* qs = b + (five ? 48 : 16) + 32 * (s / 2);
    const int nibble = 4 * (s & 1);
    uint32_t w[8];
    load_words<32>(qs, w);
    uint32_t h[8];
    if constexpr (five) load_words<32>(b + 16, h);
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      uint32_t v = (w[i] >> nibble) & 0x0F0F0F0Fu;
      if constexpr (five) v |= ((h[i] >> s) & 0x01010101u) << 4;
      c.q[i] = static_cast<int>(v);
    }
  } else if constexpr (T == tensor_type::q2_k || T == tensor_type::q3_k) {
    // Chunk c of a super-block: half c/4 of 128, levels at bits 2*(c%4) of the half's 32
    // qs bytes; sub-blocks 2c and 2c + 1. q3_k's 110-byte blocks are only 2-byte aligned.
    const int ci = u % 8, half = ci / 4, shift = 2 * (ci % 4);
    constexpr int qs_at = T == tensor_type::q2_k ? 16 : 32;
    uint32_t w[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) w[i] = load_u32_a2(b + qs_at + 32 * half + 4 * i);
    if constexpr (T == tensor_type::q2_k) {
      const float d = h2f(load_u16(b + 80)), dmin = h2f(load_u16(b + 82));
      const int s0 = b[2 * ci], s1 = b[2 * ci + 1];
      c.sc0 = d * static_cast<float>(s0 & 0xF);
      c.sc1 = d * static_cast<float>(s1 & 0xF);
      c.mn = -dmin * static_cast<float>(s0 >> 4);
      c.mn1 = -dmin * static_cast<float>(s1 >> 4);
#pragma unroll
      for (int i = 0; i < 8; ++i) c.q[i] = static_cast<int>((w[i] >> shift) & 0x03030303u);
      return c;
    } else {
      // High bit of element l of the chunk: bit ci of hmask[l]; a clear bit means q - 4.
      const float d = h2f(load_u16(b + 108));
      const uint32_t b0 = load_u32_a2(b + 96), b1 = load_u32_a2(b + 100), b2 = load_u32_a2(b + 104);
      c.sc0 = d * static_cast<float>(q3_k_scale(b0, b1, b2, 2 * ci));
      c.sc1 = d * static_cast<float>(q3_k_scale(b0, b1, b2, 2 * ci + 1));
      c.mn = 0.0f;
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const uint32_t high = (load_u32_a2(b + 4 * i) >> ci) & 0x01010101u;
        const uint32_t v = ((w[i] >> shift) & 0x03030303u) | (high << 2);
        c.q[i] = static_cast<int>(__vsub4(v, 0x04040404u));
      }
    }
  } else if constexpr (T == tensor_type::iq4_nl || T == tensor_type::iq4_xs) {
    // iq4_nl: d, then 16 nibble bytes (2-byte aligned). iq4_xs: chunk ci is sub-block ci, its
    // 6-bit scale code split between scales_l and scales_h, its nibbles at 8 + 16 * ci.
    const uint8_t* qs;
    if constexpr (T == tensor_type::iq4_nl) {
      c.sc0 = c.sc1 = h2f(load_u16(b));
      qs = b + 2;
    } else {
      const int ci = u % 8;
      const int code =
          ((b[4 + ci / 2] >> (4 * (ci % 2))) & 0xF) | (((load_u16(b + 2) >> (2 * ci)) & 3) << 4);
      c.sc0 = c.sc1 = h2f(load_u16(b)) * static_cast<float>(code - 32);
      qs = b + 8 + 16 * ci;
    }
    c.mn = 0.0f;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint32_t w = load_u32_a2(qs + 4 * i);
      c.q[i] = iq4_lookup4(w & 0x0F0F0F0Fu);
      c.q[i + 4] = iq4_lookup4((w >> 4) & 0x0F0F0F0Fu);
    }
  } else if constexpr (T == tensor_type::q6_k) {
    // Repacked rows (repack.cu): ql of every super-block, then qh, scales, d. Chunk ci of 32
    // in a super-block: half h = ci/4 of 128, quarter k = ci%4 within it.
    const int nsb = n_blocks / 8, sb = u / 8;
    const int ci = u % 8, h = ci / 4, k = ci % 4;
    const uint8_t* ql = row + 128 * static_cast<size_t>(sb) + h * 64 + (k & 1) * 32;
    const uint8_t* qh = row + 128 * static_cast<size_t>(nsb) + 64 * sb + h * 32;
    const uint16_t sc2 = load_u16(row + 192 * static_cast<size_t>(nsb) + 16 * sb + h * 8 + 2 * k);
    const float d = h2f(load_u16(row + 208 * static_cast<size_t>(nsb) + 2 * sb));
    c.sc0 = d * static_cast<float>(static_cast<int8_t>(sc2 & 0xFF));
    c.sc1 = d * static_cast<float>(static_cast<int8_t>(sc2 >> 8));
    c.mn = 0.0f;
    const int lshift = 4 * (k >> 1), hshift = 2 * k;
    uint32_t wl[8], wh[8];
    load_words<32>(ql, wl);
    load_words<32>(qh, wh);
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const uint32_t lo = (wl[i] >> lshift) & 0x0F0F0F0Fu;
      const uint32_t hi = ((wh[i] >> hshift) & 0x03030303u) << 4;
      c.q[i] = static_cast<int>(__vsub4(lo | hi, 0x20202020u));
    }
  }
  c.mn1 = c.mn;  // one minimum for the chunk (q2_k returned with its two above)
  return c;
}

// Element j (0..31) of a decoded chunk.
__device__ __forceinline__ float chunk_value(const chunk& c, int j) {
  const int8_t q = static_cast<int8_t>((c.q[j / 4] >> (8 * (j % 4))) & 0xFF);
  return j < 16 ? c.sc0 * static_cast<float>(q) + c.mn : c.sc1 * static_cast<float>(q) + c.mn1;
}

// A decoded chunk as fp16 pairs (elements 2j, 2j + 1): the batched products' weight tiles.
// Without int -> float conversions (a quarter of the rate of plain arithmetic): a byte b + 128
// under the high byte 0x64 is the half 1024 + b + 128, exactly; subtracting 1152 leaves b, and
// one half2 multiply-add applies the scale and minimum (rounded to half first).
__device__ __forceinline__ void chunk_to_half2(const chunk& c, __half2 (&h)[16]) {
  const __half2 bias = __float2half2_rn(1152.0f);
  const __half2 sc[2] = {__float2half2_rn(c.sc0), __float2half2_rn(c.sc1)};
  const __half2 mn[2] = {__float2half2_rn(c.mn), __float2half2_rn(c.mn1)};
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const uint32_t u = static_cast<uint32_t>(c.q[i]) ^ 0x80808080u;  // each byte b + 128
    const uint32_t lo = __byte_perm(u, 0x64646464u, 0x4140);         // bytes 0, 1 under 0x64
    const uint32_t hi = __byte_perm(u, 0x64646464u, 0x4342);         // bytes 2, 3
    const __half2 q_lo = __hsub2(*reinterpret_cast<const __half2*>(&lo), bias);
    const __half2 q_hi = __hsub2(*reinterpret_cast<const __half2*>(&hi), bias);
    h[2 * i] = __hfma2(q_lo, sc[i / 4], mn[i / 4]);
    h[2 * i + 1] = __hfma2(q_hi, sc[i / 4], mn[i / 4]);
  }
}

// Chunk c of a weight row against q8 activation block b (ops.h: q8_blocks): the dot product of
// the 32 elements, the minimums included (per half for split_min types).
template <tensor_type T>
__device__ __forceinline__ float chunk_dot_q8(const chunk& c, const q8_blocks& x, size_t b) {
  const int4* xq = reinterpret_cast<const int4*>(x.qs + 32 * b);
  const int4 x0 = xq[0], x1 = xq[1];
  const float2 ds = reinterpret_cast<const float2*>(x.ds)[b];
  int s0 = __dp4a(c.q[0], x0.x, 0);
  s0 = __dp4a(c.q[1], x0.y, s0);
  s0 = __dp4a(c.q[2], x0.z, s0);
  s0 = __dp4a(c.q[3], x0.w, s0);
  int s1 = __dp4a(c.q[4], x1.x, 0);
  s1 = __dp4a(c.q[5], x1.y, s1);
  s1 = __dp4a(c.q[6], x1.z, s1);
  s1 = __dp4a(c.q[7], x1.w, s1);
  const float scaled = c.sc0 * static_cast<float>(s0) + c.sc1 * static_cast<float>(s1);
  if constexpr (block_traits<T>::split_min) {
    // A minimum per half: the halves' activation sums, in units of ds.x.
    constexpr int ones = 0x01010101;
    const int h0 =
        __dp4a(ones, x0.w, __dp4a(ones, x0.z, __dp4a(ones, x0.y, __dp4a(ones, x0.x, 0))));
    const int h1 =
        __dp4a(ones, x1.w, __dp4a(ones, x1.z, __dp4a(ones, x1.y, __dp4a(ones, x1.x, 0))));
    return ds.x * (scaled + c.mn * static_cast<float>(h0) + c.mn1 * static_cast<float>(h1));
  }
  return ds.x * scaled + c.mn * ds.y;
}

}  // namespace rbee::engine::cuda
