// The communicator (communicator.h) of tensor-parallel parts on one GPU (--devices 0,0): each
// rank adds the parts in rank order into scratch of its own on the device, with the add
// kernel on a stream of its own, and copies the sum back once no rank reads the parts. The
// same operations on every rank give the same bits. Parts on different GPUs use NCCL
// (nccl_communicator.cpp).
#include <vector>

#include "engine/cuda/check.h"
#include "engine/cuda/communicators.h"
#include "engine/cuda/ops.h"

namespace rbee::engine::cuda {

namespace {

class same_device_communicator final : public communicator {
 public:
  same_device_communicator(int device, int n_ranks)
      : device_(device),
        barrier_(n_ranks),
        data_(static_cast<size_t>(n_ranks)),
        ranks_(static_cast<size_t>(n_ranks)) {}
  ~same_device_communicator() override {
    cudaSetDevice(device_);
    for (rank_state& r : ranks_) {
      cudaFree(r.sum);
      if (r.stream) cudaStreamDestroy(r.stream);
    }
  }
  same_device_communicator(const same_device_communicator&) = delete;
  same_device_communicator& operator=(const same_device_communicator&) = delete;

  // `data` is complete: the caller's stream is synchronised. Returns with the sum in `data`.
  void all_reduce_sum(int rank, float* data, size_t n) override {
    rank_state& r = ranks_[static_cast<size_t>(rank)];
    RBEE_CUDA_CHECK(cudaSetDevice(device_));
    if (!r.stream) RBEE_CUDA_CHECK(cudaStreamCreateWithFlags(&r.stream, cudaStreamNonBlocking));
    if (r.capacity < n) {
      RBEE_CUDA_CHECK(cudaFree(r.sum));
      r.sum = nullptr;
      RBEE_CUDA_CHECK(cudaMalloc(&r.sum, n * sizeof(float)));
      r.capacity = n;
    }
    data_[static_cast<size_t>(rank)] = data;
    barrier_.wait();  // every part is written
    const size_t bytes = n * sizeof(float);
    RBEE_CUDA_CHECK(cudaMemcpyAsync(r.sum, data_[0], bytes, cudaMemcpyDeviceToDevice, r.stream));
    for (size_t q = 1; q < data_.size(); ++q)
      add(r.sum, data_[q], static_cast<int64_t>(n), r.stream);
    RBEE_CUDA_CHECK_LAUNCH();
    RBEE_CUDA_CHECK(cudaStreamSynchronize(r.stream));
    barrier_.wait();  // no rank reads the parts any more
    RBEE_CUDA_CHECK(cudaMemcpyAsync(data, r.sum, bytes, cudaMemcpyDeviceToDevice, r.stream));
    RBEE_CUDA_CHECK(cudaStreamSynchronize(r.stream));
  }

  void abort() override { barrier_.abort(); }

 private:
  struct rank_state {
    cudaStream_t stream = nullptr;
    float* sum = nullptr;
    size_t capacity = 0;  // floats
  };

  int device_;
  rank_barrier barrier_;
  std::vector<float*> data_;  // each rank's part, set before the first barrier
  std::vector<rank_state> ranks_;
};

}  // namespace

std::unique_ptr<communicator> make_same_device_communicator(int device, int n_ranks) {
  return std::make_unique<same_device_communicator>(device, n_ranks);
}

}  // namespace rbee::engine::cuda
