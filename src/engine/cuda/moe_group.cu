// Grouping of a larger batch's (token, slot) pairs by expert, so that each chosen expert
// multiplies the rows of all its pairs in one product and the experts nobody chose are not
// read: where each expert's pairs start, the pairs in that order, where each pair landed, and
// the pairs' token rows gathered in that order.
#include "engine/cuda/check.h"
#include "engine/cuda/common.cuh"
#include "engine/cuda/launch.cuh"

namespace rbee::engine::cuda {

namespace {

constexpr int group_threads = 1024;

// One block: the counts, then their prefix sums, then each pair's place (its expert's start
// plus the number of earlier pairs of that expert: deterministic, pair order kept).
__global__ void __launch_bounds__(group_threads)
    moe_group_kernel(const int32_t* __restrict__ ids, int n_pairs, int n_expert,
                     int32_t* __restrict__ offsets, int32_t* __restrict__ order,
                     int32_t* __restrict__ row_of) {
  wait_for_previous_kernel();
  for (int e = threadIdx.x; e < n_expert; e += blockDim.x) {
    int count = 0;
    for (int p = 0; p < n_pairs; ++p) count += ids[p] == e;
    offsets[e + 1] = count;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    offsets[0] = 0;
    for (int e = 0; e < n_expert; ++e) offsets[e + 1] += offsets[e];
  }
  __syncthreads();
  for (int p = threadIdx.x; p < n_pairs; p += blockDim.x) {
    const int e = ids[p];
    int rank = 0;
    for (int q = 0; q < p; ++q) rank += ids[q] == e;
    const int place = offsets[e] + rank;
    order[place] = p;
    row_of[p] = place;
  }
}

// One block per place: xg[place] = x[token of order[place]].
__global__ void moe_gather_kernel(const float* __restrict__ x, const int32_t* __restrict__ order,
                                  int n_used, int n, float* __restrict__ xg) {
  wait_for_previous_kernel();
  const float* src = x + static_cast<size_t>(order[blockIdx.x] / n_used) * n;
  float* dst = xg + static_cast<size_t>(blockIdx.x) * n;
  for (int i = threadIdx.x; i < n; i += blockDim.x) dst[i] = src[i];
}

}  // namespace

void moe_group(const int32_t* ids, int n_tok, int n_used, int n_expert, const float* x, int n,
               int32_t* offsets, int32_t* order, int32_t* row_of, float* xg, cudaStream_t stream) {
  const int n_pairs = n_tok * n_used;
  launch_dependent(moe_group_kernel, 1, group_threads, 0, stream, ids, n_pairs, n_expert, offsets,
                   order, row_of);
  launch_dependent(moe_gather_kernel, static_cast<unsigned>(n_pairs), 256, 0, stream, x, order,
                   n_used, n, xg);
}

}  // namespace rbee::engine::cuda
