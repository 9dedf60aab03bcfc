// Mixture-of-experts routing on the device: each token's router logits -> softmax -> its
// n_used most likely experts (lower index first on ties) with their probabilities
// renormalised to sum 1 (kept as they are for qwen2moe), written as a dense row of weights (zero
// for the experts not chosen), so the expert products need no host round trip.
#include <cassert>

#include "engine/cuda/check.h"
#include "engine/cuda/common.cuh"
#include "engine/cuda/launch.cuh"

namespace rbee::engine::cuda {

namespace {

// One thread per token: the rows are short (n_expert) and k is small.
__global__ void moe_route_kernel(const float* __restrict__ logits, int n_tok, int n_expert,
                                 int n_used, bool normalize, float* __restrict__ weights) {
  wait_for_previous_kernel();
  const int t = blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= n_tok) return;
  const float* l = logits + static_cast<size_t>(t) * n_expert;
  float* w = weights + static_cast<size_t>(t) * n_expert;
  float max_logit = -INFINITY;
  for (int e = 0; e < n_expert; ++e) max_logit = fmaxf(max_logit, l[e]);
  float sum = 0.0f;
  for (int e = 0; e < n_expert; ++e) {
    w[e] = expf(l[e] - max_logit);
    sum += w[e];
  }
  // Chosen experts are marked by a negative weight (-p) until all are picked.
  float total = 0.0f;
  for (int k = 0; k < n_used; ++k) {
    int best = -1;
    for (int e = 0; e < n_expert; ++e)
      if (w[e] >= 0.0f && (best < 0 || w[e] > w[best])) best = e;
    total += w[best] / sum;
    w[best] = -w[best] / sum - 1.0f;  // -(p + 1): negative even for p == 0
  }
  if (!normalize) total = 1.0f;
  for (int e = 0; e < n_expert; ++e) w[e] = w[e] < 0.0f ? (-w[e] - 1.0f) / total : 0.0f;
}

}  // namespace

void moe_route(const float* logits, int n_tok, int n_expert, int n_used, bool normalize,
               float* weights, cudaStream_t stream) {
  assert(n_used <= n_expert && "moe_route: more experts used than there are");
  launch_dependent(moe_route_kernel, (n_tok + 63) / 64, 64, 0, stream, logits, n_tok, n_expert,
                   n_used, normalize, weights);
}

}  // namespace rbee::engine::cuda
