#pragma once
// Programmatic dependent launch (compute capability 9.0 and up): a decode kernel may be
// scheduled while the one before it drains. It must call wait_for_previous_kernel() before it
// touches memory that kernel wrote or reads; weights, which no kernel writes, it may read (or
// prefetch) before. Older devices launch as usual and the device calls are no-ops.
#include <atomic>

#include "engine/cuda/check.h"

namespace rbee::engine::cuda {

inline bool dependent_launch_supported() {
  constexpr int max_devices = 64;
  static std::atomic<int> major[max_devices] = {};  // 0: not asked yet
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= max_devices) return false;
  if (major[device].load(std::memory_order_relaxed) == 0) {
    int m = 0;
    if (cudaDeviceGetAttribute(&m, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess)
      return false;
    major[device].store(m, std::memory_order_relaxed);
  }
  return major[device].load(std::memory_order_relaxed) >= 9;
}

inline int multiprocessor_count() {
  int device = 0, n = 0;
  RBEE_CUDA_CHECK(cudaGetDevice(&device));
  RBEE_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device));
  return n;
}

template <class... Params, class... Args>
void launch_dependent(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes,
                      cudaStream_t stream, Args... args) {
  cudaLaunchAttribute attr{};
  attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = shared_bytes;
  config.stream = stream;
  config.attrs = &attr;
  config.numAttrs = dependent_launch_supported() ? 1 : 0;
  RBEE_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, static_cast<Params>(args)...));
}

// Waits until the previous kernel has finished and its writes are visible, then lets the next
// kernel be scheduled (its blocks wait in turn).
__device__ __forceinline__ void wait_for_previous_kernel() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

}  // namespace rbee::engine::cuda
