#pragma once
// How the parts of a tensor-parallel model (tensor_split.h, docs/multi-gpu.md) join their
// partial sums: each part computes a slice of every layer's attention heads and FFN rows, and
// after the attention output and the FFN down projection every part holds a partial sum of
// the whole product. An all-reduce adds them, so each part continues with the same residual
// stream. The host communicator here serves parts on the CPU; the CUDA backend has its own
// for parts on GPUs.
#include <cstddef>
#include <memory>

namespace rbee::engine {

class communicator {
 public:
  virtual ~communicator() = default;

  // Called by every rank (0 .. n_ranks-1), each from its own thread, with its own n floats
  // in `data` (memory its backend computes in): returns when every rank's `data` holds the
  // elementwise sum over the ranks, the same bits on every rank. Throws
  // engine_error(backend_unavailable) when a rank failed (abort) instead of waiting for it.
  virtual void all_reduce_sum(int rank, float* data, size_t n) = 0;
  // A rank that failed calls this so that the others stop waiting for it: every wait, now
  // and later, throws.
  virtual void abort() = 0;
};

// For ranks whose data is in host memory; sums in rank order.
std::unique_ptr<communicator> make_host_communicator(int n_ranks);

}  // namespace rbee::engine
