#pragma once
// How the parts of a tensor-parallel model (tensor_split.h, docs/multi-gpu.md) join their
// partial sums: each part computes a slice of every layer's attention heads and FFN rows, and
// after the attention output and the FFN down projection every part holds a partial sum of
// the whole product. An all-reduce adds them, so each part continues with the same residual
// stream. The host communicator here serves parts on the CPU; the CUDA backend has its own
// for parts on GPUs.
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>

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

// A barrier of n ranks that a failed rank can break: communicators wait on it.
class rank_barrier {
 public:
  explicit rank_barrier(int n_ranks) : n_ranks_(n_ranks) {}
  // Returns when every rank has arrived; engine_error(backend_unavailable) once broken.
  void wait();
  // Every wait, now and later, throws.
  void abort();

 private:
  int n_ranks_;
  std::mutex mutex_;
  std::condition_variable arrived_cv_;
  int arrived_ = 0;
  uint64_t round_ = 0;
  bool aborted_ = false;
};

// For ranks whose data is in host memory; sums in rank order.
std::unique_ptr<communicator> make_host_communicator(int n_ranks);

}  // namespace rbee::engine
