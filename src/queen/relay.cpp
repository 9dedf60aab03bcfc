#include "queen/relay.h"

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
                            "Time from task accepted to first token",
                            {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120});
  metrics_.histogram_define("rbee_queen_tokens_per_second", "Decode speed reported by workers",
                            {1, 5, 10, 25, 50, 100, 250, 500, 1000, 5000});
}

void task_relay::observe_first_token(steady::time_point accepted_at) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - accepted_at);
  metrics_.histogram_observe("rbee_queen_time_to_first_token_seconds", "",
                             static_cast<double>(ms.count()) / 1000.0);
}

relay_result task_relay::run(const task_request& request, const worker_info& w,
                             steady::time_point accepted_at, const task_sink& send,
                             const token_text_sink& tokens,
                             const std::function<bool()>& cancelled) {
  relay_result result;
  bool any_token = false;
  auto on_event = [&](const common::sse_event& ev) {
    if (ev.is_done()) return false;
    if (tokens && api::parse_event_type(ev.event) == api::event_type::token) {
      if (!any_token) observe_first_token(accepted_at);
      any_token = true;
      return tokens(ev.data);
    }
    auto e = json::parse(ev.data, nullptr, false);
    if (!e.is_object()) return !cancelled();
    std::string type = e.value("type", "");
    if (type == "token" && !any_token) {
      any_token = true;
      observe_first_token(accepted_at);
    } else if (type == "end" && e.value("stop_reason", "") == "cancelled" && !cancelled()) {
      // Not our cancel: the worker stopped (drain, SIGTERM) mid-answer.
      result.ended = true;
      e = error_event(unavailable(common::codes::SHUTTING_DOWN,
                                  "Worker " + w.worker_id + " stopped the answer early after " +
                                      std::to_string(e.value("tokens_out", 0)) + " tokens",
                                  5, {{"worker_id", w.worker_id}, {"node", w.node}}));
    } else if (type == "end") {
      result.ended = true;
      if (e.contains("tokens_per_sec") && e["tokens_per_sec"].is_number()) {
        metrics_.histogram_observe("rbee_queen_tokens_per_second", "",
                                   e["tokens_per_sec"].get<double>());
      }
    } else if (type == "error") {
      result.ended = true;
    }
    send(e);
    return !cancelled();
  };

  common::client_options o;
  o.connect_timeout = 5s;
  o.read_timeout = 300s;  // longest silence: prompt processing on a slow CPU
  o.bearer_token = w.token;
  o.still_wanted = [&] { return !cancelled(); };
  common::http_response error_response;
  int status = 0;
  try {
    status = common::http_client(w.url, o).post_sse("/v1/inference", request.for_worker().to_json(),
                                                    on_event, &error_response);
  } catch (const common::connection_error& e) {
    if (cancelled()) return result;
    if (!any_token) {
      result.retry_reason = std::string("worker unreachable: ") + e.what();
    } else {
      result.worker_lost = true;
      result.failure = internal("Worker " + w.worker_id + " stopped mid-stream: " + e.what(),
                                {{"worker_id", w.worker_id}, {"node", w.node}});
    }
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
