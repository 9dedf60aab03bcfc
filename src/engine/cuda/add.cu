// y += x elementwise: a tensor-parallel part adds another part's partial sums to its own
// (device_communicator.cpp); a layer-split part before the last adds its last FFN output to
// the residual stream it hands on.
#include "engine/cuda/check.h"
#include "engine/cuda/common.cuh"
#include "engine/cuda/launch.cuh"

namespace rbee::engine::cuda {

namespace {

__global__ void add_kernel(float* __restrict__ y, const float* __restrict__ x, int64_t n) {
  wait_for_previous_kernel();
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) y[i] += x[i];
}

}  // namespace

void add(float* y, const float* x, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  launch_dependent(add_kernel, static_cast<unsigned>((n + 255) / 256), 256, 0, stream, y, x, n);
}

}  // namespace rbee::engine::cuda
