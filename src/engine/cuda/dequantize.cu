// Packed weights to fp16/fp32: whole matrices for the cuBLAS prefill, single rows for the
// token embedding lookup. Integer types: one thread per 32-element chunk; float types: one
// thread per element.
#include <cassert>

#include "engine/cuda/blocks.cuh"
#include "engine/cuda/check.h"

namespace rbee::engine::cuda {

namespace {

template <class O>
__device__ __forceinline__ void store(O* out, size_t i, float v) {
  if constexpr (sizeof(O) == 2)
    out[i] = __float2half(v);
  else
    out[i] = v;
}

// Chunk index over (n_rows, cols/32); rows come from `rows` (a lookup) or are 0..n_rows-1.
template <tensor_type T, class O>
__global__ void dequant_q_kernel(const uint8_t* __restrict__ w, size_t row_bytes, int64_t cols,
                                 const int32_t* __restrict__ rows, int64_t n_rows,
                                 O* __restrict__ out) {
  const int64_t chunks = cols / 32;
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= n_rows * chunks) return;
  const int64_t r = idx / chunks;
  const int u = static_cast<int>(idx % chunks);
  const int64_t src = rows ? rows[r] : r;
  const chunk c =
      decode_chunk<T>(w + static_cast<size_t>(src) * row_bytes, u, static_cast<int>(chunks));
  O* o = out + r * cols + static_cast<int64_t>(u) * 32;
  if constexpr (sizeof(O) == 2) {
    // 64 contiguous bytes per thread as four 16-byte stores.
    __align__(16) __half2 h[16];
    chunk_to_half2(c, h);
    uint4* dst = reinterpret_cast<uint4*>(o);
    const uint4* src = reinterpret_cast<const uint4*>(h);
#pragma unroll
    for (int j = 0; j < 4; ++j) dst[j] = src[j];
  } else {
#pragma unroll
    for (int j = 0; j < 32; ++j) store(o, j, chunk_value(c, j));
  }
}

template <tensor_type T, class O>
__global__ void dequant_f_kernel(const uint8_t* __restrict__ w, size_t row_bytes, int64_t cols,
                                 const int32_t* __restrict__ rows, int64_t n_rows,
                                 O* __restrict__ out) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= n_rows * cols) return;
  const int64_t r = idx / cols, i = idx % cols;
  const int64_t src = rows ? rows[r] : r;
  const uint8_t* row = w + static_cast<size_t>(src) * row_bytes;
  float v;
  if constexpr (T == tensor_type::f32) {
    v = reinterpret_cast<const float*>(row)[i];
  } else if constexpr (T == tensor_type::f16) {
    v = h2f(reinterpret_cast<const uint16_t*>(row)[i]);
  } else {
    v = bf2f(reinterpret_cast<const uint16_t*>(row)[i]);
  }
  store(out, static_cast<size_t>(idx), v);
}

template <class O>
void launch(tensor_type type, const void* w, int64_t cols, const int32_t* rows, int64_t n_rows,
            O* out, cudaStream_t stream) {
  const auto* wb = static_cast<const uint8_t*>(w);
  const size_t rb = row_size(type, cols);
  constexpr int threads = 256;
  const int64_t n_q = n_rows * (cols / 32), n_f = n_rows * cols;
  const unsigned grid_q = static_cast<unsigned>((n_q + threads - 1) / threads);
  const unsigned grid_f = static_cast<unsigned>((n_f + threads - 1) / threads);
  const bool integer = with_integer_type(type, [&](auto t) {
    dequant_q_kernel<decltype(t)::value, O>
        <<<grid_q, threads, 0, stream>>>(wb, rb, cols, rows, n_rows, out);
  });
  if (!integer) {
    switch (type) {
#define RBEE_F(T)                                                                            \
  case T:                                                                                    \
    dequant_f_kernel<T, O><<<grid_f, threads, 0, stream>>>(wb, rb, cols, rows, n_rows, out); \
    break;
      RBEE_F(tensor_type::f32)
      RBEE_F(tensor_type::f16)
      RBEE_F(tensor_type::bf16)
#undef RBEE_F
      default:
        assert(false && "dequantize: tensor type without a CUDA kernel");
    }
  }
  RBEE_CUDA_CHECK_LAUNCH();
}

}  // namespace

void dequantize(tensor_type type, const void* w, int64_t rows, int64_t cols, void* out,
                bool out_f16, cudaStream_t stream) {
  if (out_f16)
    launch(type, w, cols, nullptr, rows, static_cast<__half*>(out), stream);
  else
    launch(type, w, cols, nullptr, rows, static_cast<float*>(out), stream);
}

void get_rows(tensor_type type, const void* w, int64_t cols, const int32_t* rows, int n, float* out,
              cudaStream_t stream) {
  launch(type, w, cols, rows, n, out, stream);
}

}  // namespace rbee::engine::cuda
