#include "engine/cuda/nccl_api.h"

#include <dlfcn.h>

#include <mutex>
#include <optional>

#include "engine/engine.h"

namespace rbee::engine::cuda {
namespace {

template <class F>
void bind(void* lib, F& fn, const char* name, const std::string& soname) {
  fn = reinterpret_cast<F>(dlsym(lib, name));
  if (!fn) throw engine_error(error_code::backend_unavailable, soname + " has no symbol " + name);
}

}  // namespace

nccl_api load_nccl(const std::string& soname) {
  void* lib = dlopen(soname.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    const char* why = dlerror();
    throw engine_error(error_code::backend_unavailable,
                       "tensor parallelism across GPUs needs " + soname + " (NCCL 2), which " +
                           "could not be loaded: " + (why ? why : "unknown error") +
                           "; install NCCL on this node, put all parts on one GPU (--devices "
                           "0,0) or use split layer");
  }
  nccl_api api{};
  bind(lib, api.comm_init_all, "ncclCommInitAll", soname);
  bind(lib, api.comm_destroy, "ncclCommDestroy", soname);
  bind(lib, api.all_reduce, "ncclAllReduce", soname);
  bind(lib, api.error_string, "ncclGetErrorString", soname);
  return api;
}

const nccl_api& nccl() {
  static std::mutex mutex;
  static std::optional<nccl_api> api;
  std::lock_guard lock(mutex);
  if (!api) api = load_nccl("libnccl.so.2");
  return *api;
}

}  // namespace rbee::engine::cuda
