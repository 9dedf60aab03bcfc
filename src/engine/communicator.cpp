#include "engine/communicator.h"

#include <algorithm>
#include <vector>

#include "engine/engine.h"

namespace rbee::engine {

void rank_barrier::wait() {
  std::unique_lock lock(mutex_);
  const uint64_t round = round_;
  if (++arrived_ == n_ranks_) {
    arrived_ = 0;
    ++round_;
    arrived_cv_.notify_all();
  } else {
    arrived_cv_.wait(lock, [&] { return round_ != round || aborted_; });
  }
  if (aborted_)
    throw engine_error(error_code::backend_unavailable,
                       "tensor split: another part of the model failed; reload the model");
}

void rank_barrier::abort() {
  std::lock_guard lock(mutex_);
  aborted_ = true;
  arrived_cv_.notify_all();
}

namespace {

class host_communicator final : public communicator {
 public:
  explicit host_communicator(int n_ranks)
      : barrier_(n_ranks),
        data_(static_cast<size_t>(n_ranks)),
        sums_(static_cast<size_t>(n_ranks)) {}

  // Every rank adds all the parts in rank order into its own scratch (the same operations on
  // every rank, so the same bits), then copies the sum back once no rank reads the parts any
  // more. Adding n floats n_ranks times is little beside the products that made them.
  void all_reduce_sum(int rank, float* data, size_t n) override {
    const size_t r = static_cast<size_t>(rank);
    data_[r] = data;
    std::vector<float>& sum = sums_[r];
    if (sum.size() < n) sum.resize(n);
    barrier_.wait();  // every part is written
    std::copy_n(data_[0], n, sum.begin());
    for (size_t q = 1; q < data_.size(); ++q)
      for (size_t i = 0; i < n; ++i) sum[i] += data_[q][i];
    barrier_.wait();  // no rank reads the parts any more
    std::copy_n(sum.begin(), n, data);
  }

  void abort() override { barrier_.abort(); }

 private:
  rank_barrier barrier_;
  std::vector<float*> data_;              // each rank's part, set before the first barrier
  std::vector<std::vector<float>> sums_;  // each rank's own scratch
};

}  // namespace

std::unique_ptr<communicator> make_host_communicator(int n_ranks) {
  return std::make_unique<host_communicator>(n_ranks);
}

}  // namespace rbee::engine
