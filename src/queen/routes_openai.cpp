// The OpenAI-compatible API: chat and text completions (whole or streamed) and the model list.
// Errors answer in OpenAI's shape, so these routes check the API keys themselves.

#include <set>

#include <spdlog/spdlog.h>

#include "common/http_connections.h"
#include "common/json.h"
#include "common/secrets.h"
#include "common/thread_priority.h"
#include "queen/routes.h"

namespace rbee::queen {

namespace {

using common::http_server;
using nlohmann::json;
using namespace std::chrono_literals;

void send_openai_error(http_response& res, int status, std::string_view code,
                       std::string_view message, const json& details,
                       std::optional<int> retry_after_s) {
  json param = details.is_object() && details.contains("field") ? details["field"] : json();
  if (retry_after_s) res.set_header("Retry-After", std::to_string(*retry_after_s));
  http_server::send_json(res, status, openai::error_body(status, code, message, param));
}

void send_openai_error(http_response& res, const common::http_error& e) {
  send_openai_error(res, e.status, e.code, e.message, e.details, e.retry_after_s);
}

// A task's error event as an OpenAI error.
json openai_error_of(const json& event) {
  std::string code = event.value("code", std::string(common::codes::INTERNAL));
  return openai::error_body(common::status_for_code(code), code,
                            event.value("message", "task failed"));
}

}  // namespace

void openai_routes::add_to(route_table& routes) {
  routes.post("/v1/chat/completions", [this](const http_request& req, http_response& res) {
    completions(openai::endpoint::chat, req, res);
  });
  routes.post("/v1/completions", [this](const http_request& req, http_response& res) {
    completions(openai::endpoint::completion, req, res);
  });
  routes.get("/v1/models", handler(this, &openai_routes::list_models));
}

bool openai_routes::authorized(const http_request& req, http_response& res) const {
  if (s_.api_keys.empty()) return true;
  std::string token = bearer_of(req);
  for (const auto& k : s_.api_keys) {
    if (!token.empty() && common::constant_time_equals(k, token)) return true;
  }
  std::string_view code =
      token.empty() ? common::codes::MISSING_API_KEY : common::codes::INVALID_API_KEY;
  http_server::send_json(
      res, 401,
      openai::error_body(401, code,
                         token.empty() ? "Missing API key: send 'Authorization: Bearer <key>'"
                                       : "Invalid API key"));
  return false;
}

void openai_routes::completions(openai::endpoint kind, const http_request& req,
                                http_response& res) {
  common::batch_work_scope batch;  // a burst of tasks must not delay /health
  if (!authorized(req, res)) return;
  openai::request r;
  std::shared_ptr<admission_holder> holder;
  try {
    r = openai::parse_request(kind, common::parse_body(req.body));
    holder = std::make_shared<admission_holder>(s_.sched, s_.tasks.admit(r.task));
  } catch (const common::http_error& e) {
    send_openai_error(res, e);
    return;
  } catch (const error& e) {
    send_openai_error(res, to_http_error(e));
    return;
  }
  std::string id =
      (kind == openai::endpoint::chat ? "chatcmpl-" : "cmpl-") + common::random_token(12);
  int64_t created = s_.clock.unix_now();
  if (r.stream) {
    stream_chunks(kind, r, std::move(holder), id, created, res);
  } else {
    complete_at_once(kind, r, std::move(holder), id, created, res);
  }
}

void openai_routes::complete_at_once(openai::endpoint kind, const openai::request& r,
                                     std::shared_ptr<admission_holder> holder,
                                     const std::string& id, int64_t created, http_response& res) {
  holder->consumed = true;
  openai::collector c;
  // The handler runs on the client's connection: a client that left cancels the task.
  s_.tasks.run(
      r.task, std::move(holder->a),
      [&c](const json& e) {
        c.on_event(e);
        return true;  // a client that left is seen through the probe below
      },
      {}, &common::guarded_server::peer_connected);
  if (c.error.is_null() && !c.ended) {
    c.error = {{"code", common::codes::INTERNAL}, {"message", "the task ended without a result"}};
  }
  if (!c.error.is_null()) {
    std::string code = c.error.value("code", std::string(common::codes::INTERNAL));
    send_openai_error(res, common::status_for_code(code), code,
                      c.error.value("message", "task failed"), nullptr, std::nullopt);
    return;
  }
  http_server::send_json(res, 200, openai::response(kind, id, r.task.model, created, c));
}

void openai_routes::stream_chunks(openai::endpoint kind, const openai::request& r,
                                  std::shared_ptr<admission_holder> holder, const std::string& id,
                                  int64_t created, http_response& res) {
  serve_sse(res, [this, kind, r, holder, id, created](common::sse_sink& sink) {
    holder->consumed = true;
    bool first = true;
    auto on_event = [&](const json& e) {
      std::string type = e.value("type", "");
      if (type == "token") {
        bool ok = sink.send(
            openai::chunk(kind, id, r.task.model, created, e.value("t", ""), nullptr, first));
        first = false;
        return ok;
      }
      if (type == "end") {
        auto last = openai::chunk(kind, id, r.task.model, created, "",
                                  openai::finish_reason(e.value("stop_reason", "eos")), first);
        if (r.include_usage) {
          last["usage"] = openai::usage(e.value("tokens_in", 0), e.value("tokens_out", 0));
        }
        return sink.send(last);
      }
      if (type == "error") return sink.send(openai_error_of(e));
      return sink.connected();  // narration is not part of the OpenAI stream
    };
    s_.tasks.run(r.task, std::move(holder->a), on_event, {}, [&sink] { return sink.connected(); });
  });
}

void openai_routes::list_models(const http_request& req, http_response& res) {
  if (!authorized(req, res)) return;
  std::set<std::string> ids;
  for (const auto& w : s_.sched.workers()) {
    if (!w.info.model_ref.empty()) ids.insert(w.info.model_ref);
  }
  for (const auto& n : s_.nodes.list()) {
    auto ep = s_.hives.known_endpoint(n.node_name);
    if (!ep) continue;
    try {
      for (const auto& m : hive_client(*ep, 5s).list_models()) {
        if (!m.reference.empty()) ids.insert(m.reference);
      }
    } catch (const common::connection_error& e) {
      spdlog::warn("models of {}: {}", n.node_name, e.what());
    } catch (const error& e) {
      spdlog::debug("models of {}: {}", n.node_name, e.what());  // listed without them
    }
  }
  json data = json::array();
  for (const auto& id : ids) {
    data.push_back({{"id", id}, {"object", "model"}, {"created", 0}, {"owned_by", "rbee"}});
  }
  http_server::send_json(res, 200, {{"object", "list"}, {"data", data}});
}

}  // namespace rbee::queen
