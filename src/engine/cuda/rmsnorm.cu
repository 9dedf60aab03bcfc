// Residual add fused with RMSNorm (and the q8 quantization of its output): one block per row,
// each thread holding its elements in registers from the load to the store, so a decode row
// costs one read of x, y and w, one reduction and one write.
#include <cassert>

#include "engine/cuda/check.h"
#include "engine/cuda/common.cuh"
#include "engine/cuda/launch.cuh"

namespace rbee::engine::cuda {

namespace {

// Thread t holds elements t, t + blockDim.x, ... (PER of them): for each k, the 32 lanes of
// a warp hold 32 consecutive elements, one q8 block.
template <int PER>
__global__ void __launch_bounds__(1024)
    add_rmsnorm_kernel(float* __restrict__ x, const float* __restrict__ y,
                       const float* __restrict__ w, int n, float eps, float* __restrict__ out,
                       q8_blocks out_q) {
  __shared__ float red[32];
  wait_for_previous_kernel();
  const size_t base = static_cast<size_t>(blockIdx.x) * n;
  float* xr = x + base;
  const float* yr = y ? y + base : nullptr;
  float v[PER], wv[PER];
  float ss = 0.0f;
#pragma unroll
  for (int k = 0; k < PER; ++k) {
    const int i = k * blockDim.x + threadIdx.x;
    v[k] = i < n ? xr[i] : 0.0f;
    if (yr && i < n) v[k] += yr[i];
    wv[k] = i < n ? w[i] : 0.0f;
    ss += v[k] * v[k];
  }
  if (yr) {
#pragma unroll
    for (int k = 0; k < PER; ++k) {
      const int i = k * blockDim.x + threadIdx.x;
      if (i < n) xr[i] = v[k];
    }
  }
  const float scale = rsqrtf(block_sum(ss, red) / static_cast<float>(n) + eps);
  float* o = out + base;
#pragma unroll
  for (int k = 0; k < PER; ++k) {
    const int warp_start = k * blockDim.x + threadIdx.x / 32 * 32;
    if (warp_start >= n) break;  // whole warps: n is a multiple of 32 where q8 is written
    const int i = k * blockDim.x + threadIdx.x;
    const float r = v[k] * scale * wv[k];
    if (i < n) o[i] = r;
    if (out_q) store_q8(r, out_q, (base + warp_start) / 32);
  }
}

template <int PER>
void launch(float* x, const float* y, const float* w, int n_rows, int n, float eps, float* out,
            q8_blocks out_q, cudaStream_t stream) {
  const int threads = ((n + PER - 1) / PER + 31) / 32 * 32;
  launch_dependent(add_rmsnorm_kernel<PER>, n_rows, threads, 0, stream, x, y, w, n, eps, out,
                   out_q);
}

}  // namespace

void add_rmsnorm(float* x, const float* y, const float* w, int n_rows, int n, float eps, float* out,
                 q8_blocks out_q, cudaStream_t stream) {
  assert(n <= max_norm_width && "add_rmsnorm: row wider than max_norm_width");
  if (n <= 1024)
    launch<1>(x, y, w, n_rows, n, eps, out, out_q, stream);
  else if (n <= 2048)
    launch<2>(x, y, w, n_rows, n, eps, out, out_q, stream);
  else if (n <= 4096)
    launch<4>(x, y, w, n_rows, n, eps, out, out_q, stream);
  else if (n <= 8192)
    launch<8>(x, y, w, n_rows, n, eps, out, out_q, stream);
  else if (n <= 16384)
    launch<16>(x, y, w, n_rows, n, eps, out, out_q, stream);
  else
    launch<32>(x, y, w, n_rows, n, eps, out, out_q, stream);
}

}  // namespace rbee::engine::cuda
