#include "queen/relay.h"

#include <algorithm>

#include "api/requests.h"
#include "api/stream_events.h"
#include "common/errors.h"
#include "common/http_client.h"
#include "common/sse.h"

namespace rbee::queen {

using nlohmann::json;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

task_relay::task_relay(common::metrics_registry& metrics) : metrics_(metrics) {
  metrics_.histogram_define("rbee_queen_time_to_first_token_seconds",
                            "Time from task accepted to first token, by model",
                            {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120});
  metrics_.histogram_define("rbee_queen_inter_token_latency_seconds",
                            "Time between two tokens of one answer, by model",
                            {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5});
  metrics_.histogram_define("rbee_queen_failover_seconds",
                            "Time from losing a worker mid-answer to the next token, by model",
                            {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120});
  metrics_.histogram_define("rbee_queen_tokens_per_second",
                            "Decode speed reported by workers, by model",
                            {1, 5, 10, 25, 50, 100, 250, 500, 1000, 5000});
}

void task_relay::observe_token(answer_timing& timing) {
  auto now = steady::now();
  std::string_view name = timing.last_token ? "rbee_queen_inter_token_latency_seconds"
                                            : "rbee_queen_time_to_first_token_seconds";
  auto since = timing.last_token.value_or(timing.accepted_at);
  metrics_.histogram_observe(name, "", std::chrono::duration<double>(now - since).count(),
                             {{"model", timing.model}});
  timing.last_token = now;
}

void task_relay::count_answer(const worker_info& w, std::string_view outcome) {
  metrics_.counter_add("rbee_queen_model_requests_total", "Answers relayed, by model and outcome",
                       1, {{"model", w.model_ref}, {"outcome", std::string(outcome)}});
}

void task_relay::observe_end(const worker_info& w, const json& end) {
  const common::metric_labels model{{"model", w.model_ref}};
  count_answer(w, "completed");
  metrics_.counter_add("rbee_queen_prompt_tokens_total", "Prompt tokens of relayed answers",
                       std::max(0.0, end.value("tokens_in", 0.0)), model);
  metrics_.counter_add("rbee_queen_generated_tokens_total", "Tokens generated in relayed answers",
                       std::max(0.0, end.value("tokens_out", 0.0)), model);
  if (end.contains("tokens_per_sec") && end["tokens_per_sec"].is_number()) {
    double speed = end["tokens_per_sec"].get<double>();
    metrics_.histogram_observe("rbee_queen_tokens_per_second", "", speed, model);
    metrics_.gauge_set("rbee_queen_worker_last_tokens_per_second",
                       "Decode speed of the worker's most recent answer", speed,
                       {{"worker", w.worker_id}, {"model", w.model_ref}});
  }
}

bool task_relay::record_mark(resume_progress& progress, const std::string& id) {
  auto mark = api::parse_resume_mark(id);
  // A worker's word: a progress no resume point could carry ends the answer's failover.
  if (!mark || mark->tokens.empty() ||
      progress.generated.size() + mark->tokens.size() > api::max_resume_tokens) {
    return false;
  }
  progress.generated.insert(progress.generated.end(), mark->tokens.begin(), mark->tokens.end());
  progress.rng_state = mark->rng_state;
  return true;
}

relay_result task_relay::run(const task_request& request, const worker_info& w,
                             steady::time_point accepted_at, const task_sink& send,
                             const token_text_sink& tokens, const std::function<bool()>& cancelled,
                             resume_progress& progress, std::chrono::milliseconds stall_timeout) {
  relay_result result;
  bool any_token = false;
  // Tokens reached the client (in this attempt or an earlier one): a lost worker is then a
  // failover or an error, never a silent retry from the start.
  auto tokens_sent = [&] { return any_token || !progress.generated.empty(); };
  answer_timing timing{.model = w.model_ref, .accepted_at = accepted_at, .last_token = {}};
  auto last_token = steady::now();
  auto lose = [&](std::string reason, error failure) {
    result.worker_lost = true;
    result.lost_reason = std::move(reason);
    result.failure = std::move(failure);
  };
  auto on_token = [&](const common::sse_event& ev) {
    if (progress.resumable && !record_mark(progress, ev.id)) progress.resumable = false;
    if (progress.lost_at) {
      metrics_.histogram_observe(
          "rbee_queen_failover_seconds", "",
          std::chrono::duration<double>(steady::now() - *progress.lost_at).count(),
          {{"model", w.model_ref}});
      progress.lost_at.reset();
    }
    observe_token(timing);
    any_token = true;
    last_token = steady::now();
  };
  auto on_event = [&](const common::sse_event& ev) {
    if (ev.is_done()) return false;
    if (tokens && api::parse_event_type(ev.event) == api::event_type::token) {
      on_token(ev);
      return tokens(ev.data);
    }
    auto e = json::parse(ev.data, nullptr, false);
    if (!e.is_object()) return !cancelled();
    std::string type = e.value("type", "");
    if (type == "started") {
      if (progress.resumable && progress.prompt_tokens.empty()) {
        api::resume_point prompt;
        try {
          prompt = api::resume_point::from_json(
              {{"prompt_tokens", e.value("prompt_tokens", json::array())}, {"rng_state", "0"}});
          progress.prompt_tokens = std::move(prompt.prompt_tokens);
        } catch (const common::http_error&) {
          progress.resumable = false;  // a worker without resume marks: no failover
        }
      }
      e.erase("prompt_tokens");
      if (progress.started_sent) return !cancelled();
      progress.started_sent = true;
    } else if (type == "token") {
      on_token(ev);
    } else if (type == "end" && e.value("stop_reason", "") == "cancelled" && !cancelled()) {
      // Not our cancel: the worker stopped (drain, SIGTERM) mid-answer.
      lose("shutting_down",
           unavailable(common::codes::SHUTTING_DOWN,
                       "Worker " + w.worker_id + " stopped the answer early after " +
                           std::to_string(e.value("tokens_out", 0)) + " tokens",
                       5, {{"worker_id", w.worker_id}, {"node", w.node}}));
      return false;
    } else if (type == "error" && e.value("code", "") == common::codes::SHUTTING_DOWN &&
               tokens_sent()) {
      lose("shutting_down", error(common::codes::SHUTTING_DOWN, e.value("message", ""),
                                  {{"worker_id", w.worker_id}, {"node", w.node}}));
      return false;
    } else if (type == "end") {
      result.ended = true;
      observe_end(w, e);
    } else if (type == "error") {
      result.ended = true;
      count_answer(w, "error");
    }
    send(e);
    return !cancelled();
  };

  api::inference_request body = request.for_worker();
  body.resumable = progress.resumable;
  if (progress.can_resume()) {
    body.resume = api::resume_point{.prompt_tokens = progress.prompt_tokens,
                                    .generated = progress.generated,
                                    .rng_state = progress.rng_state};
  }
  bool stalled = false;
  common::client_options o;
  o.connect_timeout = 5s;
  // A live worker's stream is never silent longer than its keep-alive interval (5 s), even
  // while it processes a long prompt: longer silence is a stopped process or a lost network.
  o.read_timeout = stall_timeout;
  o.bearer_token = w.token;
  o.still_wanted = [&] {
    stalled = tokens_sent() && steady::now() - last_token > stall_timeout;
    return !cancelled() && !stalled;
  };
  common::http_response error_response;
  int status = 0;
  try {
    status = common::http_client(w.url, o).post_sse("/v1/inference", body.to_json(), on_event,
                                                    &error_response);
  } catch (const common::connection_error& e) {
    if (cancelled()) return result;
    if (!tokens_sent()) {
      result.retry_reason = std::string("worker unreachable: ") + e.what();
    } else {
      lose("connection_lost", internal("Worker " + w.worker_id + " stopped mid-stream: " + e.what(),
                                       {{"worker_id", w.worker_id}, {"node", w.node}}));
    }
    return result;
  }
  if (stalled && !cancelled() && !result.ended) {
    lose("stalled", internal("Worker " + w.worker_id + " sent no token for " +
                                 std::to_string(stall_timeout.count() / 1000) + " s",
                             {{"worker_id", w.worker_id}, {"node", w.node}}));
    return result;
  }
  if (status != 0 && status != 200) {
    auto err = error_from_response(error_response);
    if (err.code == common::codes::ALL_SLOTS_BUSY || status == 503) {
      result.retry_reason = err.message;
    } else {
      result.failure = err;
    }
  }
  return result;
}

}  // namespace rbee::queen
