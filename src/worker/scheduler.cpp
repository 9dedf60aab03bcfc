#include "worker/scheduler.h"

#include <algorithm>
#include <cassert>
#include <utility>

#include "common/errors.h"

namespace rbee::worker {

namespace {

double ms_between(std::chrono::steady_clock::time_point a,
                  std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

uint64_t ns_between(std::chrono::steady_clock::time_point a,
                    std::chrono::steady_clock::time_point b) {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(b - a).count());
}

// The constraint's view of the vocabulary: text pieces, and the end-of-generation tokens
// that may close a complete document.
structured::token_vocabulary constraint_vocabulary(const engine::model& model) {
  const int n_vocab = engine::model_get_info(model).n_vocab;
  std::vector<structured::token> end_tokens;
  for (engine::token_id t = 0; t < n_vocab; ++t)
    if (engine::token_is_end_of_generation(model, t)) end_tokens.push_back(t);
  return structured::token_vocabulary(engine::text_token_pieces(model), std::move(end_tokens));
}

}  // namespace

scheduler::scheduler(engine::model& model, engine::context& ctx, scheduler_options options)
    : model_(model),
      ctx_(ctx),
      options_(options),
      n_vocab_(engine::model_get_info(model).n_vocab),
      slots_(static_cast<size_t>(options.n_slots)) {
  assert(options_.n_slots >= 1 && "scheduler: need at least one slot");
  assert(options_.n_batch >= options_.n_slots && "scheduler: n_batch must hold one token per slot");
  assert(options_.prefill_budget >= 1 && "scheduler: prefill budget must be positive");
}

scheduler::~scheduler() {
  stop();
}

void scheduler::start() {
  assert(!thread_.joinable() && "scheduler: started twice");
  {
    std::lock_guard lock(mutex_);
    last_job_end_ = std::chrono::steady_clock::now();
  }
  thread_ = std::thread([this] { run(); });
}

submit_result scheduler::submit(std::shared_ptr<job> j) {
  assert(static_cast<int>(j->prompt_tokens.size()) + j->max_tokens <= engine::context_n_ctx(ctx_) &&
         "scheduler: job does not fit the context");
  assert(j->n_choices <= options_.n_slots && "scheduler: more choices than slots");
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return submit_result::stopping;
    for (const auto& live : live_) {
      if (live->id() == j->id()) return submit_result::duplicate_job_id;
    }
    if (slots_reserved_ + j->n_choices > options_.n_slots) return submit_result::all_slots_busy;
    slots_reserved_ += j->n_choices;
    live_.push_back(j);
    pending_.push_back(std::move(j));
  }
  cv_.notify_all();
  return submit_result::accepted;
}

bool scheduler::cancel(const std::string& job_id) {
  bool found = false;
  {
    std::lock_guard lock(mutex_);
    for (const auto& live : live_) {
      if (live->id() == job_id) {
        live->cancel();
        found = true;
      }
    }
  }
  cv_.notify_all();
  return found;
}

void scheduler::drain() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    for (const auto& live : live_) live->abort_for_shutdown();
  }
  cv_.notify_all();
}

void scheduler::stop() {
  drain();
  if (thread_.joinable()) thread_.join();
}

scheduler_stats scheduler::stats() const {
  scheduler_stats s;
  s.slots_total = options_.n_slots;
  {
    std::lock_guard lock(mutex_);
    s.queue_length = static_cast<int>(pending_.size());
    s.slots_busy = slots_reserved_;
    for (const auto& waiting : pending_) s.slots_busy -= waiting->n_choices;
    if (live_.empty()) {
      s.idle_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - last_job_end_)
                      .count();
    }
  }
  s.tokens_generated = tokens_generated_.load();
  s.jobs_finished = jobs_finished_.load();
  s.last_tokens_per_sec = last_tokens_per_sec_.load();
  s.steps = steps_.load();
  s.plan_s = static_cast<double>(plan_ns_.load()) * 1e-9;
  s.forward_s = static_cast<double>(forward_ns_.load()) * 1e-9;
  s.sample_s = static_cast<double>(sample_ns_.load()) * 1e-9;
  s.emit_s = static_cast<double>(emit_ns_.load()) * 1e-9;
  return s;
}

bool scheduler::idle() const {
  std::lock_guard lock(mutex_);
  return live_.empty();
}

void scheduler::run() {
  while (admit_and_wait()) step();
}

bool scheduler::admit_and_wait() {
  std::unique_lock lock(mutex_);
  for (;;) {
    while (!pending_.empty()) {
      std::shared_ptr<job> j = std::move(pending_.front());
      pending_.erase(pending_.begin());
      j->run.choices.assign(static_cast<size_t>(j->n_choices), {});
      j->run.choices_open = j->n_choices;
      j->run.t_admitted = std::chrono::steady_clock::now();
      j->run.t_first_token = {};
      for (int choice = 0; choice < j->n_choices; ++choice) {
        auto free_slot =
            std::find_if(slots_.begin(), slots_.end(), [](const slot& s) { return !s.j; });
        assert(free_slot != slots_.end() && "scheduler: more live choices than slots");
        admit(static_cast<int>(free_slot - slots_.begin()), j, choice);
      }
    }
    if (!admission_order_.empty()) return true;
    if (stopping_) return false;
    cv_.wait(lock);
  }
}

void scheduler::admit(int slot_index, const std::shared_ptr<job>& j, int choice) {
  slot& s = slots_[static_cast<size_t>(slot_index)];
  s.j = j;
  s.choice = choice;
  // Choices after the first share choice 0's prefill: no prompt of their own to decode.
  // Choice 0 starts from the longest cached prefix of its prompt.
  s.awaiting_prompt = choice > 0;
  const int cached =
      choice > 0 ? 0 : engine::sequence_reuse_prefix(ctx_, slot_index, j->prompt_tokens);
  if (choice == 0) j->run.tokens_cached = cached;
  s.n_prompt_done = choice > 0 ? static_cast<int>(j->prompt_tokens.size()) : cached;
  s.n_past = cached;
  s.n_generated = 0;
  s.generating = false;
  s.history.assign(j->prompt_tokens.begin(), j->prompt_tokens.end());
  // Seeded choices repeat, and differ from each other.
  engine::sampling_params sampling = j->sampling;
  sampling.seed += static_cast<uint64_t>(choice);
  s.sampler.emplace(sampling, n_vocab_);
  s.detok.emplace(model_);
  s.stops.emplace(j->stop);
  s.constraint.reset();
  if (j->grammar) {
    if (!vocabulary_) vocabulary_.emplace(constraint_vocabulary(model_));
    s.constraint.emplace(j->grammar, *vocabulary_);
    s.allowed.assign(vocabulary_->mask_words(), 0);
  }
  s.unreported.clear();
  s.replay_error = replay(s);
  admission_order_.push_back(slot_index);
}

std::string scheduler::replay(slot& s) {
  const resume_options& resume = s.j->resume;
  if (resume.sampler) s.sampler->restore(*resume.sampler);
  for (engine::token_id token : resume.generated) {
    // The prefill covers them: the history is the prompt and these, decoded from position 0.
    s.history.push_back(token);
    ++s.n_generated;
    s.stops->push(s.detok->push(token));
    if (s.stops->matched()) return "a stop string ends among the resumed tokens";
    if (s.constraint && (!s.constraint->accept(token) || s.constraint->finished())) {
      return "the resumed tokens do not continue the constrained output";
    }
  }
  return {};
}

void scheduler::step() {
  if (options_.debug_step_delay.count() > 0) std::this_thread::sleep_for(options_.debug_step_delay);
  const auto t_start = std::chrono::steady_clock::now();
  // Cancellation (DELETE, client disconnect, drain) takes effect before the next decode.
  failed_replays_.clear();
  for (int index : admission_order_) {
    if (!slots_[index].replay_error.empty()) failed_replays_.push_back(index);
  }
  for (int index : failed_replays_) {
    slot& s = slots_[index];
    fail(s, std::string(common::codes::INVALID_REQUEST), "resume: " + s.replay_error);
  }
  cancelled_.clear();
  for (int index : admission_order_) {
    if (slots_[index].j->cancelled()) cancelled_.push_back(index);
  }
  for (int index : cancelled_) {
    slot& s = slots_[index];
    if (!s.j) continue;  // its job failed as a whole with an earlier choice
    if (s.j->aborted_for_shutdown()) {
      fail(s, std::string(common::codes::SHUTTING_DOWN),
           "the worker is shutting down: the answer stopped after " +
               std::to_string(s.n_generated) + " tokens");
    } else {
      finish(s, index, stop_reason::cancelled);
    }
  }
  if (admission_order_.empty()) return;

  demand_.clear();
  for (int index : admission_order_) {
    const slot& s = slots_[index];
    // The prefill is the history until generation starts: the prompt, and a resumed job's
    // generated tokens after it.
    demand_.push_back(
        {.slot = index,
         .generating = s.generating,
         .prompt_remaining =
             s.generating ? 0 : static_cast<int>(s.history.size()) - s.n_prompt_done});
  }
  std::vector<planned_work> plan = plan_batch(demand_, options_.n_batch, options_.prefill_budget);

  batch_.clear();
  logits_slots_.clear();
  for (const auto& work : plan) {
    slot& s = slots_[work.slot];
    if (work.generating) {
      logits_slots_.emplace_back(work.slot, static_cast<int>(batch_.size()));
      batch_.push_back(
          {.token = s.next_token, .pos = s.n_past, .seq = work.slot, .want_logits = true});
      continue;
    }
    for (int k = 0; k < work.n_tokens; ++k) {
      bool last = work.prompt_done && k == work.n_tokens - 1;
      batch_.push_back({.token = s.history[static_cast<size_t>(s.n_prompt_done + k)],
                        .pos = s.n_past + k,
                        .seq = work.slot,
                        .want_logits = last});
    }
    if (work.prompt_done)
      logits_slots_.emplace_back(work.slot, static_cast<int>(batch_.size()) - 1);
  }

  const auto t_planned = std::chrono::steady_clock::now();
  plan_ns_.fetch_add(ns_between(t_start, t_planned));
  steps_.fetch_add(1);
  try {
    engine::decode(ctx_, batch_);
    forward_ns_.fetch_add(ns_between(t_planned, std::chrono::steady_clock::now()));
  } catch (const std::exception& e) {
    // Only the jobs in this batch are affected; the worker keeps serving.
    for (const auto& work : plan)
      if (slots_[work.slot].j)
        fail(slots_[work.slot], std::string(common::codes::INTERNAL), e.what());
    return;
  }

  for (const auto& work : plan) {
    slot& s = slots_[work.slot];
    s.n_past += work.n_tokens;
    if (!work.generating) s.n_prompt_done += work.n_tokens;
  }
  choosing_.clear();
  for (auto [slot_index, batch_index] : logits_slots_) {
    slot& s = slots_[slot_index];
    if (!s.j) continue;  // its job failed as a whole
    if (!s.generating && s.j->n_choices > 1) start_other_choices(s, slot_index, batch_index);
    if (s.j) choosing_.emplace_back(slot_index, batch_index);
  }
  choose_tokens();
}

void scheduler::start_other_choices(slot& lead, int lead_index, int batch_index) {
  other_choices_.clear();
  for (int index : admission_order_) {
    const slot& s = slots_[index];
    if (s.j == lead.j && s.awaiting_prompt) other_choices_.push_back(index);
  }
  for (int index : other_choices_) {
    slot& s = slots_[index];
    if (!s.j) return;  // the job failed as a whole
    try {
      engine::sequence_copy(ctx_, lead_index, index);
    } catch (const std::exception& e) {
      fail(s, std::string(common::codes::INTERNAL), e.what());
      return;
    }
    s.awaiting_prompt = false;
    s.n_past = lead.n_past;
    choosing_.emplace_back(index, batch_index);
  }
}

void scheduler::choose_tokens() {
  // Constraints first: a job that fails here releases all its slots, whose histories and
  // masks the requests would point into.
  for (auto [slot_index, batch_index] : choosing_) {
    slot& s = slots_[slot_index];
    if (s.j && s.constraint && s.constraint->fill_allowed(s.allowed) == 0)
      fail(s, std::string(common::codes::INTERNAL),
           "no token of this model's vocabulary continues the constrained output");
  }
  std::erase_if(choosing_, [&](const std::pair<int, int>& c) { return !slots_[c.first].j; });
  requests_.clear();
  for (auto [slot_index, batch_index] : choosing_) {
    slot& s = slots_[slot_index];
    requests_.push_back({.batch_index = batch_index,
                         .s = &*s.sampler,
                         .history = s.history,
                         .n_prompt = s.j->prompt_tokens.size(),
                         .allowed = s.constraint ? std::span<const uint64_t>(s.allowed)
                                                 : std::span<const uint64_t>()});
  }
  chosen_.resize(requests_.size());
  const auto t_start = std::chrono::steady_clock::now();
  try {
    engine::sample(ctx_, requests_, chosen_);
  } catch (const std::exception& e) {
    for (auto [slot_index, batch_index] : choosing_)
      if (slots_[slot_index].j)
        fail(slots_[slot_index], std::string(common::codes::INTERNAL), e.what());
    return;
  }
  const auto t_sampled = std::chrono::steady_clock::now();
  sample_ns_.fetch_add(ns_between(t_start, t_sampled));
  for (size_t i = 0; i < choosing_.size(); ++i) {
    auto [slot_index, batch_index] = choosing_[i];
    slot& s = slots_[slot_index];
    if (s.j) on_token(s, slot_index, batch_index, chosen_[i]);
  }
  emit_ns_.fetch_add(ns_between(t_sampled, std::chrono::steady_clock::now()));
}

void scheduler::on_token(slot& s, int slot_index, int batch_index, engine::token_id token) {
  job::progress& run = s.j->run;
  if (run.t_first_token == std::chrono::steady_clock::time_point{}) {
    run.t_first_token = std::chrono::steady_clock::now();
  }
  // Text held back (a partial character, a possible stop string) when the choice ends.
  auto held_text = [&] {
    std::string text = s.stops->push(s.detok->flush());
    if (!s.stops->matched()) text += s.stops->flush();
    return text;
  };
  if (engine::token_is_end_of_generation(model_, token)) {
    emit(s, held_text());
    finish(s, slot_index, s.stops->matched() ? stop_reason::stop_sequence : stop_reason::eos);
    return;
  }
  ++s.n_generated;
  tokens_generated_.fetch_add(1);
  s.history.push_back(token);
  if (s.j->resume.report_marks) s.unreported.push_back(token);
  std::optional<api::token_logprobs_fields> logprobs;
  if (s.j->n_logprobs) logprobs = logprobs_of(batch_index, token, *s.j->n_logprobs);
  std::string text = s.stops->push(s.detok->push(token));
  std::optional<stop_reason> end;
  if (s.stops->matched()) {
    end = stop_reason::stop_sequence;
  } else if (s.n_generated >= s.j->max_tokens) {
    text += held_text();
    end = s.stops->matched() ? stop_reason::stop_sequence : stop_reason::max_tokens;
  }
  if (s.constraint) {
    const bool accepted = s.constraint->accept(token);
    assert(accepted && "scheduler: the sampler chose a token outside the constraint's mask");
    (void)accepted;
    // The document is over: end as at an end-of-generation token.
    if (!end && s.constraint->finished()) {
      text += held_text();
      end = s.stops->matched() ? stop_reason::stop_sequence : stop_reason::eos;
    }
  }
  emit(s, std::move(text), std::move(logprobs));
  if (end) {
    finish(s, slot_index, *end);
    return;
  }
  s.next_token = token;
  s.generating = true;
}

api::token_logprobs_fields scheduler::logprobs_of(int batch_index, engine::token_id token,
                                                  int n_top) {
  engine::logprobs(ctx_, batch_index, token, n_top, logprobs_);
  api::token_logprobs_fields out;
  out.sampled = {engine::token_to_piece(model_, token), logprobs_.logprob};
  for (int i = 0; i < logprobs_.n_top; ++i) {
    const engine::token_logprob& alternative = logprobs_.top[static_cast<size_t>(i)];
    out.top.push_back({engine::token_to_piece(model_, alternative.token), alternative.logprob});
  }
  return out;
}

void scheduler::emit(slot& s, std::string text,
                     std::optional<api::token_logprobs_fields> logprobs) {
  // With log-probabilities every token is an event, even one whose text is held back.
  if (text.empty() && !logprobs) return;
  std::optional<api::resume_mark> mark;
  if (s.j->resume.report_marks) {
    mark = api::resume_mark{.tokens = s.unreported, .rng_state = s.sampler->state().rng};
    s.unreported.clear();
  }
  s.j->push(token_event{.text = std::move(text),
                        .index = std::max(0, s.n_generated - 1),
                        .choice = s.choice,
                        .logprobs = std::move(logprobs),
                        .mark = std::move(mark)});
}

void scheduler::finish(slot& s, int slot_index, stop_reason reason) {
  job::progress& run = s.j->run;
  run.choices[static_cast<size_t>(s.choice)] = {
      .index = s.choice, .tokens_out = s.n_generated, .reason = reason};
  --run.choices_open;
  // Free the slot first: a client that sees the end may submit again at once.
  std::shared_ptr<job> j = release(s, slot_index);
  if (run.choices_open > 0) return;

  auto now = std::chrono::steady_clock::now();
  bool sampled = run.t_first_token != std::chrono::steady_clock::time_point{};
  end_event end;
  end.tokens_in = static_cast<int>(j->prompt_tokens.size());
  end.tokens_cached = run.tokens_cached;
  for (const auto& c : run.choices) end.tokens_out += c.tokens_out;
  end.prompt_ms = ms_between(run.t_admitted, sampled ? run.t_first_token : now);
  end.decode_ms = sampled ? ms_between(run.t_first_token, now) : 0.0;
  // Each choice's first token comes out of the prefill; the rest are the decode phase.
  const int64_t decoded = end.tokens_out - j->n_choices;
  if (decoded > 0 && end.decode_ms > 0) {
    end.tokens_per_sec = static_cast<double>(decoded) / (end.decode_ms / 1000.0);
    last_tokens_per_sec_.store(end.tokens_per_sec);
  }
  end.reason = run.choices.front().reason;
  end.choices = run.choices;
  retire(j);
  j->push(std::move(end));
}

void scheduler::fail(slot& s, const std::string& code, const std::string& message) {
  std::shared_ptr<job> j = s.j;
  for (size_t index = 0; index < slots_.size(); ++index)
    if (slots_[index].j == j) release(slots_[index], static_cast<int>(index));
  retire(j);
  j->push(error_event{.code = code, .message = message});
}

std::shared_ptr<job> scheduler::release(slot& s, int slot_index) {
  engine::sequence_clear(ctx_, slot_index);
  std::shared_ptr<job> done = std::move(s.j);
  s.j.reset();
  s.sampler.reset();
  s.detok.reset();
  s.stops.reset();
  s.constraint.reset();
  s.history.clear();
  s.unreported.clear();
  s.replay_error.clear();
  s.generating = false;
  s.awaiting_prompt = false;
  admission_order_.erase(std::find(admission_order_.begin(), admission_order_.end(), slot_index));
  return done;
}

void scheduler::retire(const std::shared_ptr<job>& j) {
  jobs_finished_.fetch_add(1);
  std::lock_guard lock(mutex_);
  live_.erase(std::find(live_.begin(), live_.end(), j));
  slots_reserved_ -= j->n_choices;
  last_job_end_ = std::chrono::steady_clock::now();
}

}  // namespace rbee::worker
