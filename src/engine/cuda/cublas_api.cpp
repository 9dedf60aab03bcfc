#include "engine/cuda/cublas_api.h"

#include <dlfcn.h>

#include <mutex>
#include <optional>
#include <string>

#include "engine/engine.h"

namespace rbee::engine::cuda {
namespace {

template <class F>
void bind(void* lib, F& fn, const char* name, const char* soname) {
  fn = reinterpret_cast<F>(dlsym(lib, name));
  if (!fn) {
    throw engine_error(error_code::backend_unavailable,
                       std::string(soname) + " has no symbol " + name);
  }
}

cublas_api load() {
  const char* soname = RBEE_CUBLAS_SONAME;
  void* lib = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    const char* why = dlerror();
    throw engine_error(error_code::backend_unavailable,
                       std::string("cuBLAS could not be loaded (") + soname +
                           "): " + (why ? why : "unknown error") +
                           "; install the CUDA runtime libraries on this node");
  }
  cublas_api api{};
  bind(lib, api.create, "cublasCreate_v2", soname);
  bind(lib, api.destroy, "cublasDestroy_v2", soname);
  bind(lib, api.set_stream, "cublasSetStream_v2", soname);
  bind(lib, api.sgemm, "cublasSgemm_v2", soname);
  bind(lib, api.gemm_ex, "cublasGemmEx", soname);
  bind(lib, api.status_name, "cublasGetStatusName", soname);
  bind(lib, api.status_string, "cublasGetStatusString", soname);
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
