// Mixture of experts: adds one expert's output rows, each times its token's routing weight
// for that expert (zero where the token did not choose it), into the layer's FFN output; and
// qwen2moe's shared expert, each row times sigmoid(gate . x) of its token.
#include "engine/cuda/check.h"
#include "engine/cuda/common.cuh"
#include "engine/cuda/launch.cuh"

namespace rbee::engine::cuda {

namespace {

__global__ void moe_accumulate_kernel(float* __restrict__ acc, const float* __restrict__ y,
                                      const float* __restrict__ weights, int n, int64_t total,
                                      int n_expert, int expert, bool first) {
  wait_for_previous_kernel();
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total) return;
  const float w = weights[i / n * n_expert + expert];
  acc[i] = (first ? 0.0f : acc[i]) + w * y[i];
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

void moe_accumulate(float* acc, const float* y, const float* weights, int n_tok, int n,
                    int n_expert, int expert, bool first, cudaStream_t stream) {
  const int64_t total = static_cast<int64_t>(n_tok) * n;
  launch_dependent(moe_accumulate_kernel, static_cast<unsigned>((total + 255) / 256), 256, 0,
                   stream, acc, y, weights, n, total, n_expert, expert, first);
}

}  // namespace rbee::engine::cuda
