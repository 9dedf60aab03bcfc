#pragma once
// Time as an injected dependency: code that times out or timestamps takes a clock&, tests pass
// a manual_clock and advance it.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>

namespace rbee::common {

struct clock {
  virtual ~clock() = default;
  virtual std::chrono::steady_clock::time_point now() const = 0;
  virtual int64_t unix_now() const = 0;  // seconds since the epoch
};

struct system_clock_source : clock {
  std::chrono::steady_clock::time_point now() const override {
    return std::chrono::steady_clock::now();
  }
  int64_t unix_now() const override;
};

// A process-wide system clock for production wiring.
const clock& system_clock_instance();

class manual_clock : public clock {
 public:
  explicit manual_clock(int64_t unix_start = 1'700'000'000) : unix_(unix_start) {}
  std::chrono::steady_clock::time_point now() const override {
    std::lock_guard lock(mutex_);
    return steady_;
  }
  int64_t unix_now() const override {
    std::lock_guard lock(mutex_);
    return unix_;
  }
  // Moves both clocks forward; unix time by whole seconds elapsed.
  void advance(std::chrono::steady_clock::duration d);

 private:
  mutable std::mutex mutex_;
  std::chrono::steady_clock::time_point steady_{};
  std::chrono::steady_clock::duration sub_second_{};
  int64_t unix_;
};

}  // namespace rbee::common
