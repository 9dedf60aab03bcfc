// Batched products. Integer weights go to gemm_pipelined (tensor cores, the packed weights
// read as they are) up to max_pipelined_tokens tokens where the device and the row length
// allow; bf16 weights and integer rows that are no whole 256-column steps (or an
// older device) to the fp16 tensor-core kernel (gemm_mma.cu) up to max_mma_tokens; the rest
// to cuBLAS: f16 weights (read as they are, no scratch: its tuned kernels are the better
// path), f32 weights (kept in full precision through sgemm) and the batches beyond, where the
// whole-matrix dequantization to fp16 scratch (or fp32 for bf16) is shared by that many
// tokens. fp32 accumulation always.
#include <algorithm>

#include "engine/cuda/check.h"
#include "engine/cuda/common.cuh"
#include "engine/cuda/cublas_api.h"

namespace rbee::engine::cuda {

namespace {

bool fp32_route(tensor_type type) {
  return type == tensor_type::f32 || type == tensor_type::bf16;
}

size_t align256(size_t n) {
  return (n + 255) / 256 * 256;
}

bool pipelined_route(tensor_type type, int64_t cols, int n_tok) {
  return n_tok <= max_pipelined_tokens && gemm_pipelined_supported(type, cols);
}

bool mma_route(tensor_type type, int n_tok) {
  return mma_type(type) && n_tok <= max_mma_tokens;
}

size_t f16_bytes(int64_t cols, int n_tok) {
  return align256(static_cast<size_t>(n_tok) * static_cast<size_t>(cols) * 2);
}

}  // namespace

size_t gemm_cublas_scratch_bytes(tensor_type type, int64_t rows, int64_t cols, int n_tok) {
  const size_t elems = static_cast<size_t>(rows) * static_cast<size_t>(cols);
  const size_t x_elems = static_cast<size_t>(n_tok) * static_cast<size_t>(cols);
  if (type == tensor_type::f32) return 0;
  if (type == tensor_type::bf16) return align256(elems * 4);
  return align256(type == tensor_type::f16 ? 0 : elems * 2) + align256(x_elems * 2);
}

size_t gemm_scratch_bytes(tensor_type type, int64_t rows, int64_t cols, int n_tok) {
  // Enough for every route a batch of up to n_tok tokens takes on this device.
  size_t bytes = 0;
  int below_cublas = 0;  // batches up to this size stay off cuBLAS
  if (gemm_pipelined_supported(type, cols)) {
    bytes = f16_bytes(cols, std::min(n_tok, max_pipelined_tokens)) + gemm_pipelined_parts_bytes();
    below_cublas = max_pipelined_tokens;
  } else if (mma_type(type)) {
    bytes = f16_bytes(cols, std::min(n_tok, max_mma_tokens));
    below_cublas = max_mma_tokens;
  }
  if (n_tok > below_cublas)
    bytes = std::max(bytes, gemm_cublas_scratch_bytes(type, rows, cols, n_tok));
  return bytes;
}

void gemm(cublasHandle_t handle, tensor_type type, const void* w, int64_t rows, int64_t cols,
          const float* x, int n_tok, float* y, void* scratch, cudaStream_t stream) {
  const bool pipelined = pipelined_route(type, cols, n_tok);
  if (pipelined || mma_route(type, n_tok)) {
    // The activations once as fp16 for all row tiles of the product.
    auto* xh = static_cast<__half*>(scratch);
    to_f16(x, static_cast<int64_t>(n_tok) * cols, xh, stream);
    if (pipelined) {
      auto* parts =
          reinterpret_cast<float*>(static_cast<uint8_t*>(scratch) + f16_bytes(cols, n_tok));
      gemm_pipelined(type, w, rows, cols, xh, n_tok, y, parts, stream);
    } else {
      gemm_mma(type, w, rows, cols, xh, n_tok, y, stream);
    }
  } else {
    gemm_cublas(handle, type, w, rows, cols, x, n_tok, y, scratch, stream);
  }
}

void gemm_cublas(cublasHandle_t handle, tensor_type type, const void* w, int64_t rows, int64_t cols,
                 const float* x, int n_tok, float* y, void* scratch, cudaStream_t stream) {
  RBEE_CUBLAS_CHECK(cublas().set_stream(handle, stream));
  const float one = 1.0f, zero = 0.0f;
  const int m = static_cast<int>(rows), n = n_tok, k = static_cast<int>(cols);
  // Column-major view: W (rows, cols) row-major is A^T with lda = cols; x likewise.
  if (fp32_route(type)) {
    const float* a = static_cast<const float*>(w);
    if (type == tensor_type::bf16) {
      dequantize(type, w, rows, cols, scratch, false, stream);
      a = static_cast<const float*>(scratch);
    }
    RBEE_CUBLAS_CHECK(
        cublas().sgemm(handle, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &one, a, k, x, k, &zero, y, m));
    return;
  }
  auto* base = static_cast<uint8_t*>(scratch);
  const __half* a = static_cast<const __half*>(w);
  if (type != tensor_type::f16) {
    dequantize(type, w, rows, cols, base, true, stream);
    a = reinterpret_cast<const __half*>(base);
    base += align256(static_cast<size_t>(rows) * static_cast<size_t>(cols) * 2);
  }
  auto* xh = reinterpret_cast<__half*>(base);
  const int64_t nx = static_cast<int64_t>(n_tok) * cols;
  to_f16(x, nx, xh, stream);
  RBEE_CUBLAS_CHECK(cublas().gemm_ex(handle, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &one, a, CUDA_R_16F,
                                     k, xh, CUDA_R_16F, k, &zero, y, CUDA_R_32F, m,
                                     CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

}  // namespace rbee::engine::cuda
