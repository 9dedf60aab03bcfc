#pragma once
// One inference job as the HTTP layer and the inference thread share it: the inference
// thread pushes events, the SSE handler pops them. Cancellation is a flag the inference
// thread reads once per decode step.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "api/stream_events.h"
#include "engine/engine.h"
#include "structured/grammar.h"

namespace rbee::worker {

using api::stop_reason;

struct token_event {
  std::string text;  // whole UTF-8 characters, never part of a stop string
  int index = 0;     // 0-based index of the generated token that completed this text
  int choice = 0;    // which of the job's n choices
  // When the job asked for them: the token's log-probability and its best alternatives.
  std::optional<api::token_logprobs_fields> logprobs;
  // A resumable job's: the tokens since the previous event and the sampler after them.
  std::optional<api::resume_mark> mark;
};

// Failover (docs/failover.md): a resumable job reports where it could continue; a resumed one
// continues another worker's generation of the same prompt.
struct resume_options {
  bool report_marks = false;
  std::vector<engine::token_id> generated;       // replayed, never sent again
  std::optional<engine::sampler_state> sampler;  // after the last generated token
};

// Counts and timings: prompt_ms from admission to the first sampled token (prefill),
// decode_ms from there to the end of the last choice; one per job, listing every choice.
using end_event = api::end_stats;

struct error_event {
  std::string code;
  std::string message;
};

// The stream always ends with exactly one end_event or error_event.
using job_event = std::variant<token_event, end_event, error_event>;

class job {
 public:
  job(std::string id, std::vector<engine::token_id> prompt_tokens, int max_tokens,
      engine::sampling_params sampling, std::vector<std::string> stop, int n_choices = 1,
      std::optional<int> n_logprobs = std::nullopt,
      std::shared_ptr<const structured::grammar> grammar = nullptr, resume_options resume = {});

  const std::string& id() const { return id_; }

  // ---- consumer side (HTTP handler) ----
  // Waits up to `timeout` for the next event; nullopt on timeout.
  std::optional<job_event> next_event(std::chrono::milliseconds timeout);
  // The client's own cancel (DELETE, disconnect): the stream ends with end/cancelled.
  void cancel() { cancelled_.store(true); }
  // The worker stops (drain, SIGTERM): the stream ends with an error, never a short success.
  void abort_for_shutdown() {
    shutting_down_.store(true);
    cancelled_.store(true);
  }

  // ---- producer side (inference thread) ----
  bool cancelled() const { return cancelled_.load(); }
  bool aborted_for_shutdown() const { return shutting_down_.load(); }
  void push(job_event event);
  bool finished() const;  // an end or error event was pushed

  // What the inference thread needs to run the job (read-only after construction).
  const std::vector<engine::token_id> prompt_tokens;
  const int max_tokens;
  const engine::sampling_params sampling;  // choice i draws with sampling.seed + i
  const std::vector<std::string> stop;
  const int n_choices;                  // each takes a slot; the prompt is prefilled once
  const std::optional<int> n_logprobs;  // top alternatives per token; nullopt: none
  // Constrained decoding: tokens are masked to this grammar and each choice ends with the
  // document (null: free text).
  const std::shared_ptr<const structured::grammar> grammar;
  const resume_options resume;  // one choice only

  // The inference thread's record of the running job (no other thread touches it).
  struct progress {
    std::vector<api::choice_end> choices;  // (n_choices,) filled as each choice ends
    int choices_open = 0;
    int tokens_cached = 0;  // prompt positions the prefix cache held at admission
    std::chrono::steady_clock::time_point t_admitted, t_first_token;
  } run;

 private:
  std::string id_;
  std::atomic<bool> cancelled_{false};
  std::atomic<bool> shutting_down_{false};
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<job_event> events_;
  bool finished_ = false;
};

}  // namespace rbee::worker
