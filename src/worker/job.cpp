#include "worker/job.h"

#include <cassert>
#include <utility>

namespace rbee::worker {

job::job(std::string id, std::vector<engine::token_id> prompt_tokens, int max_tokens,
         engine::sampling_params sampling, std::vector<std::string> stop, int n_choices,
         std::optional<int> n_logprobs, std::shared_ptr<const structured::grammar> grammar,
         resume_options resume)
    : prompt_tokens(std::move(prompt_tokens)),
      max_tokens(max_tokens),
      sampling(std::move(sampling)),
      stop(std::move(stop)),
      n_choices(n_choices),
      n_logprobs(n_logprobs),
      grammar(std::move(grammar)),
      resume(std::move(resume)),
      id_(std::move(id)) {
  assert(n_choices >= 1 && "job: at least one choice");
  assert((n_choices == 1 || (!this->resume.report_marks && this->resume.generated.empty())) &&
         "job: only a single choice resumes");
}

std::optional<job_event> job::next_event(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  if (!cv_.wait_for(lock, timeout, [&] { return !events_.empty(); })) return std::nullopt;
  job_event event = std::move(events_.front());
  events_.pop_front();
  return event;
}

void job::push(job_event event) {
  {
    std::lock_guard lock(mutex_);
    assert(!finished_ && "job: event pushed after the stream ended");
    if (!std::holds_alternative<token_event>(event)) finished_ = true;
    events_.push_back(std::move(event));
  }
  cv_.notify_all();
}

bool job::finished() const {
  std::lock_guard lock(mutex_);
  return finished_;
}

}  // namespace rbee::worker
