// Rotary embeddings. The cos/sin of every (token, pair) angle are computed once per forward
// pass (in double, as the CPU does); each layer then adds the Q/K/V biases, rotates q and k
// and stores k and v into the cache (a paged layer's block or a sliding layer's ring) in one
// kernel with a block per (token, head).
#include "engine/cuda/check.h"
#include "engine/cuda/common.cuh"
#include "engine/cuda/launch.cuh"

namespace rbee::engine::cuda {

namespace {

constexpr int threads = 128;

__global__ void rope_table_kernel(const double* __restrict__ inv_freq, float freq_scale,
                                  float mscale, int half, const int32_t* __restrict__ pos, int n,
                                  float2* __restrict__ out) {
  wait_for_previous_kernel();
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const int t = i / half, j = i % half;
  double s, c;
  sincos(static_cast<double>(freq_scale) * pos[t] * inv_freq[j], &s, &c);
  out[i] = make_float2(static_cast<float>(c * mscale), static_cast<float>(s * mscale));
}

// blockIdx.y < n_head: query head; else key/value head blockIdx.y - n_head.
__global__ void __launch_bounds__(threads)
    rope_store_kernel(rope_args a, const float* __restrict__ q, int q_stride,
                      const float* __restrict__ k, const float* __restrict__ v, int kv_stride,
                      const float* __restrict__ bq, const float* __restrict__ bk,
                      const float* __restrict__ bv, const int32_t* __restrict__ pos,
                      const int32_t* __restrict__ seq, float* __restrict__ q_out,
                      __half* __restrict__ k_cache, __half* __restrict__ v_cache) {
  wait_for_previous_kernel();
  const int t = blockIdx.x, hd = a.head_dim, half = a.n_rot / 2;
  const bool is_q = static_cast<int>(blockIdx.y) < a.n_head;
  const int h = is_q ? blockIdx.y : blockIdx.y - a.n_head;
  const float2* cs = a.cos_sin + static_cast<size_t>(t) * half;
  const float* in = is_q ? q + static_cast<size_t>(t) * q_stride + h * hd
                         : k + static_cast<size_t>(t) * kv_stride + h * hd;
  const float* bias = is_q ? (bq ? bq + h * hd : nullptr) : (bk ? bk + h * hd : nullptr);
  // Cache rows: a paged layer's [block][kv_head][kv_block_size][head_dim] through the
  // sequence's block table, or a ring layer's [seq][kv_head][n_ctx][head_dim] that wraps.
  size_t row;
  if (a.block_table) {
    const int32_t block =
        a.block_table[static_cast<size_t>(seq[t]) * a.max_blocks + pos[t] / kv_block_size];
    row = (static_cast<size_t>(block) * a.n_head_kv + h) * kv_block_size + pos[t] % kv_block_size;
  } else {
    row = (static_cast<size_t>(seq[t]) * a.n_head_kv + h) * a.n_ctx + pos[t] % a.n_ctx;
  }
  float* qo = q_out + static_cast<size_t>(t) * a.n_head * hd + h * hd;
  __half* ko = k_cache + row * hd;
  auto put = [&](int d, float x) {
    if (is_q)
      qo[d] = x;
    else
      ko[d] = __float2half(x);
  };
  for (int j = threadIdx.x; j < half; j += threads) {
    const int i0 = a.halves ? j : 2 * j, i1 = a.halves ? j + half : 2 * j + 1;
    const float2 r = cs[j];
    const float v0 = in[i0] + (bias ? bias[i0] : 0.0f), v1 = in[i1] + (bias ? bias[i1] : 0.0f);
    put(i0, v0 * r.x - v1 * r.y);
    put(i1, v0 * r.y + v1 * r.x);
  }
  // Dimensions past n_rot are not rotated.
  for (int d = a.n_rot + threadIdx.x; d < hd; d += threads) put(d, in[d] + (bias ? bias[d] : 0.0f));
  if (is_q) return;
  const float* vt = v + static_cast<size_t>(t) * kv_stride + h * hd;
  __half* vo = v_cache + row * hd;
  for (int d = threadIdx.x; d < hd; d += threads)
    vo[d] = __float2half(vt[d] + (bv ? bv[h * hd + d] : 0.0f));
}

}  // namespace

void rope_table(const double* inv_freq, float freq_scale, float mscale, int n_rot,
                const int32_t* pos, int n_tok, float2* table, cudaStream_t stream) {
  const int half = n_rot / 2, n = n_tok * half;
  if (n == 0) return;
  launch_dependent(rope_table_kernel, (n + 255) / 256, 256, 0, stream, inv_freq, freq_scale, mscale,
                   half, pos, n, table);
}

void rope_store(const rope_args& a, const float* q, int q_stride, const float* k, const float* v,
                int kv_stride, const float* bq, const float* bk, const float* bv,
                const int32_t* pos, const int32_t* seq, int n_tok, float* q_out, __half* k_cache,
                __half* v_cache, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(n_tok), static_cast<unsigned>(a.n_head + a.n_head_kv));
  launch_dependent(rope_store_kernel, grid, threads, 0, stream, a, q, q_stride, k, v, kv_stride, bq,
                   bk, bv, pos, seq, q_out, k_cache, v_cache);
}

}  // namespace rbee::engine::cuda
