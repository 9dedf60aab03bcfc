#include <algorithm>
#include <cassert>

#include "engine/cpu/kernels.h"

namespace rbee::engine::cpu {

namespace {

// Spinning keeps the hand-over between back-to-back matmuls short; after this many polls a
// thread sleeps, so an idle engine (or an overloaded machine) does not burn CPU.
constexpr int spin_limit = 1 << 12;

constexpr int task_bits = 20;
constexpr uint64_t task_mask = (uint64_t{1} << task_bits) - 1;
constexpr uint32_t generation_mask = (1u << 24) - 1;

inline void cpu_relax() {
  __builtin_ia32_pause();
}

}  // namespace

thread_pool::thread_pool(int n_threads) : n_threads_(std::max(1, n_threads)) {
  workers_.reserve(n_threads_ - 1);
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker_main(i); });
}

thread_pool::~thread_pool() {
  stop_.store(true, std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_release);
  generation_.notify_all();
  for (auto& t : workers_) t.join();
}

void thread_pool::work(uint32_t gen, int thread) {
  uint64_t job = job_.load(std::memory_order_acquire);
  for (;;) {
    if ((job >> (2 * task_bits)) != (gen & generation_mask)) return;
    const uint64_t next = job & task_mask;
    if (next >= ((job >> task_bits) & task_mask)) return;
    if (!job_.compare_exchange_weak(job, job + 1, std::memory_order_acq_rel)) continue;
    // The claimed task is not done yet, so run_impl is still waiting: ctx_/call_ are this
    // generation's.
    call_(ctx_, static_cast<int>(next), thread);
    if (done_.fetch_add(1, std::memory_order_acq_rel) + 1 ==
        static_cast<int>((job >> task_bits) & task_mask)) {
      done_.notify_one();
    }
    job = job_.load(std::memory_order_acquire);
  }
}

void thread_pool::run_impl(int n_tasks, void* ctx, call_t call) {
  if (n_tasks <= 0) return;
  if (n_threads_ == 1 || n_tasks == 1) {
    for (int i = 0; i < n_tasks; ++i) call(ctx, i, 0);
    return;
  }
  assert(static_cast<uint64_t>(n_tasks) <= task_mask && "too many tasks for one run");
  ctx_ = ctx;
  call_ = call;
  done_.store(0, std::memory_order_relaxed);
  const uint32_t gen = generation_.load(std::memory_order_relaxed) + 1;
  job_.store((uint64_t{gen & generation_mask} << (2 * task_bits)) |
                 (static_cast<uint64_t>(n_tasks) << task_bits),
             std::memory_order_release);
  generation_.store(gen, std::memory_order_release);
  generation_.notify_all();
  work(gen, 0);
  // Only tasks that workers already claimed (and are running) remain.
  int spins = 0;
  for (int done; (done = done_.load(std::memory_order_acquire)) != n_tasks;) {
    if (++spins < spin_limit) {
      cpu_relax();
    } else {
      done_.wait(done, std::memory_order_acquire);
    }
  }
}

void thread_pool::worker_main(int thread) {
  uint32_t seen = 0;
  for (;;) {
    uint32_t gen;
    int spins = 0;
    while ((gen = generation_.load(std::memory_order_acquire)) == seen) {
      if (++spins < spin_limit) {
        cpu_relax();
      } else {
        generation_.wait(seen, std::memory_order_acquire);
      }
    }
    seen = gen;
    if (stop_.load(std::memory_order_relaxed)) return;
    work(gen, thread);
  }
}

}  // namespace rbee::engine::cpu
