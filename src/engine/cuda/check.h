#pragma once
// Every CUDA runtime and cuBLAS call goes through these: a failure becomes an engine_error
// naming the call, file and line (out_of_memory for allocation failures).
#include <cublas_v2.h>
#include <cuda_runtime.h>

namespace rbee::engine::cuda {

[[noreturn]] void throw_cuda_error(cudaError_t err, const char* call, const char* file, int line);
[[noreturn]] void throw_cublas_error(cublasStatus_t st, const char* call, const char* file,
                                     int line);

}  // namespace rbee::engine::cuda

#define RBEE_CUDA_CHECK(call)                                                       \
  do {                                                                              \
    const cudaError_t rbee_err_ = (call);                                           \
    if (rbee_err_ != cudaSuccess)                                                   \
      ::rbee::engine::cuda::throw_cuda_error(rbee_err_, #call, __FILE__, __LINE__); \
  } while (0)

#define RBEE_CUBLAS_CHECK(call)                                                      \
  do {                                                                               \
    const cublasStatus_t rbee_st_ = (call);                                          \
    if (rbee_st_ != CUBLAS_STATUS_SUCCESS)                                           \
      ::rbee::engine::cuda::throw_cublas_error(rbee_st_, #call, __FILE__, __LINE__); \
  } while (0)

// Kernel launches report configuration errors only through cudaGetLastError.
#define RBEE_CUDA_CHECK_LAUNCH() RBEE_CUDA_CHECK(cudaGetLastError())
