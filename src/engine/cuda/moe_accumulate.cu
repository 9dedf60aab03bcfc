// Mixture of experts: adds one expert's output rows, each times its token's routing weight
// for that expert (zero where the token did not choose it), into the layer's FFN output.
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

}  // namespace

void moe_accumulate(float* acc, const float* y, const float* weights, int n_tok, int n,
                    int n_expert, int expert, bool first, cudaStream_t stream) {
  const int64_t total = static_cast<int64_t>(n_tok) * n;
  launch_dependent(moe_accumulate_kernel, static_cast<unsigned>((total + 255) / 256), 256, 0,
                   stream, acc, y, weights, n, total, n_expert, expert, first);
}

}  // namespace rbee::engine::cuda
