// Mixture of experts: each token's FFN output as the sum of its chosen experts' rows times
// their routing weights; and qwen2moe's shared expert, each row times sigmoid(gate . x) of its
// token.
#include "engine/cuda/check.h"
#include "engine/cuda/common.cuh"
#include "engine/cuda/launch.cuh"

namespace rbee::engine::cuda {

namespace {

// One block per token: its row is the weighted sum of its pairs' rows.
__global__ void moe_combine_kernel(float* __restrict__ acc, const float* __restrict__ y,
                                   const float* __restrict__ weights,
                                   const int32_t* __restrict__ row_of, int n_used, int n) {
  wait_for_previous_kernel();
  const size_t t = blockIdx.x;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    float sum = 0.0f;
    for (int k = 0; k < n_used; ++k) {
      const size_t pair = t * n_used + k;
      const size_t row = row_of ? static_cast<size_t>(row_of[pair]) : pair;
      sum += weights[pair] * y[row * n + i];
    }
    acc[t * n + i] = sum;
  }
}

// One block per token: the gate's dot product with the token's x, then its scaled row.
__global__ void moe_add_shared_kernel(float* __restrict__ acc, const float* __restrict__ y,
                                      const float* __restrict__ x, const float* __restrict__ gate,
                                      int n) {
  __shared__ float red[32];
  wait_for_previous_kernel();
  const size_t row = static_cast<size_t>(blockIdx.x) * n;
  float dot = 0.0f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) dot += gate[i] * x[row + i];
  const float s = 1.0f / (1.0f + expf(-block_sum(dot, red)));
  for (int i = threadIdx.x; i < n; i += blockDim.x) acc[row + i] += s * y[row + i];
}

}  // namespace

void moe_add_shared(float* acc, const float* y, const float* x, const float* gate, int n_tok, int n,
                    cudaStream_t stream) {
  launch_dependent(moe_add_shared_kernel, n_tok, 256, 0, stream, acc, y, x, gate, n);
}

void moe_combine(float* acc, const float* y, const float* weights, const int32_t* row_of, int n_tok,
                 int n_used, int n, cudaStream_t stream) {
  launch_dependent(moe_combine_kernel, static_cast<unsigned>(n_tok), 256, 0, stream, acc, y,
                   weights, row_of, n_used, n);
}

}  // namespace rbee::engine::cuda
