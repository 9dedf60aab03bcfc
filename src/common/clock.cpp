#include "common/clock.h"

namespace rbee::common {

int64_t system_clock_source::unix_now() const {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

const clock& system_clock_instance() {
  static const system_clock_source instance;
  return instance;
}

void manual_clock::advance(std::chrono::steady_clock::duration d) {
  std::lock_guard lock(mutex_);
  steady_ += d;
  sub_second_ += d;
  auto whole = std::chrono::duration_cast<std::chrono::seconds>(sub_second_);
  unix_ += whole.count();
  sub_second_ -= whole;
}

}  // namespace rbee::common
