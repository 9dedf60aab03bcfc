#include "engine/cuda/nccl_api.h"

#include <mutex>
#include <optional>

#include "engine/cuda/runtime_library.h"

namespace rbee::engine::cuda {
nccl_api load_nccl(const std::string& soname) {
  void* lib = load_runtime_library(soname, "tensor parallelism across GPUs",
                                   "install NCCL 2 on this node, put all parts on one GPU "
                                   "(--devices 0,0) or use split layer");
  nccl_api api{};
  bind_symbol(lib, api.comm_init_all, "ncclCommInitAll", soname);
  bind_symbol(lib, api.comm_destroy, "ncclCommDestroy", soname);
  bind_symbol(lib, api.all_reduce, "ncclAllReduce", soname);
  bind_symbol(lib, api.error_string, "ncclGetErrorString", soname);
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
