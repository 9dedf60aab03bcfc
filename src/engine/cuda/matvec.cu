// Matrix x vector products for decode (up to max_matvec_tokens tokens): one warp per weight
// row reads the row once in its packed form for all tokens. Integer types take q8
// activations and use dp4a; float types stream 16-byte vectors against fp32 activations.
#include <cassert>

#include "engine/cuda/blocks.cuh"
#include "engine/cuda/check.h"
#include "engine/cuda/launch.cuh"

namespace rbee::engine::cuda {

namespace {

constexpr int warps_per_block = 4;

// No kernel writes weights: a warp pulls its row toward L2 while the previous kernel drains.
__device__ __forceinline__ void prefetch_to_l2(const uint8_t* row, size_t bytes, int lane) {
  for (size_t off = static_cast<size_t>(lane) * 128; off < bytes; off += 32 * 128)
    asm volatile("prefetch.global.L2 [%0];" ::"l"(row + off));
}

template <tensor_type T, int NT>
__global__ void __launch_bounds__(32 * warps_per_block)
    matvec_q_kernel(const uint8_t* __restrict__ w, size_t row_bytes, int n_chunks, q8_blocks x,
                    int n_tok, float* __restrict__ y, int n_rows) {
  const int row = blockIdx.x * warps_per_block + threadIdx.y;
  if (row >= n_rows) return;
  const int lane = threadIdx.x;
  const uint8_t* r = w + static_cast<size_t>(row) * row_bytes;
  prefetch_to_l2(r, row_bytes, lane);
  wait_for_previous_kernel();
  float acc[NT];
#pragma unroll
  for (int t = 0; t < NT; ++t) acc[t] = 0.0f;
    // Unrolled so that several chunks' loads are in flight per lane.
#pragma unroll 8
  for (int u = lane; u < n_chunks; u += 32) {
    const chunk c = decode_chunk<T>(r, u, n_chunks);
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      if (t < n_tok) {
        const size_t b = static_cast<size_t>(t) * n_chunks + u;
        acc[t] += chunk_dot_q8<T>(c, x, b);
      }
    }
  }
#pragma unroll
  for (int t = 0; t < NT; ++t) {
    const float v = warp_sum(acc[t]);
    if (lane == 0 && t < n_tok) y[static_cast<size_t>(t) * n_rows + row] = v;
  }
}

// 8 consecutive elements of a float-type row as fp32.
template <tensor_type T>
__device__ __forceinline__ void load8(const uint8_t* row, int64_t i, float (&v)[8]) {
  if constexpr (T == tensor_type::f32) {
    const float4* p = reinterpret_cast<const float4*>(row) + i / 4;
    const float4 a = p[0], b = p[1];
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
  } else {
    const uint4 p = *(reinterpret_cast<const uint4*>(row) + i / 8);
    const uint32_t words[4] = {p.x, p.y, p.z, p.w};
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const uint16_t lo = static_cast<uint16_t>(words[k] & 0xFFFF);
      const uint16_t hi = static_cast<uint16_t>(words[k] >> 16);
      if constexpr (T == tensor_type::f16) {
        v[2 * k] = h2f(lo), v[2 * k + 1] = h2f(hi);
      } else {
        v[2 * k] = bf2f(lo), v[2 * k + 1] = bf2f(hi);
      }
    }
  }
}

template <tensor_type T>
__device__ __forceinline__ float load1(const uint8_t* row, int64_t i) {
  if constexpr (T == tensor_type::f32) return reinterpret_cast<const float*>(row)[i];
  const uint16_t bits = reinterpret_cast<const uint16_t*>(row)[i];
  if constexpr (T == tensor_type::f16) return h2f(bits);
  return bf2f(bits);
}

// Rows whose length is a multiple of 8 read 16-byte vectors; others (tiny models) elements.
template <tensor_type T, int NT, bool VEC>
__global__ void __launch_bounds__(32 * warps_per_block)
    matvec_f_kernel(const uint8_t* __restrict__ w, size_t row_bytes, int cols,
                    const float* __restrict__ x, int n_tok, float* __restrict__ y, int n_rows) {
  const int row = blockIdx.x * warps_per_block + threadIdx.y;
  if (row >= n_rows) return;
  const int lane = threadIdx.x;
  const uint8_t* r = w + static_cast<size_t>(row) * row_bytes;
  prefetch_to_l2(r, row_bytes, lane);
  wait_for_previous_kernel();
  float acc[NT];
#pragma unroll
  for (int t = 0; t < NT; ++t) acc[t] = 0.0f;
  if constexpr (VEC) {
#pragma unroll 4
    for (int i = lane * 8; i < cols; i += 32 * 8) {
      float v[8];
      load8<T>(r, i, v);
#pragma unroll
      for (int t = 0; t < NT; ++t) {
        if (t < n_tok) {
          const float4* xp = reinterpret_cast<const float4*>(x + static_cast<size_t>(t) * cols + i);
          const float4 a = xp[0], b = xp[1];
          acc[t] += v[0] * a.x + v[1] * a.y + v[2] * a.z + v[3] * a.w + v[4] * b.x + v[5] * b.y +
                    v[6] * b.z + v[7] * b.w;
        }
      }
    }
  } else {
    for (int i = lane; i < cols; i += 32) {
      const float v = load1<T>(r, i);
#pragma unroll
      for (int t = 0; t < NT; ++t)
        if (t < n_tok) acc[t] += v * x[static_cast<size_t>(t) * cols + i];
    }
  }
#pragma unroll
  for (int t = 0; t < NT; ++t) {
    const float v = warp_sum(acc[t]);
    if (lane == 0 && t < n_tok) y[static_cast<size_t>(t) * n_rows + row] = v;
  }
}

template <int NT>
void launch(tensor_type type, const void* w, int64_t rows, int64_t cols, const float* x,
            q8_blocks xq, int n_tok, float* y, cudaStream_t stream) {
  const dim3 block(32, warps_per_block);
  const dim3 grid(static_cast<unsigned>((rows + warps_per_block - 1) / warps_per_block));
  const auto* wb = static_cast<const uint8_t*>(w);
  const size_t rb = row_size(type, cols);
  const int nr = static_cast<int>(rows), nc = static_cast<int>(cols), nch = nc / 32;
  const bool vec = cols % 8 == 0;
  const bool integer = with_integer_type(type, [&](auto t) {
    launch_dependent(matvec_q_kernel<decltype(t)::value, NT>, grid, block, 0, stream, wb, rb, nch,
                     xq, n_tok, y, nr);
  });
  if (integer) return;
  switch (type) {
#define RBEE_F(T)                                                                                  \
  case T:                                                                                          \
    if (vec)                                                                                       \
      launch_dependent(matvec_f_kernel<T, NT, true>, grid, block, 0, stream, wb, rb, nc, x, n_tok, \
                       y, nr);                                                                     \
    else                                                                                           \
      launch_dependent(matvec_f_kernel<T, NT, false>, grid, block, 0, stream, wb, rb, nc, x,       \
                       n_tok, y, nr);                                                              \
    break;
    RBEE_F(tensor_type::f32)
    RBEE_F(tensor_type::f16)
    RBEE_F(tensor_type::bf16)
#undef RBEE_F
    default:
      assert(false && "matvec: tensor type without a CUDA kernel");
  }
}

}  // namespace

bool uses_q8(tensor_type type) {
  return type != tensor_type::f32 && type != tensor_type::f16 && type != tensor_type::bf16;
}

void matvec(tensor_type type, const void* w, int64_t rows, int64_t cols, const float* x,
            q8_blocks xq, int n_tok, float* y, cudaStream_t stream) {
  assert(n_tok >= 1 && n_tok <= max_matvec_tokens && "matvec: 1..8 tokens");
  if (n_tok == 1)
    launch<1>(type, w, rows, cols, x, xq, n_tok, y, stream);
  else if (n_tok == 2)
    launch<2>(type, w, rows, cols, x, xq, n_tok, y, stream);
  else if (n_tok <= 4)
    launch<4>(type, w, rows, cols, x, xq, n_tok, y, stream);
  else
    launch<8>(type, w, rows, cols, x, xq, n_tok, y, stream);
}

}  // namespace rbee::engine::cuda
