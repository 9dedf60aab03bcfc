// Residual add fused with RMSNorm (and the q8 quantization of its output): one block per row.
#include "engine/cuda/check.h"
#include "engine/cuda/common.cuh"

namespace rbee::engine::cuda {

namespace {

constexpr int max_threads = 1024;

__global__ void __launch_bounds__(max_threads)
    add_rmsnorm_kernel(float* __restrict__ x, const float* __restrict__ y,
                       const float* __restrict__ w, int n, float eps, float* __restrict__ out,
                       q8_blocks out_q) {
  __shared__ float red[32];
  float* xr = x + static_cast<size_t>(blockIdx.x) * n;
  const float* yr = y ? y + static_cast<size_t>(blockIdx.x) * n : nullptr;
  float ss = 0.0f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    float v = xr[i];
    if (yr) {
      v += yr[i];
      xr[i] = v;
    }
    ss += v * v;
  }
  const float scale = rsqrtf(block_sum(ss, red) / static_cast<float>(n) + eps);
  float* o = out + static_cast<size_t>(blockIdx.x) * n;
  // Whole warps walk 32-element blocks so that each can quantize its block.
  for (int base = threadIdx.x / 32 * 32; base < n; base += blockDim.x) {
    const int i = base + threadIdx.x % 32;
    const float v = i < n ? xr[i] * scale * w[i] : 0.0f;
    if (i < n) o[i] = v;
    if (out_q) store_q8(v, out_q, (static_cast<size_t>(blockIdx.x) * n + base) / 32);
  }
}

}  // namespace

void add_rmsnorm(float* x, const float* y, const float* w, int n_rows, int n, float eps, float* out,
                 q8_blocks out_q, cudaStream_t stream) {
  // Wide rows get a wide block: decode runs one row per block.
  const int threads = n >= 2048 ? max_threads : 256;
  add_rmsnorm_kernel<<<n_rows, threads, 0, stream>>>(x, y, w, n, eps, out, out_q);
  RBEE_CUDA_CHECK_LAUNCH();
}

}  // namespace rbee::engine::cuda
