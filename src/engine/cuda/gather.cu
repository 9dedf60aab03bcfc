// Copies the rows that want logits out of the batch, so the output product reads only them.
#include "engine/cuda/check.h"
#include "engine/cuda/common.cuh"
#include "engine/cuda/launch.cuh"

namespace rbee::engine::cuda {

namespace {

__global__ void gather_kernel(const float* __restrict__ x, const int32_t* __restrict__ rows,
                              int cols, float* __restrict__ out) {
  wait_for_previous_kernel();
  const float* src = x + static_cast<size_t>(rows[blockIdx.x]) * cols;
  float* dst = out + static_cast<size_t>(blockIdx.x) * cols;
  for (int i = threadIdx.x; i < cols; i += blockDim.x) dst[i] = src[i];
}

}  // namespace

void gather_rows(const float* x, const int32_t* rows, int n, int cols, float* out,
                 cudaStream_t stream) {
  launch_dependent(gather_kernel, n, 256, 0, stream, x, rows, cols, out);
}

}  // namespace rbee::engine::cuda
