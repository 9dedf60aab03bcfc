#include "common/thread_priority.h"

#include <pthread.h>
#include <sched.h>

namespace rbee::common {

namespace {

void set_policy(int policy) {
  sched_param param{};
  param.sched_priority = 0;
  // Failure only costs latency under load; nothing to report to the caller.
  (void)pthread_setschedparam(pthread_self(), policy, &param);
}

}  // namespace

void run_as_batch_work() {
  set_policy(SCHED_BATCH);
}

void run_as_interactive_work() {
  set_policy(SCHED_OTHER);
}

}  // namespace rbee::common
