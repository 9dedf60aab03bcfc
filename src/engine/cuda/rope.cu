// Q/K/V biases, rotary embeddings and the KV cache store of each token, fused: one block
// per token of the batch. Reads the projections (strided: they may be one stacked product),
// writes the rotated queries contiguous and the keys and values into the cache.
#include "engine/cuda/check.h"
#include "engine/cuda/common.cuh"

namespace rbee::engine::cuda {

namespace {

constexpr int threads = 256;

// Rotates pair j of one head (with its biases) from `in` and hands both results to `put`.
template <class Put>
__device__ __forceinline__ void rotate_pair(const float* in, const float* bias, int j, int half,
                                            bool halves, double theta, Put put) {
  const int a = halves ? j : 2 * j, b = halves ? j + half : 2 * j + 1;
  const float c = static_cast<float>(cos(theta)), s = static_cast<float>(sin(theta));
  const float v0 = in[a] + (bias ? bias[a] : 0.0f), v1 = in[b] + (bias ? bias[b] : 0.0f);
  put(a, v0 * c - v1 * s);
  put(b, v0 * s + v1 * c);
}

__global__ void __launch_bounds__(threads)
    rope_store_kernel(rope_args a, const float* __restrict__ q, int q_stride,
                      const float* __restrict__ k, const float* __restrict__ v, int kv_stride,
                      const float* __restrict__ bq, const float* __restrict__ bk,
                      const float* __restrict__ bv, const int32_t* __restrict__ pos,
                      const int32_t* __restrict__ seq, float* __restrict__ q_out,
                      __half* __restrict__ k_cache, __half* __restrict__ v_cache) {
  const int t = blockIdx.x, hd = a.head_dim, half = a.n_rot / 2;
  const int q_dim = a.n_head * hd, kv_dim = a.n_head_kv * hd;
  const float* qt = q + static_cast<size_t>(t) * q_stride;
  const float* kt = k + static_cast<size_t>(t) * kv_stride;
  const float* vt = v + static_cast<size_t>(t) * kv_stride;
  float* qo = q_out + static_cast<size_t>(t) * q_dim;
  // Cache rows: [seq][kv_head][n_ctx][head_dim].
  const size_t seq_base = static_cast<size_t>(seq[t]) * a.n_head_kv * a.n_ctx;
  auto cache_at = [&](int h, int d) {
    return (seq_base + static_cast<size_t>(h) * a.n_ctx + pos[t]) * hd + d;
  };
  const double p = static_cast<double>(a.freq_scale) * pos[t];
  for (int j = threadIdx.x; j < a.n_head * half; j += threads) {
    const int h = j / half, off = h * hd;
    rotate_pair(qt + off, bq ? bq + off : nullptr, j % half, half, a.halves,
                p * a.inv_freq[j % half], [&](int d, float x) { qo[off + d] = x; });
  }
  for (int j = threadIdx.x; j < a.n_head_kv * half; j += threads) {
    const int h = j / half, off = h * hd;
    rotate_pair(kt + off, bk ? bk + off : nullptr, j % half, half, a.halves,
                p * a.inv_freq[j % half],
                [&](int d, float x) { k_cache[cache_at(h, d)] = __float2half(x); });
  }
  // Dimensions past n_rot are not rotated.
  const int rest = hd - a.n_rot;
  for (int i = threadIdx.x; i < a.n_head * rest; i += threads) {
    const int d = (i / rest) * hd + a.n_rot + i % rest;
    qo[d] = qt[d] + (bq ? bq[d] : 0.0f);
  }
  for (int i = threadIdx.x; i < a.n_head_kv * rest; i += threads) {
    const int h = i / rest, d = a.n_rot + i % rest;
    k_cache[cache_at(h, d)] = __float2half(kt[h * hd + d] + (bk ? bk[h * hd + d] : 0.0f));
  }
  for (int i = threadIdx.x; i < kv_dim; i += threads)
    v_cache[cache_at(i / hd, i % hd)] = __float2half(vt[i] + (bv ? bv[i] : 0.0f));
}

}  // namespace

void rope_store(const rope_args& a, const float* q, int q_stride, const float* k, const float* v,
                int kv_stride, const float* bq, const float* bk, const float* bv,
                const int32_t* pos, const int32_t* seq, int n_tok, float* q_out, __half* k_cache,
                __half* v_cache, cudaStream_t stream) {
  rope_store_kernel<<<n_tok, threads, 0, stream>>>(a, q, q_stride, k, v, kv_stride, bq, bk, bv, pos,
                                                   seq, q_out, k_cache, v_cache);
  RBEE_CUDA_CHECK_LAUNCH();
}

}  // namespace rbee::engine::cuda
