// Q4_0, Q8_0 and Q6_K rows from the file's 18/34/210-byte blocks (only 2-byte aligned) to
// the device layout of blocks.cuh: each field of every block of a row together, so that the
// products read 16-byte aligned vectors.
#include <cassert>

#include "engine/cuda/check.h"
#include "engine/cuda/common.cuh"

namespace rbee::engine::cuda {

namespace {

// One thread per block: QB quant bytes after a 2-byte scale.
template <int QB>
__global__ void repack_kernel(const uint8_t* __restrict__ src, uint8_t* __restrict__ dst,
                              int64_t rows, int64_t n_blocks) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= rows * n_blocks) return;
  const int64_t r = idx / n_blocks, b = idx % n_blocks;
  const size_t row_bytes = static_cast<size_t>(n_blocks) * (QB + 2);
  const uint8_t* s = src + r * row_bytes + b * (QB + 2);
  uint8_t* d = dst + r * row_bytes;
#pragma unroll
  for (int i = 0; i < QB; ++i) d[b * QB + i] = s[2 + i];
  d[n_blocks * QB + 2 * b] = s[0];
  d[n_blocks * QB + 2 * b + 1] = s[1];
}

// One thread per q6_k super-block: ql (128), qh (64), scales (16), d (2) to four regions.
__global__ void repack_q6_k_kernel(const uint8_t* __restrict__ src, uint8_t* __restrict__ dst,
                                   int64_t rows, int64_t nsb) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= rows * nsb) return;
  const int64_t r = idx / nsb, sb = idx % nsb;
  const size_t row_bytes = static_cast<size_t>(nsb) * 210;
  const uint8_t* s = src + r * row_bytes + sb * 210;
  uint8_t* d = dst + r * row_bytes;
  for (int i = 0; i < 128; ++i) d[sb * 128 + i] = s[i];
  for (int i = 0; i < 64; ++i) d[nsb * 128 + sb * 64 + i] = s[128 + i];
  for (int i = 0; i < 16; ++i) d[nsb * 192 + sb * 16 + i] = s[192 + i];
  d[nsb * 208 + sb * 2] = s[208];
  d[nsb * 208 + sb * 2 + 1] = s[209];
}

}  // namespace

bool repacked(tensor_type type) {
  return type == tensor_type::q4_0 || type == tensor_type::q8_0 || type == tensor_type::q6_k;
}

void repack(tensor_type type, const void* src, void* dst, int64_t rows, int64_t cols,
            cudaStream_t stream) {
  assert(repacked(type) && "repack: not a repacked type");
  const int64_t n_blocks = cols / 32, total = rows * n_blocks;
  const unsigned grid = static_cast<unsigned>((total + 255) / 256);
  const auto* s = static_cast<const uint8_t*>(src);
  auto* d = static_cast<uint8_t*>(dst);
  if (type == tensor_type::q4_0)
    repack_kernel<16><<<grid, 256, 0, stream>>>(s, d, rows, n_blocks);
  else if (type == tensor_type::q8_0)
    repack_kernel<32><<<grid, 256, 0, stream>>>(s, d, rows, n_blocks);
  else
    repack_q6_k_kernel<<<static_cast<unsigned>((rows * (cols / 256) + 255) / 256), 256, 0,
                         stream>>>(s, d, rows, cols / 256);
  RBEE_CUDA_CHECK_LAUNCH();
}

}  // namespace rbee::engine::cuda
