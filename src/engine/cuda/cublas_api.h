#pragma once
// cuBLAS is loaded at run time (dlopen) when the first CUDA model is uploaded, not linked: a
// binary built with CUDA still starts on a node without the CUDA libraries, and CPU work does not
// pay the ~200 MB of resident memory that mapping cuBLAS costs.
#include <cublas_v2.h>

namespace rbee::engine::cuda {

struct cublas_api {
  decltype(&cublasCreate_v2) create;
  decltype(&cublasDestroy_v2) destroy;
  decltype(&cublasSetStream_v2) set_stream;
  decltype(&cublasSgemm_v2) sgemm;
  // Spelled out: C++ sees cublasGemmEx overloaded (an inline wrapper for old callers).
  cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                            const void*, const void*, cudaDataType, int, const void*, cudaDataType,
                            int, const void*, void*, cudaDataType, int, cublasComputeType_t,
                            cublasGemmAlgo_t);
  decltype(&cublasGetStatusName) status_name;
  decltype(&cublasGetStatusString) status_string;
};

// The loaded library; engine_error(backend_unavailable) naming it when it cannot be loaded.
const cublas_api& cublas();

}  // namespace rbee::engine::cuda
