// RMSNorm over each attention head of q or k (qwen3, gemma3: attn_q_norm, attn_k_norm), in
// place before the rotation: one warp per (token, head), the head's values in registers.
#include <cassert>

#include "engine/cuda/check.h"
#include "engine/cuda/common.cuh"
#include "engine/cuda/launch.cuh"

namespace rbee::engine::cuda {

namespace {

constexpr int max_per_lane = 8;  // head_dim up to 256

__global__ void head_rmsnorm_kernel(float* __restrict__ x, int row_stride, int head_dim,
                                    const float* __restrict__ w, float eps) {
  wait_for_previous_kernel();
  float* head = x + static_cast<size_t>(blockIdx.y) * row_stride + blockIdx.x * head_dim;
  const int lane = threadIdx.x;
  float v[max_per_lane];
  float ss = 0.0f;
#pragma unroll
  for (int k = 0; k < max_per_lane; ++k) {
    const int d = lane + 32 * k;
    v[k] = d < head_dim ? head[d] : 0.0f;
    ss += v[k] * v[k];
  }
  const float scale = rsqrtf(warp_sum(ss) / static_cast<float>(head_dim) + eps);
#pragma unroll
  for (int k = 0; k < max_per_lane; ++k) {
    const int d = lane + 32 * k;
    if (d < head_dim) head[d] = v[k] * scale * w[d];
  }
}

}  // namespace

void head_rmsnorm(float* x, int row_stride, int n_tok, int n_heads, int head_dim, const float* w,
                  float eps, cudaStream_t stream) {
  assert(head_dim <= 32 * max_per_lane && "head_rmsnorm: head_dim above 256");
  const dim3 grid(static_cast<unsigned>(n_heads), static_cast<unsigned>(n_tok));
  launch_dependent(head_rmsnorm_kernel, grid, 32, 0, stream, x, row_stride, head_dim, w, eps);
}

}  // namespace rbee::engine::cuda
