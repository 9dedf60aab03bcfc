#pragma once
// The slot scheduler: ONE inference thread owns the engine context (n_seq = slots) and every
// slot. Each step it admits submitted jobs into free slots, builds one decode batch (the next
// token of every generating slot plus a chunk of pending prompt tokens, see batch_planner.h),
// samples every slot's next token together (on CUDA, one device round trip), and pushes events
// to each job's channel. HTTP handlers only submit, cancel and drain job channels; they never
// touch the engine.
// A job's prompt starts from the longest prefix the context's prefix cache holds (whole KV
// blocks computed for an earlier or a running job, engine::sequence_reuse_prefix); only the
// rest is prefilled, and the end event reports the cached part as tokens_cached.
// A job of n choices takes n slots: choice 0's slot prefills the prompt; when its last prompt
// token's logits arrive, the other choices get a copy of its cache (engine::sequence_copy) and
// draw their first token from the same logits, then every choice decodes on its own. The job
// ends (one end event) when its last choice ends.

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
  // Where the inference thread's time went over all decode steps (seconds): cancellations
  // and the batch plan, the forward pass, the sampling of the step's tokens, and their
  // events (detokenizing, stop strings, constraints, pushing to the job channels).
  uint64_t steps = 0;
  double plan_s = 0, forward_s = 0, sample_s = 0, emit_s = 0;
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
  // Takes the job when a slot is free for each of its choices. Its prompt + max_tokens must fit
  // the context and its choices the slots (checked by the caller; asserted here).
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
    int choice = 0;
    bool awaiting_prompt = false;  // a choice > 0 until choice 0's prefill is done
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
    // A resumable job's tokens generated since its last event (reported with the next one).
    std::vector<engine::token_id> unreported;
    std::string replay_error;  // a resumed job whose tokens do not replay: failed next step
  };

  void run();
  bool admit_and_wait();  // false when the thread should exit
  void step();
  void admit(int slot_index, const std::shared_ptr<job>& j, int choice);
  // A resumed job: its generated tokens through the detokenizer, stop strings and constraint,
  // so the text they released and held is where the first worker had it. An error when they
  // could not have been generated (a stop or the document ended among them).
  std::string replay(slot& s);
  // The other choices of the job whose prompt slot `lead` just got its logits: copies of its
  // cache, each to draw its first token from those logits (added to choosing_).
  void start_other_choices(slot& lead, int lead_index, int batch_index);
  // Samples the next token of every slot in choosing_ at once, then hands each to on_token.
  void choose_tokens();
  // A slot's sampled token: its text, its end, its constraint's step.
  void on_token(slot& s, int slot_index, int batch_index, engine::token_id token);
  api::token_logprobs_fields logprobs_of(int batch_index, engine::token_id token, int n_top);
  void emit(slot& s, std::string text, std::optional<api::token_logprobs_fields> logprobs = {});
  // Ends one choice; the job's end event goes out with its last.
  void finish(slot& s, int slot_index, stop_reason reason);
  // Ends the whole job (every choice) with an error event.
  void fail(slot& s, const std::string& code, const std::string& message);
  // Frees the slot and its sequence; returns its job.
  std::shared_ptr<job> release(slot& s, int slot_index);
  // The job has ended: its slots are no longer reserved.
  void retire(const std::shared_ptr<job>& j);

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
  std::vector<int> failed_replays_;
  std::vector<std::pair<int, int>> logits_slots_;  // (slot, its batch entry with logits)
  std::vector<int> other_choices_;
  std::vector<std::pair<int, int>> choosing_;  // (slot, batch entry) sampled this step
  std::vector<engine::sample_request> requests_;
  std::vector<engine::token_id> chosen_;
  engine::token_logprobs logprobs_;

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::shared_ptr<job>> pending_;
  std::vector<std::shared_ptr<job>> live_;  // pending + admitted
  int slots_reserved_ = 0;                  // the choices of the live jobs
  bool stopping_ = false;
  std::chrono::steady_clock::time_point last_job_end_ = std::chrono::steady_clock::now();
  std::thread thread_;

  std::atomic<uint64_t> tokens_generated_{0};
  std::atomic<uint64_t> jobs_finished_{0};
  std::atomic<double> last_tokens_per_sec_{0};
  // scheduler_stats' step phases, in nanoseconds.
  std::atomic<uint64_t> steps_{0}, plan_ns_{0}, forward_ns_{0}, sample_ns_{0}, emit_ns_{0};
};

}  // namespace rbee::worker
