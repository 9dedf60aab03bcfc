// Prefill products: the tensor-core kernel (gemm_mma.cu) for integer and bf16 weights up to
// max_mma_tokens tokens; cuBLAS for the rest: f16 weights (read as they are, no scratch: its
// tuned kernels are the better path), f32 weights (kept in full precision through sgemm) and
// batches above max_mma_tokens, where the multiplies dominate, the whole-matrix dequantization
// to fp16 scratch (or fp32 for bf16) is shared by that many tokens, and cuBLAS's kernels outrun
// WMMA. fp32 accumulation always.
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

bool mma_route(tensor_type type, int n_tok) {
  return mma_type(type) && n_tok <= max_mma_tokens;
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
  // The fp16 activations of the tensor-core route; a context whose batches may exceed
  // max_mma_tokens holds enough for both routes.
  const size_t mma_bytes = align256(static_cast<size_t>(std::min(n_tok, max_mma_tokens)) *
                                    static_cast<size_t>(cols) * 2);
  if (mma_route(type, n_tok)) return mma_bytes;
  const size_t bytes = gemm_cublas_scratch_bytes(type, rows, cols, n_tok);
  return mma_type(type) ? std::max(bytes, mma_bytes) : bytes;
}

void gemm(cublasHandle_t handle, tensor_type type, const void* w, int64_t rows, int64_t cols,
          const float* x, int n_tok, float* y, void* scratch, cudaStream_t stream) {
  if (mma_route(type, n_tok)) {
    // The activations once as fp16 for all row tiles of the product.
    auto* xh = static_cast<__half*>(scratch);
    to_f16(x, static_cast<int64_t>(n_tok) * cols, xh, stream);
    gemm_mma(type, w, rows, cols, xh, n_tok, y, stream);
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
