// fp32 activations to q8 blocks, for integer-type products whose input no fused kernel
// quantized (the output product after the row gather).
#include "engine/cuda/check.h"
#include "engine/cuda/common.cuh"
#include "engine/cuda/launch.cuh"

namespace rbee::engine::cuda {

namespace {

__global__ void quantize_kernel(const float* __restrict__ x, int64_t total, q8_blocks out) {
  wait_for_previous_kernel();
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i - threadIdx.x % 32 >= total) return;
  store_q8(i < total ? x[i] : 0.0f, out, static_cast<size_t>(i / 32));
}

}  // namespace

void quantize_q8(const float* x, int n_rows, int n, q8_blocks out, cudaStream_t stream) {
  const int64_t total = static_cast<int64_t>(n_rows) * n;
  launch_dependent(quantize_kernel, static_cast<unsigned>((total + 255) / 256), 256, 0, stream, x,
                   total, out);
}

}  // namespace rbee::engine::cuda
