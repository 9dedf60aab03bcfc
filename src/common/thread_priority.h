#pragma once
// Long-running work (token streams, decoding) yields the CPU to short requests (/health, admin
// calls): on a machine whose cores are all busy streaming, a health check must still be
// answered at once (issue 13). SCHED_BATCH keeps such threads' share of the CPU but lets any
// normal thread that wakes up run before them; unlike a higher nice value it can be undone
// without privileges, so pooled threads go back to normal afterwards.

namespace rbee::common {

// Marks the calling thread as batch work; threads it starts inherit that.
void run_as_batch_work();
// Back to normal scheduling.
void run_as_interactive_work();

// Batch work for the lifetime of the guard.
class batch_work_scope {
 public:
  batch_work_scope() { run_as_batch_work(); }
  ~batch_work_scope() { run_as_interactive_work(); }
  batch_work_scope(const batch_work_scope&) = delete;
  batch_work_scope& operator=(const batch_work_scope&) = delete;
};

}  // namespace rbee::common
