// The experts' products of a decode-sized batch, grouped by expert: the block of an expert's
// rows serves every (token, slot) pair routed to it, reading each row once; experts no pair
// chose are not read at all. The expert of each pair comes from moe_route on the device, so
// the launch needs no host round trip and can be captured in a graph. Integer types take q8
// activations (dp4a on the chunks of blocks.cuh), float types fp32 rows.
#include <cassert>

#include "engine/cuda/blocks.cuh"
#include "engine/cuda/check.h"
#include "engine/cuda/launch.cuh"

namespace rbee::engine::cuda {

namespace {

constexpr int warps_per_block = 4;

// The pairs routed to the expert of pair s, in pair order, when s is that expert's first pair
// in the batch (0 otherwise: the first pair's blocks serve them). At most NT: a token chooses
// an expert once, and the batch has at most NT tokens.
template <int NT>
__device__ __forceinline__ int pairs_of_expert(const int32_t* ids, int n_pairs, int s,
                                               int (&pairs)[NT]) {
  const int e = ids[s];
  for (int i = 0; i < s; ++i)
    if (ids[i] == e) return 0;
  int n = 0;
  for (int i = s; i < n_pairs && n < NT; ++i)
    if (ids[i] == e) pairs[n++] = i;
  return n;
}

// One warp per row of the expert of the pairs grouped at blockIdx.y; blockIdx.z picks the
// matrix (gate or up).
template <tensor_type T, int NT>
__global__ void __launch_bounds__(32 * warps_per_block)
    moe_matvec_q_kernel(expert_matrices m0, expert_matrices m1, float* y0, float* y1,
                        const int32_t* __restrict__ ids, int n_pairs, int x_div, q8_blocks x) {
  wait_for_previous_kernel();  // the ids and the activations come from the kernels before
  const expert_matrices& m = blockIdx.z == 0 ? m0 : m1;
  float* y = blockIdx.z == 0 ? y0 : y1;
  const int n_rows = static_cast<int>(m.rows), n_chunks = static_cast<int>(m.cols / 32);
  const int row = blockIdx.x * warps_per_block + threadIdx.y;
  int pairs[NT];
  const int n_tok = row < n_rows ? pairs_of_expert(ids, n_pairs, blockIdx.y, pairs) : 0;
  if (n_tok == 0) return;
  const uint8_t* r = m.w + static_cast<size_t>(ids[blockIdx.y]) * m.stride +
                     static_cast<size_t>(row) * m.row_bytes;
  const int lane = threadIdx.x;
  float acc[NT];
#pragma unroll
  for (int t = 0; t < NT; ++t) acc[t] = 0.0f;
#pragma unroll 4
  for (int u = lane; u < n_chunks; u += 32) {
    const chunk c = decode_chunk<T>(r, u, n_chunks);
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      if (t < n_tok) {
        const size_t b = static_cast<size_t>(pairs[t] / x_div) * n_chunks + u;
        acc[t] += chunk_dot_q8<T>(c, x, b);
      }
    }
  }
#pragma unroll
  for (int t = 0; t < NT; ++t) {
    const float v = warp_sum(acc[t]);
    if (lane == 0 && t < n_tok) y[static_cast<size_t>(pairs[t]) * n_rows + row] = v;
  }
}

template <tensor_type T>
__device__ __forceinline__ float element(const uint8_t* row, int i) {
  if constexpr (T == tensor_type::f32) return reinterpret_cast<const float*>(row)[i];
  const uint16_t bits = reinterpret_cast<const uint16_t*>(row)[i];
  if constexpr (T == tensor_type::f16) return h2f(bits);
  return bf2f(bits);
}

// The float types against fp32 rows, as the kernel above.
template <tensor_type T, int NT>
__global__ void __launch_bounds__(32 * warps_per_block)
    moe_matvec_f_kernel(expert_matrices m0, expert_matrices m1, float* y0, float* y1,
                        const int32_t* __restrict__ ids, int n_pairs, int x_div,
                        const float* __restrict__ x) {
  wait_for_previous_kernel();
  const expert_matrices& m = blockIdx.z == 0 ? m0 : m1;
  float* y = blockIdx.z == 0 ? y0 : y1;
  const int n_rows = static_cast<int>(m.rows), cols = static_cast<int>(m.cols);
  const int row = blockIdx.x * warps_per_block + threadIdx.y;
  int pairs[NT];
  const int n_tok = row < n_rows ? pairs_of_expert(ids, n_pairs, blockIdx.y, pairs) : 0;
  if (n_tok == 0) return;
  const uint8_t* r = m.w + static_cast<size_t>(ids[blockIdx.y]) * m.stride +
                     static_cast<size_t>(row) * m.row_bytes;
  const int lane = threadIdx.x;
  float acc[NT];
#pragma unroll
  for (int t = 0; t < NT; ++t) acc[t] = 0.0f;
  for (int i = lane; i < cols; i += 32) {
    const float v = element<T>(r, i);
#pragma unroll
    for (int t = 0; t < NT; ++t)
      if (t < n_tok) acc[t] += v * x[static_cast<size_t>(pairs[t] / x_div) * cols + i];
  }
#pragma unroll
  for (int t = 0; t < NT; ++t) {
    const float v = warp_sum(acc[t]);
    if (lane == 0 && t < n_tok) y[static_cast<size_t>(pairs[t]) * n_rows + row] = v;
  }
}

template <int NT>
void launch(const expert_matrices (&m)[2], const int32_t* ids, int n_pairs, int x_div,
            const float* x, q8_blocks xq, float* const (&y)[2], cudaStream_t stream) {
  const int n_mats = m[1].w ? 2 : 1;
  assert((n_mats == 1 ||
          (m[1].type == m[0].type && m[1].rows == m[0].rows && m[1].cols == m[0].cols)) &&
         "moe_matvec: the two matrices differ in type or shape");
  const dim3 block(32, warps_per_block);
  const dim3 grid(static_cast<unsigned>((m[0].rows + warps_per_block - 1) / warps_per_block),
                  static_cast<unsigned>(n_pairs), static_cast<unsigned>(n_mats));
  const bool integer = with_integer_type(m[0].type, [&](auto t) {
    launch_dependent(moe_matvec_q_kernel<decltype(t)::value, NT>, grid, block, 0, stream, m[0],
                     m[1], y[0], y[1], ids, n_pairs, x_div, xq);
  });
  if (integer) return;
  switch (m[0].type) {
#define RBEE_F(T)                                                                                \
  case T:                                                                                        \
    launch_dependent(moe_matvec_f_kernel<T, NT>, grid, block, 0, stream, m[0], m[1], y[0], y[1], \
                     ids, n_pairs, x_div, x);                                                    \
    break;
    RBEE_F(tensor_type::f32)
    RBEE_F(tensor_type::f16)
    RBEE_F(tensor_type::bf16)
#undef RBEE_F
    default:
      assert(false && "moe_matvec: tensor type without a CUDA kernel");
  }
}

}  // namespace

void moe_matvec(const expert_matrices (&m)[2], const int32_t* ids, int n_tok, int n_used, int x_div,
                const float* x, q8_blocks xq, float* const (&y)[2], cudaStream_t stream) {
  assert(n_tok >= 1 && n_tok <= max_matvec_tokens && "moe_matvec: 1..8 tokens");
  const int n_pairs = n_tok * n_used;
  if (n_tok == 1)
    launch<1>(m, ids, n_pairs, x_div, x, xq, y, stream);
  else if (n_tok == 2)
    launch<2>(m, ids, n_pairs, x_div, x, xq, y, stream);
  else if (n_tok <= 4)
    launch<4>(m, ids, n_pairs, x_div, x, xq, y, stream);
  else
    launch<8>(m, ids, n_pairs, x_div, x, xq, y, stream);
}

}  // namespace rbee::engine::cuda
