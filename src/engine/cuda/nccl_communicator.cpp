// The communicator (communicator.h) of tensor-parallel parts on different GPUs: one NCCL
// communicator per part, made together (ncclCommInitAll), each rank's all-reduce in place on
// a stream of its own. NVLink multicast (NVLS) stays off: the GPU machines require it.
#include <cstdlib>
#include <vector>

#include "engine/cuda/check.h"
#include "engine/cuda/communicators.h"
#include "engine/cuda/nccl_api.h"
#include "engine/model.h"

namespace rbee::engine::cuda {

namespace {

void check_nccl(nccl_result_t result, const char* call) {
  if (result != 0)
    throw engine_error(
        error_code::backend_unavailable,
        str("NCCL error ", result, " (", nccl().error_string(result), ") in ", call));
}

class nccl_communicator final : public communicator {
 public:
  explicit nccl_communicator(const std::vector<int>& devices)
      : devices_(devices),
        barrier_(static_cast<int>(devices.size())),
        comms_(devices.size()),
        streams_(devices.size()) {
    const nccl_api& api = nccl();
    ::setenv("NCCL_NVLS_ENABLE", "0", 1);  // read by the init below
    check_nccl(api.comm_init_all(comms_.data(), static_cast<int>(devices.size()), devices.data()),
               "ncclCommInitAll");
    for (size_t r = 0; r < devices.size(); ++r) {
      RBEE_CUDA_CHECK(cudaSetDevice(devices[r]));
      RBEE_CUDA_CHECK(cudaStreamCreateWithFlags(&streams_[r], cudaStreamNonBlocking));
    }
  }
  ~nccl_communicator() override {
    for (size_t r = 0; r < devices_.size(); ++r) {
      cudaSetDevice(devices_[r]);
      if (streams_[r]) cudaStreamDestroy(streams_[r]);
      if (comms_[r]) nccl().comm_destroy(comms_[r]);
    }
  }
  nccl_communicator(const nccl_communicator&) = delete;
  nccl_communicator& operator=(const nccl_communicator&) = delete;

  // `data` is complete (the caller's stream is synchronised); each rank's thread enqueues its
  // own part of the collective, and NCCL matches them. The ranks meet on the host first: a
  // collective whose peer failed would wait on the device for ever, so a failed rank breaks
  // the barrier (abort) before any rank enqueues.
  void all_reduce_sum(int rank, float* data, size_t n) override {
    const size_t r = static_cast<size_t>(rank);
    barrier_.wait();
    RBEE_CUDA_CHECK(cudaSetDevice(devices_[r]));
    check_nccl(nccl().all_reduce(data, data, n, nccl_float32, nccl_sum, comms_[r], streams_[r]),
               "ncclAllReduce");
    RBEE_CUDA_CHECK(cudaStreamSynchronize(streams_[r]));
  }

  void abort() override { barrier_.abort(); }

 private:
  std::vector<int> devices_;
  rank_barrier barrier_;
  std::vector<nccl_comm_t> comms_;
  std::vector<cudaStream_t> streams_;
};

}  // namespace

std::unique_ptr<communicator> make_nccl_communicator(const std::vector<int>& devices) {
  return std::make_unique<nccl_communicator>(devices);
}

}  // namespace rbee::engine::cuda
