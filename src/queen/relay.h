#pragma once
// Relay: one attempt of a task on a worker. POST /v1/inference, the worker's events on to the
// task's sinks (token events as the worker wrote them, when a text sink takes them), the
// per-model metrics (time to first token, inter-token latency, tokens in and out, decode
// speed), and the checks that no answer ends silently: a worker that stops mid-answer for
// anything but this task's cancel is an error, never an end.

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/metrics.h"
#include "queen/errors.h"
#include "queen/scheduler.h"
#include "queen/task_request.h"

namespace rbee::queen {

// What an answer needs to continue on another worker after losing its own mid-stream
// (docs/failover.md): the prompt's tokens as its first worker rendered them, the tokens the
// client has, and the sampler's state after the last of them. The relay keeps it current from
// the worker's started event and its token events' resume marks (api/stream_events.h).
struct resume_progress {
  bool resumable = false;  // one choice, failover on: workers are asked for resume marks
  std::vector<int32_t> prompt_tokens;
  std::vector<int32_t> generated;
  uint64_t rng_state = 0;
  bool started_sent = false;  // the client has its started event: a later worker's is dropped
  // When the last worker was lost: the next token observes the failover's latency.
  std::optional<std::chrono::steady_clock::time_point> lost_at;

  bool can_resume() const { return resumable && !prompt_tokens.empty() && !generated.empty(); }
};

struct relay_result {
  bool ended = false;  // the worker's end or error event reached the sink
  // The worker could not take the task and no token was sent: another worker may.
  std::optional<std::string> retry_reason;
  // The worker refused the task, or was lost mid-answer (then worker_lost). A lost worker's
  // error is not sent: the answer may continue elsewhere.
  std::optional<error> failure;
  bool worker_lost = false;
  std::string lost_reason;  // "connection_lost", "shutting_down" or "stalled"
};

class task_relay {
 public:
  explicit task_relay(common::metrics_registry& metrics);

  // send takes every event but tokens when `tokens` is set; both return false once the
  // consumer is gone. cancelled() is asked while the worker is silent. A resumable task's
  // progress is kept current, and a task with progress continues from it. A worker silent for
  // stall_timeout after the task's first token is lost.
  relay_result run(const task_request& request, const worker_info& worker,
                   std::chrono::steady_clock::time_point accepted_at, const task_sink& send,
                   const token_text_sink& tokens, const std::function<bool()>& cancelled,
                   resume_progress& progress, std::chrono::milliseconds stall_timeout);

 private:
  // When one answer's tokens came, for the per-model latency histograms.
  struct answer_timing {
    std::string model;
    std::chrono::steady_clock::time_point accepted_at;
    std::optional<std::chrono::steady_clock::time_point> last_token;
  };
  // The first token's time to first token, every later one's inter-token latency.
  void observe_token(answer_timing& timing);
  // An answer that ended ("completed") or failed ("error"), by the worker's model.
  void count_answer(const worker_info& w, std::string_view outcome);
  // Requests, prompt and generated tokens and decode speed of an answer's end event.
  void observe_end(const worker_info& w, const nlohmann::json& end);
  // A token event's resume mark (its SSE id) into the progress; false when a resumable
  // worker's event has none (the answer can then no longer move).
  static bool record_mark(resume_progress& progress, const std::string& id);

  common::metrics_registry& metrics_;
};

}  // namespace rbee::queen
