#include "engine/cuda/cublas_api.h"

#include <mutex>
#include <optional>
#include <string>

#include "engine/cuda/runtime_library.h"

namespace rbee::engine::cuda {
namespace {

cublas_api load() {
  const char* soname = RBEE_CUBLAS_SONAME;
  void* lib = load_runtime_library(soname, "the CUDA backend's matrix products (cuBLAS)",
                                   "install the CUDA runtime libraries on this node");
  cublas_api api{};
  bind_symbol(lib, api.create, "cublasCreate_v2", soname);
  bind_symbol(lib, api.destroy, "cublasDestroy_v2", soname);
  bind_symbol(lib, api.set_stream, "cublasSetStream_v2", soname);
  bind_symbol(lib, api.sgemm, "cublasSgemm_v2", soname);
  bind_symbol(lib, api.gemm_ex, "cublasGemmEx", soname);
  bind_symbol(lib, api.status_name, "cublasGetStatusName", soname);
  bind_symbol(lib, api.status_string, "cublasGetStatusString", soname);
  return api;  // the library stays loaded for the life of the process
}

}  // namespace

const cublas_api& cublas() {
  // A failed load is retried on the next call (the error is thrown each time).
  static std::mutex mutex;
  static std::optional<cublas_api> api;
  std::lock_guard lock(mutex);
  if (!api) api = load();
  return *api;
}

}  // namespace rbee::engine::cuda
