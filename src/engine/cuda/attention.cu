// Decode/prefill attention over the fp16 KV cache, split across blocks along the context
// (flash-decoding): block (split, head, token) handles attention_split positions and writes
// its partial max, sum and weighted values; the last block of a (token, head) to finish
// combines them, so one launch does both. Blocks past a token's position exit at once, so
// the grid depends only on the cache rows (graph-friendly). A full-attention layer's cache is
// paged: a split finds the pool blocks of its positions in the sequence's block table. A
// sliding-window layer's cache is a ring (position p in row p % rows) of which a query reads
// its window.
#include <cassert>
#include <cmath>

#include "engine/cuda/check.h"
#include "engine/cuda/common.cuh"
#include "engine/cuda/launch.cuh"

namespace rbee::engine::cuda {

namespace {

constexpr int threads = 128;
constexpr int warps = threads / 32;
// Pool blocks one split's positions touch at most (a window need not start at a block).
constexpr int split_blocks = attention_split / kv_block_size + 1;

int n_splits(int n_ctx) {
  return (n_ctx + attention_split - 1) / attention_split;
}

// Joins n partials of one (token, head) at p into o (hd,), and its q8 blocks from q8_block on
// when out_q is set (hd % 32 == 0 then). Partials of other blocks are read past L1.
__device__ void combine(const float* p, int hd, int n, float* o, q8_blocks out_q, size_t q8_block) {
  float m = -INFINITY;
  for (int s = 0; s < n; ++s) m = fmaxf(m, __ldcg(p + s * (hd + 2) + hd));
  float l = 0.0f;
  for (int s = 0; s < n; ++s)
    l += __ldcg(p + s * (hd + 2) + hd + 1) * expf(__ldcg(p + s * (hd + 2) + hd) - m);
  const float inv_l = 1.0f / l;
  // Whole warps walk 32-element blocks so that each can quantize its block.
  for (int base = threadIdx.x / 32 * 32; base < hd; base += threads) {
    const int d = base + threadIdx.x % 32;
    float v = 0.0f;
    if (d < hd) {
      for (int s = 0; s < n; ++s) {
        const float* ps = p + s * (hd + 2);
        v += __ldcg(ps + d) * expf(__ldcg(ps + hd) - m);
      }
      v *= inv_l;
      o[d] = v;
    }
    if (out_q) store_q8(v, out_q, q8_block + base / 32);
  }
}

__global__ void __launch_bounds__(threads)
    split_kernel(const float* __restrict__ q, const __half* __restrict__ k_cache,
                 const __half* __restrict__ v_cache, const int32_t* __restrict__ pos,
                 const int32_t* __restrict__ seq, attention_shape s, float* __restrict__ part,
                 int* __restrict__ done, float* __restrict__ att_out, q8_blocks out_q) {
  const int n_head = s.n_head, hd = s.head_dim;
  extern __shared__ float dyn[];  // q (hd,), then per-warp partial outputs (warps, hd)
  float* q_s = dyn;
  float* o_s = dyn + hd;
  __shared__ float scores[attention_split];
  __shared__ float red[32];
  __shared__ int32_t blocks[split_blocks];
  wait_for_previous_kernel();
  const int sp = blockIdx.x, h = blockIdx.y, t = blockIdx.z, nsp = gridDim.x;
  const int first = s.window > 0 ? max(0, pos[t] - s.window + 1) : 0;
  const int n_kv = pos[t] + 1 - first, start = sp * attention_split;
  const int len = min(attention_split, n_kv - start);
  if (len <= 0) return;
  float* out = part + ((static_cast<size_t>(t) * n_head + h) * nsp + sp) * (hd + 2);
  const int kvh = h / (n_head / s.n_head_kv);
  const bool paged = s.block_table != nullptr;
  const int first_block = (first + start) / kv_block_size;
  const size_t head_base =
      paged ? static_cast<size_t>(kvh) * kv_block_size * hd
            : (static_cast<size_t>(seq[t]) * s.n_head_kv + kvh) * s.rows * static_cast<size_t>(hd);
  // Element offset of the i-th position of this split from head_base: in its pool block, or
  // in the ring.
  const auto row = [&](int i) {
    const int p = first + start + i;
    if (!paged) return static_cast<size_t>(p % s.rows) * static_cast<size_t>(hd);
    const size_t block = static_cast<size_t>(blocks[p / kv_block_size - first_block]);
    return (block * s.n_head_kv * kv_block_size + p % kv_block_size) * static_cast<size_t>(hd);
  };
  if (paged) {
    const int last_block = (first + start + len - 1) / kv_block_size;
    const int32_t* table = s.block_table + static_cast<size_t>(seq[t]) * s.max_blocks;
    for (int b = threadIdx.x; b <= last_block - first_block; b += threads)
      blocks[b] = table[first_block + b];
  }
  const __half* keys = k_cache + head_base;
  const __half* values = v_cache + head_base;
  const float* qt = q + (static_cast<size_t>(t) * n_head + h) * hd;
  for (int d = threadIdx.x; d < hd; d += threads) q_s[d] = qt[d];
  __syncthreads();
  // Scores. Rows of whole 16-byte vectors (hd % 8 == 0): a group of 8 lanes per position,
  // each lane a vector at a time, so a group reads its key row in coalesced pieces; otherwise
  // one position per thread.
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const auto finish_score = [&](float dot) {
    const float score = dot * s.scale;
    return s.softcap > 0.0f ? s.softcap * tanhf(score / s.softcap) : score;
  };
  float m = -INFINITY;
  if (hd % 8 == 0) {
    const int member = lane % 8;
    // Whole warps take every pass (len is the block's), so the shuffles see all lanes.
    for (int pass = 0; pass < len; pass += threads / 8) {
      const int i = pass + threadIdx.x / 8;
      float dot = 0.0f;
      if (i < len) {
        const __half* key = keys + row(i);
        for (int d = 8 * member; d < hd; d += 64) {
          const uint4 raw = *reinterpret_cast<const uint4*>(key + d);
          const __half2* k2 = reinterpret_cast<const __half2*>(&raw);
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            const float2 kf = __half22float2(k2[j]);
            dot += q_s[d + 2 * j] * kf.x + q_s[d + 2 * j + 1] * kf.y;
          }
        }
      }
      dot += __shfl_xor_sync(0xffffffffu, dot, 4);
      dot += __shfl_xor_sync(0xffffffffu, dot, 2);
      dot += __shfl_xor_sync(0xffffffffu, dot, 1);
      if (i < len && member == 0) {
        const float score = finish_score(dot);
        scores[i] = score;
        m = fmaxf(m, score);
      }
    }
  } else {
    for (int i = threadIdx.x; i < len; i += threads) {
      const __half* key = keys + row(i);
      float dot = 0.0f;
      for (int d = 0; d < hd; ++d) dot += q_s[d] * __half2float(key[d]);
      const float score = finish_score(dot);
      scores[i] = score;
      m = fmaxf(m, score);
    }
  }
  m = block_max(m, red);
  float l = 0.0f;
  for (int i = threadIdx.x; i < len; i += threads) {
    const float p = expf(scores[i] - m);
    scores[i] = p;
    l += p;
  }
  l = block_sum(l, red);  // its barriers also publish scores
  // Weighted values: warps split the positions, lanes the dimensions (coalesced rows), four
  // at a time in 8-byte vectors where rows allow (hd % 4 == 0).
  if (hd % 4 == 0) {
    float acc[2][4] = {};  // dimensions 4 * lane + 128 * j .. + 3: head_dim up to 256
#pragma unroll 4
    for (int i = warp; i < len; i += warps) {
      const __half* value = values + row(i);
      const float p = scores[i];
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const int d = 4 * lane + 128 * j;
        if (d < hd) {
          const uint2 raw = *reinterpret_cast<const uint2*>(value + d);
          const float2 a = __half22float2(*reinterpret_cast<const __half2*>(&raw.x));
          const float2 b = __half22float2(*reinterpret_cast<const __half2*>(&raw.y));
          acc[j][0] += p * a.x, acc[j][1] += p * a.y, acc[j][2] += p * b.x, acc[j][3] += p * b.y;
        }
      }
    }
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const int d = 4 * lane + 128 * j;
      if (d < hd)
        for (int e = 0; e < 4; ++e) o_s[warp * hd + d + e] = acc[j][e];
    }
  } else {
    constexpr int max_per_lane = 8;  // head_dim up to 256
    float acc[max_per_lane] = {};
#pragma unroll 4
    for (int i = warp; i < len; i += warps) {
      const __half* value = values + row(i);
      const float p = scores[i];
#pragma unroll
      for (int j = 0; j < max_per_lane; ++j) {
        const int d = lane + 32 * j;
        if (d < hd) acc[j] += p * __half2float(value[d]);
      }
    }
#pragma unroll
    for (int j = 0; j < max_per_lane; ++j) {
      const int d = lane + 32 * j;
      if (d < hd) o_s[warp * hd + d] = acc[j];
    }
  }
  __syncthreads();
  for (int d = threadIdx.x; d < hd; d += threads) {
    float o = 0.0f;
#pragma unroll
    for (int w = 0; w < warps; ++w) o += o_s[w * hd + d];
    out[d] = o;
  }
  if (threadIdx.x == 0) {
    out[hd] = m;
    out[hd + 1] = l;
  }
  // The last active split of this (token, head) combines: partials written, then counted.
  const int n_active = (n_kv + attention_split - 1) / attention_split;
  __shared__ bool last;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    int* counter = done + static_cast<size_t>(t) * n_head + h;
    last = atomicAdd(counter, 1) == n_active - 1;
    if (last) *counter = 0;  // ready for the next launch
  }
  __syncthreads();
  if (!last) return;
  __threadfence();
  combine(part + (static_cast<size_t>(t) * n_head + h) * nsp * (hd + 2), hd, n_active,
          att_out + (static_cast<size_t>(t) * n_head + h) * hd, out_q,
          (static_cast<size_t>(t) * n_head + h) * hd / 32);
}

}  // namespace

size_t attention_scratch_floats(int n_tok, int n_head, int head_dim, int n_ctx) {
  return static_cast<size_t>(n_tok) * n_head * n_splits(n_ctx) * (head_dim + 2);
}

void attention(const float* q, const __half* k_cache, const __half* v_cache, const int32_t* pos,
               const int32_t* seq, int n_tok, const attention_shape& s, float* scratch,
               int* counters, float* out, q8_blocks out_q, cudaStream_t stream) {
  assert(s.head_dim <= 256 && "attention: head_dim above 256");
  const int nsp = n_splits(s.rows);
  const dim3 grid(static_cast<unsigned>(nsp), static_cast<unsigned>(s.n_head),
                  static_cast<unsigned>(n_tok));
  launch_dependent(split_kernel, grid, threads, (warps + 1) * s.head_dim * sizeof(float), stream, q,
                   k_cache, v_cache, pos, seq, s, scratch, counters, out, out_q);
}

}  // namespace rbee::engine::cuda
