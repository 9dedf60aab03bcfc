// Mixture-of-experts routing on the device: each token's router logits -> softmax -> its
// n_used most likely experts (lower index first on ties) with their probabilities,
// renormalised to sum 1 (kept as they are for qwen2moe), so the expert products need no host
// round trip.
#include <cassert>

#include "engine/cuda/check.h"
#include "engine/cuda/common.cuh"
#include "engine/cuda/launch.cuh"

namespace rbee::engine::cuda {

namespace {

// One thread per token: the rows are short (n_expert) and n_used is small.
__global__ void moe_route_kernel(float* __restrict__ logits, int n_tok, int n_expert, int n_used,
                                 bool normalize, int32_t* __restrict__ ids,
                                 float* __restrict__ weights) {
  wait_for_previous_kernel();
  const int t = blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= n_tok) return;
  float* p = logits + static_cast<size_t>(t) * n_expert;  // becomes exp(l - max), >= 0
  float max_logit = -INFINITY;
  for (int e = 0; e < n_expert; ++e) max_logit = fmaxf(max_logit, p[e]);
  float sum = 0.0f;
  for (int e = 0; e < n_expert; ++e) {
    p[e] = expf(p[e] - max_logit);
    sum += p[e];
  }
  int32_t* id = ids + static_cast<size_t>(t) * n_used;
  float* w = weights + static_cast<size_t>(t) * n_used;
  float total = 0.0f;
  for (int k = 0; k < n_used; ++k) {
    int best = -1;
    for (int e = 0; e < n_expert; ++e)
      if (p[e] >= 0.0f && (best < 0 || p[e] > p[best])) best = e;
    id[k] = best;
    w[k] = p[best] / sum;
    total += w[k];
    p[best] = -1.0f;  // chosen
  }
  if (normalize)
    for (int k = 0; k < n_used; ++k) w[k] /= total;
}

}  // namespace

void moe_route(float* logits, int n_tok, int n_expert, int n_used, bool normalize, int32_t* ids,
               float* weights, cudaStream_t stream) {
  assert(n_used <= n_expert && "moe_route: more experts used than there are");
  launch_dependent(moe_route_kernel, (n_tok + 63) / 64, 64, 0, stream, logits, n_tok, n_expert,
                   n_used, normalize, ids, weights);
}

}  // namespace rbee::engine::cuda
