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
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return submit_result::stopping;
    for (const auto& live : live_) {
      if (live->id() == j->id()) return submit_result::duplicate_job_id;
    }
    if (static_cast<int>(live_.size()) >= options_.n_slots) return submit_result::all_slots_busy;
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
    s.slots_busy = static_cast<int>(live_.size() - pending_.size());
    if (live_.empty()) {
      s.idle_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - last_job_end_)
                      .count();
    }
  }
  s.tokens_generated = tokens_generated_.load();
  s.jobs_finished = jobs_finished_.load();
  s.last_tokens_per_sec = last_tokens_per_sec_.load();
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
      auto free_slot =
          std::find_if(slots_.begin(), slots_.end(), [](const slot& s) { return !s.j; });
      assert(free_slot != slots_.end() && "scheduler: more live jobs than slots");
      int index = static_cast<int>(free_slot - slots_.begin());
      slot& s = *free_slot;
      s.j = std::move(pending_.front());
      pending_.erase(pending_.begin());
      s.n_prompt_done = 0;
      s.n_past = 0;
      s.n_generated = 0;
      s.generating = false;
      s.history.assign(s.j->prompt_tokens.begin(), s.j->prompt_tokens.end());
      s.sampler.emplace(s.j->sampling, n_vocab_);
      s.detok.emplace(model_);
      s.stops.emplace(s.j->stop);
      if (s.j->grammar) {
        if (!vocabulary_) vocabulary_.emplace(constraint_vocabulary(model_));
        s.constraint.emplace(s.j->grammar, *vocabulary_);
        s.allowed.assign(vocabulary_->mask_words(), 0);
      }
      s.t_admitted = std::chrono::steady_clock::now();
      s.t_first_token = {};
      admission_order_.push_back(index);
    }
    if (!admission_order_.empty()) return true;
    if (stopping_) return false;
    cv_.wait(lock);
  }
}

void scheduler::step() {
  if (options_.debug_step_delay.count() > 0) std::this_thread::sleep_for(options_.debug_step_delay);
  // Cancellation (DELETE, client disconnect, drain) takes effect before the next decode.
  cancelled_.clear();
  for (int index : admission_order_) {
    if (slots_[index].j->cancelled()) cancelled_.push_back(index);
  }
  for (int index : cancelled_) {
    slot& s = slots_[index];
    if (s.j->aborted_for_shutdown()) {
      fail(s, index, std::string(common::codes::SHUTTING_DOWN),
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
    demand_.push_back(
        {.slot = index,
         .generating = s.generating,
         .prompt_remaining = static_cast<int>(s.j->prompt_tokens.size()) - s.n_prompt_done});
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
      batch_.push_back({.token = s.j->prompt_tokens[s.n_prompt_done + k],
                        .pos = s.n_past + k,
                        .seq = work.slot,
                        .want_logits = last});
    }
    if (work.prompt_done)
      logits_slots_.emplace_back(work.slot, static_cast<int>(batch_.size()) - 1);
  }

  try {
    engine::decode(ctx_, batch_);
  } catch (const std::exception& e) {
    // Only the jobs in this batch are affected; the worker keeps serving.
    for (const auto& work : plan)
      fail(slots_[work.slot], work.slot, std::string(common::codes::INTERNAL), e.what());
    return;
  }

  for (const auto& work : plan) {
    slot& s = slots_[work.slot];
    s.n_past += work.n_tokens;
    if (!work.generating) s.n_prompt_done += work.n_tokens;
  }
  for (auto [slot_index, batch_index] : logits_slots_) {
    on_logits(slots_[slot_index], slot_index, batch_index);
  }
}

void scheduler::on_logits(slot& s, int slot_index, int batch_index) {
  std::span<const uint64_t> allowed;
  if (s.constraint) {
    if (s.constraint->fill_allowed(s.allowed) == 0) {
      fail(s, slot_index, std::string(common::codes::INTERNAL),
           "no token of this model's vocabulary continues the constrained output");
      return;
    }
    allowed = s.allowed;
  }
  engine::token_id token = engine::sample(ctx_, batch_index, *s.sampler, s.history, allowed);
  if (s.t_first_token == std::chrono::steady_clock::time_point{}) {
    s.t_first_token = std::chrono::steady_clock::now();
  }
  auto flush = [&] {
    std::string text = s.stops->push(s.detok->flush());
    if (!s.stops->matched()) text += s.stops->flush();
    emit_text(s, text);
    return s.stops->matched();
  };
  if (engine::token_is_end_of_generation(model_, token)) {
    finish(s, slot_index, flush() ? stop_reason::stop_sequence : stop_reason::eos);
    return;
  }
  ++s.n_generated;
  tokens_generated_.fetch_add(1);
  s.history.push_back(token);
  emit_text(s, s.stops->push(s.detok->push(token)));
  if (s.stops->matched()) {
    finish(s, slot_index, stop_reason::stop_sequence);
    return;
  }
  if (s.constraint) {
    const bool accepted = s.constraint->accept(token);
    assert(accepted && "scheduler: the sampler chose a token outside the constraint's mask");
    (void)accepted;
    // The document is over: end as at an end-of-generation token.
    if (s.constraint->finished()) {
      finish(s, slot_index, flush() ? stop_reason::stop_sequence : stop_reason::eos);
      return;
    }
  }
  if (s.n_generated >= s.j->max_tokens) {
    finish(s, slot_index, flush() ? stop_reason::stop_sequence : stop_reason::max_tokens);
    return;
  }
  s.next_token = token;
  s.generating = true;
}

void scheduler::emit_text(slot& s, const std::string& text) {
  if (text.empty()) return;
  s.j->push(token_event{.text = text, .index = std::max(0, s.n_generated - 1)});
}

void scheduler::finish(slot& s, int slot_index, stop_reason reason) {
  auto now = std::chrono::steady_clock::now();
  bool sampled = s.t_first_token != std::chrono::steady_clock::time_point{};
  end_event end;
  end.tokens_in = static_cast<int>(s.j->prompt_tokens.size());
  end.tokens_out = s.n_generated;
  end.prompt_ms = ms_between(s.t_admitted, sampled ? s.t_first_token : now);
  end.decode_ms = sampled ? ms_between(s.t_first_token, now) : 0.0;
  // The first token comes out of the prefill; the rest are the decode phase.
  if (s.n_generated > 1 && end.decode_ms > 0) {
    end.tokens_per_sec = (s.n_generated - 1) / (end.decode_ms / 1000.0);
    last_tokens_per_sec_.store(end.tokens_per_sec);
  }
  end.reason = reason;
  // Free the slot first: a client that sees the end may submit again at once.
  std::shared_ptr<job> j = release(s, slot_index);
  jobs_finished_.fetch_add(1);
  j->push(end);
}

void scheduler::fail(slot& s, int slot_index, const std::string& code, const std::string& message) {
  std::shared_ptr<job> j = release(s, slot_index);
  jobs_finished_.fetch_add(1);
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
  s.generating = false;
  admission_order_.erase(std::find(admission_order_.begin(), admission_order_.end(), slot_index));
  std::lock_guard lock(mutex_);
  live_.erase(std::find(live_.begin(), live_.end(), done));
  last_job_end_ = std::chrono::steady_clock::now();
  return done;
}

}  // namespace rbee::worker
