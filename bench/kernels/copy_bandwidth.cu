// Device copy bandwidth, the yardstick for memory-bound decode: 1 GiB copied device to device
// 20 times after warm-up, timed with events. Prints bytes read + written per second.
#include <cstdio>

#include <cuda_runtime.h>

namespace {

bool check(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return true;
  std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(err));
  return false;
}

}  // namespace

int main() {
  const size_t bytes = size_t{1} << 30;
  const int reps = 20;
  void *a = nullptr, *b = nullptr;
  cudaEvent_t start, stop;
  if (!check(cudaMalloc(&a, bytes), "cudaMalloc") || !check(cudaMalloc(&b, bytes), "cudaMalloc") ||
      !check(cudaEventCreate(&start), "cudaEventCreate") ||
      !check(cudaEventCreate(&stop), "cudaEventCreate"))
    return 1;
  for (int i = 0; i < 3; ++i) cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice);
  cudaEventRecord(start);
  for (int i = 0; i < reps; ++i) cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice);
  cudaEventRecord(stop);
  if (!check(cudaEventSynchronize(stop), "copy")) return 1;
  float ms = 0;
  cudaEventElapsedTime(&ms, start, stop);
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  std::printf("%s: device copy bandwidth (read+write) %.0f GB/s\n", prop.name,
              2.0 * bytes * reps / (ms / 1e3) / 1e9);
  cudaFree(a);
  cudaFree(b);
  return 0;
}
