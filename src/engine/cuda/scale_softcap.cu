// Elementwise maps of whole buffers: x * s (gemma's embedding scale by sqrt(n_embd)) and
// c * tanh(x / c) (gemma2's final logit soft cap).
#include "engine/cuda/check.h"
#include "engine/cuda/common.cuh"
#include "engine/cuda/launch.cuh"

namespace rbee::engine::cuda {

namespace {

__global__ void scale_kernel(float* __restrict__ x, int64_t n, float s) {
  wait_for_previous_kernel();
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) x[i] *= s;
}

__global__ void softcap_kernel(float* __restrict__ x, int64_t n, float cap) {
  wait_for_previous_kernel();
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) x[i] = cap * tanhf(x[i] / cap);
}

}  // namespace

void scale(float* x, int64_t n, float s, cudaStream_t stream) {
  if (n == 0) return;
  launch_dependent(scale_kernel, static_cast<unsigned>((n + 255) / 256), 256, 0, stream, x, n, s);
}

void softcap(float* x, int64_t n, float cap, cudaStream_t stream) {
  if (n == 0) return;
  launch_dependent(softcap_kernel, static_cast<unsigned>((n + 255) / 256), 256, 0, stream, x, n,
                   cap);
}

}  // namespace rbee::engine::cuda
