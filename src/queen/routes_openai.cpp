// The OpenAI-compatible API: chat and text completions (whole or streamed) and the model list.
// Errors answer in OpenAI's shape, so these routes check the API keys themselves.

#include <map>

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
  // Model ids hold '/' and ':' (hf:ORG/REPO:FILE); clients send them as they are.
  routes.get(R"(/v1/models/(.+))", handler(this, &openai_routes::get_model));
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
    r.task.client = client_of(req);
    holder = std::make_shared<admission_holder>(s_.sched, s_.tasks.admit(r.task));
  } catch (const common::http_error& e) {
    send_openai_error(res, e);
    return;
  } catch (const error& e) {
    send_openai_error(res, to_http_error(e));
    return;
  }
  openai::response_meta meta{
      .kind = kind,
      .id = (kind == openai::endpoint::chat ? "chatcmpl-" : "cmpl-") + common::random_token(12),
      .model = r.task.model,
      .created = s_.clock.unix_now()};
  if (r.stream) {
    stream_chunks(meta, r, std::move(holder), res);
  } else {
    complete_at_once(meta, r, std::move(holder), res);
  }
}

void openai_routes::complete_at_once(const openai::response_meta& meta, const openai::request& r,
                                     std::shared_ptr<admission_holder> holder, http_response& res) {
  holder->consumed = true;
  openai::collector c;
  c.n = r.n;
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
  http_server::send_json(res, 200, openai::response(meta, r, c));
}

namespace {

// Turns one choice's token events into chunks: text as it comes, or, when the reply may hold
// tool calls, text up to where a call may begin and the calls at the end.
class choice_streamer {
 public:
  choice_streamer(const openai::response_meta& meta, const openai::request& r, int index)
      : meta_(meta), r_(r), index_(index), reply_(r.tools) {}

  // Chunks for a token event.
  std::vector<json> on_token(const json& e) {
    std::string text = e.value("t", "");
    auto lp = openai::logprob_of(e);
    if (r_.reply == openai::reply_kind::forced_call) {
      held_ += text;
      return {};
    }
    if (r_.reply == openai::reply_kind::tool_calls) text = reply_.push(text);
    if (text.empty() && !lp) return {};
    json c = openai::chunk(meta_, index_, delta(text), nullptr);
    if (lp) {
      std::vector<openai::token_logprob> one{std::move(*lp)};
      c["choices"][0]["logprobs"] = meta_.kind == openai::endpoint::chat
                                        ? openai::chat_logprobs(one)
                                        : openai::completion_logprobs(one);
    }
    return {std::move(c)};
  }

  // The last chunks: held text and tool calls, then the finish reason.
  std::vector<json> on_end(const json& e) {
    std::string finish = openai::finish_reason(e.value("stop_reason", "eos"));
    std::vector<json> out;
    if (r_.reply != openai::reply_kind::text) {
      auto tail = r_.reply == openai::reply_kind::forced_call ? openai::read_reply(r_, held_)
                                                              : reply_.finish();
      if (!tail.calls.empty() && r_.reply == openai::reply_kind::tool_calls) {
        finish = "tool_calls";
      }
      json d = delta(tail.content);
      if (!tail.calls.empty()) d["tool_calls"] = openai::tool_calls_json(tail.calls, true);
      if (!d.empty()) out.push_back(openai::chunk(meta_, index_, d, nullptr));
    }
    out.push_back(openai::chunk(meta_, index_, delta(""), finish));
    return out;
  }

 private:
  json delta(const std::string& text) {
    if (meta_.kind == openai::endpoint::completion) return text;
    json d = json::object();
    if (!first_sent_) d["role"] = "assistant";
    if (!text.empty()) d["content"] = text;
    first_sent_ = true;
    return d;
  }

  const openai::response_meta& meta_;
  const openai::request& r_;
  int index_;
  openai::reply_stream reply_;
  std::string held_;  // forced_call: the arguments, sent whole at the end
  bool first_sent_ = false;
};

}  // namespace

void openai_routes::stream_chunks(const openai::response_meta& meta, const openai::request& r,
                                  std::shared_ptr<admission_holder> holder, http_response& res) {
  serve_sse(res, [this, meta, r, holder](common::sse_sink& sink) {
    holder->consumed = true;
    std::map<int, choice_streamer> choices;
    auto streamer = [&](const json& e) -> choice_streamer& {
      int index = openai::choice_index(e, r.n);
      return choices.try_emplace(index, meta, r, index).first->second;
    };
    auto send_all = [&](const std::vector<json>& chunks) {
      for (const auto& c : chunks) {
        if (!sink.send(c)) return false;
      }
      return sink.connected();
    };
    auto on_event = [&](const json& e) {
      std::string type = e.value("type", "");
      if (type == "token") return send_all(streamer(e).on_token(e));
      if (type == "end") {
        for (const auto& ended : openai::ended_choices(e)) {
          if (!send_all(streamer(ended).on_end(ended))) return false;
        }
        if (!r.include_usage) return true;
        return sink.send(openai::usage_chunk(
            meta, e.value("tokens_in", 0), e.value("tokens_out", 0), e.value("tokens_cached", 0)));
      }
      if (type == "error") return sink.send(openai_error_of(e));
      return sink.connected();  // narration is not part of the OpenAI stream
    };
    s_.tasks.run(r.task, std::move(holder->a), on_event, {}, [&sink] { return sink.connected(); });
  });
}

std::map<std::string, int64_t> openai_routes::model_ids() {
  std::map<std::string, int64_t> ids;  // id -> when its file arrived (0 = unknown)
  for (const auto& w : s_.sched.workers()) {
    if (!w.info.model_ref.empty()) ids.try_emplace(w.info.model_ref, 0);
  }
  for (const auto& n : s_.nodes.list()) {
    auto ep = s_.hives.known_endpoint(n.node_name);
    if (!ep) continue;
    try {
      for (const auto& m : hive_client(*ep, 5s).list_models()) {
        if (m.reference.empty()) continue;
        auto& created = ids[m.reference];
        if (created == 0 || m.downloaded_at_unix < created) created = m.downloaded_at_unix;
      }
    } catch (const common::connection_error& e) {
      spdlog::warn("models of {}: {}", n.node_name, e.what());
    } catch (const error& e) {
      spdlog::debug("models of {}: {}", n.node_name, e.what());  // listed without them
    }
  }
  return ids;
}

namespace {

json model_object(const std::string& id, int64_t created) {
  return {{"id", id}, {"object", "model"}, {"created", created}, {"owned_by", "rbee"}};
}

}  // namespace

void openai_routes::list_models(const http_request& req, http_response& res) {
  if (!authorized(req, res)) return;
  json data = json::array();
  for (const auto& [id, created] : model_ids()) data.push_back(model_object(id, created));
  http_server::send_json(res, 200, {{"object", "list"}, {"data", data}});
}

void openai_routes::get_model(const http_request& req, http_response& res) {
  if (!authorized(req, res)) return;
  const std::string id = req.matches[1];
  auto ids = model_ids();
  auto found = ids.find(id);
  if (found == ids.end()) {
    send_openai_error(res, 404, common::codes::MODEL_NOT_FOUND,
                      "The model '" + id.substr(0, 200) + "' is not known to this fleet",
                      {{"field", "model"}}, std::nullopt);
    return;
  }
  http_server::send_json(res, 200, model_object(id, found->second));
}

}  // namespace rbee::queen
