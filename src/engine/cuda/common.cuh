#pragma once
// Device helpers shared by the kernels: half/bf16 conversion, warp reductions, the q8
// activation block, and unaligned loads from packed GGUF blocks.
#include <cuda_fp16.h>
#include <cstdint>

#include "engine/cuda/ops.h"

namespace rbee::engine::cuda {

__device__ __forceinline__ float h2f(uint16_t bits) {
  return __half2float(__ushort_as_half(bits));
}
__device__ __forceinline__ float bf2f(uint16_t bits) {
  return __uint_as_float(static_cast<uint32_t>(bits) << 16);
}
__device__ __forceinline__ uint16_t load_u16(const uint8_t* p) {
  return *reinterpret_cast<const uint16_t*>(p);
}
// Blocks of most types are only 2-byte aligned (18, 22, 34, 210 bytes).
__device__ __forceinline__ uint32_t load_u32_a2(const uint8_t* p) {
  const uint16_t* h = reinterpret_cast<const uint16_t*>(p);
  return static_cast<uint32_t>(h[0]) | (static_cast<uint32_t>(h[1]) << 16);
}
__device__ __forceinline__ uint32_t load_u32(const uint8_t* p) {
  return *reinterpret_cast<const uint32_t*>(p);
}

// float or double.
template <class T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over a block of blockDim.x threads (a multiple of 32, at most 1024); `shared` holds 32.
template <class T>
__device__ __forceinline__ T block_sum(T v, T* shared) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < static_cast<int>(blockDim.x / 32) ? shared[lane] : T(0);
  return warp_sum(v);
}
__device__ __forceinline__ float block_max(float v, float* shared) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < static_cast<int>(blockDim.x / 32) ? shared[lane] : -INFINITY;
  return warp_max(v);
}

// Called by all 32 lanes of a warp with the 32 values of activation block b (lane j holds
// element j): writes its q8 form.
__device__ __forceinline__ void store_q8(float v, q8_blocks out, size_t b) {
  const int lane = threadIdx.x % 32;
  const float amax = warp_max(fabsf(v));
  const float d = amax / 127.0f;
  const int q = d > 0.0f ? __float2int_rn(v / d) : 0;
  const float sum = warp_sum(static_cast<float>(q));
  out.qs[32 * b + lane] = static_cast<int8_t>(q);
  if (lane == 0) {
    out.ds[2 * b] = d;
    out.ds[2 * b + 1] = d * sum;
  }
}

}  // namespace rbee::engine::cuda
