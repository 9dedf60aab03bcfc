// GeGLU's elementwise half (gemma2/3): gelu(gate) * up with GELU's tanh approximation, with
// the q8 quantization for ffn_down, as silu_mul does for SwiGLU.
#include "engine/cuda/check.h"
#include "engine/cuda/common.cuh"
#include "engine/cuda/launch.cuh"

namespace rbee::engine::cuda {

namespace {

// One warp per 32 consecutive elements of the flattened output (n_rows, n).
__global__ void gelu_mul_kernel(const float* __restrict__ gate, const float* __restrict__ up,
                                int in_stride, int n, int64_t total, float* __restrict__ out,
                                q8_blocks out_q) {
  wait_for_previous_kernel();
  constexpr float sqrt_2_over_pi = 0.7978845608f;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  float v = 0.0f;
  if (i < total) {
    const int64_t in = i / n * in_stride + i % n;
    const float g = gate[in];
    v = 0.5f * g * (1.0f + tanhf(sqrt_2_over_pi * (g + 0.044715f * g * g * g))) * up[in];
    out[i] = v;
  }
  if (out_q && i - threadIdx.x % 32 < total) store_q8(v, out_q, static_cast<size_t>(i / 32));
}

}  // namespace

void gelu_mul(const float* gate, const float* up, int in_stride, int n_rows, int n, float* out,
              q8_blocks out_q, cudaStream_t stream) {
  const int64_t total = static_cast<int64_t>(n_rows) * n;
  launch_dependent(gelu_mul_kernel, static_cast<unsigned>((total + 255) / 256), 256, 0, stream,
                   gate, up, in_stride, n, total, out, out_q);
}

}  // namespace rbee::engine::cuda
