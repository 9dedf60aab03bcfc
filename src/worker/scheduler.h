#pragma once
// The slot scheduler: ONE inference thread owns the engine context (n_seq = slots) and every
// slot. Each step it admits submitted jobs into free slots, builds one decode batch (the next
// token of every generating slot plus a chunk of pending prompt tokens, see batch_planner.h),
// samples, and pushes events to each job's channel. HTTP handlers only submit, cancel and
// drain job channels; they never touch the engine.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "engine/engine.h"
#include "engine/sampling.h"
#include "structured/token_constraint.h"
#include "worker/batch_planner.h"
#include "worker/job.h"

namespace rbee::worker {

struct scheduler_options {
  int n_slots = 1;
  int n_batch = 512;         // the context's n_batch (>= n_slots)
  int prefill_budget = 128;  // prompt tokens per decode step
  // Test only: a pause before each decode step, so tests can act in the middle of an answer.
  std::chrono::milliseconds debug_step_delay{0};
};

enum class submit_result { accepted, all_slots_busy, duplicate_job_id, stopping };

struct scheduler_stats {
  int slots_total = 0;
  int slots_busy = 0;    // admitted jobs
  int queue_length = 0;  // submitted, waiting for the next step to admit them
  uint64_t tokens_generated = 0;
  uint64_t jobs_finished = 0;
  double last_tokens_per_sec = 0;  // of the most recently finished stream
  // Milliseconds since the last job ended (since start() before the first); 0 while any job
  // is admitted or waiting. The hive's idle timeout counts from this, so a worker used
  // between two of its health checks is not taken for idle.
  int64_t idle_ms = 0;
};

class scheduler {
 public:
  scheduler(engine::model& model, engine::context& ctx, scheduler_options options);
  ~scheduler();  // stop()
  scheduler(const scheduler&) = delete;
  scheduler& operator=(const scheduler&) = delete;

  void start();
  // Takes the job when a slot is free for it. Its prompt + max_tokens must fit the context
  // (checked by the caller; asserted here).
  submit_result submit(std::shared_ptr<job> j);
  // Cancels a pending or running job; false when no such job is live. Idempotent.
  bool cancel(const std::string& job_id);
  // Refuses new jobs from now on and cancels the live ones (each gets end/cancelled).
  void drain();
  // drain(), then waits for the inference thread to end every stream and exit.
  void stop();

  scheduler_stats stats() const;
  bool idle() const;  // no job admitted or waiting

 private:
  struct slot {
    std::shared_ptr<job> j;
    int n_prompt_done = 0;
    int n_past = 0;
    int n_generated = 0;  // sampled tokens, end-of-generation excluded
    engine::token_id next_token = 0;
    bool generating = false;
    std::vector<engine::token_id> history;
    std::optional<engine::sampler> sampler;
    std::optional<engine::detokenizer> detok;
    std::optional<engine::stop_matcher> stops;
    std::optional<structured::token_constraint> constraint;
    std::vector<uint64_t> allowed;  // the constraint's mask for the next choice
    std::chrono::steady_clock::time_point t_admitted, t_first_token;
  };

  void run();
  bool admit_and_wait();  // false when the thread should exit
  void step();
  void on_logits(slot& s, int slot_index, int batch_index);
  void emit_text(slot& s, const std::string& text);
  void finish(slot& s, int slot_index, stop_reason reason);
  void fail(slot& s, int slot_index, const std::string& code, const std::string& message);
  // Frees the slot and its sequence; returns the job so its final event can be pushed.
  std::shared_ptr<job> release(slot& s, int slot_index);

  engine::model& model_;
  engine::context& ctx_;
  const scheduler_options options_;
  const int n_vocab_;
  // The model's token pieces in a trie, built for the first constrained job and shared by
  // every later one.
  std::optional<structured::token_vocabulary> vocabulary_;

  // Owned by the inference thread.
  std::vector<slot> slots_;
  std::vector<int> admission_order_;
  std::vector<engine::batch_entry> batch_;
  std::vector<slot_demand> demand_;
  std::vector<int> cancelled_;
  std::vector<std::pair<int, int>> logits_slots_;  // (slot, its batch entry with logits)

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::shared_ptr<job>> pending_;
  std::vector<std::shared_ptr<job>> live_;  // pending + admitted
  int n_admitted_ = 0;
  bool stopping_ = false;
  std::chrono::steady_clock::time_point last_job_end_ = std::chrono::steady_clock::now();
  std::thread thread_;

  std::atomic<uint64_t> tokens_generated_{0};
  std::atomic<uint64_t> jobs_finished_{0};
  std::atomic<double> last_tokens_per_sec_{0};
};

}  // namespace rbee::worker
