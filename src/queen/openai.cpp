#include "queen/openai.h"

#include "common/errors.h"
#include "common/json.h"

namespace rbee::queen::openai {

using nlohmann::json;

request parse_request(endpoint kind, const json& body) {
  if (!body.is_object()) throw common::bad_request("request body must be a JSON object");
  if (body.contains("n") && !body["n"].is_null() &&
      !(body["n"].is_number_integer() && body["n"].get<int64_t>() == 1)) {
    throw common::invalid_request("n", "only n=1 is supported");
  }
  // Map onto the task body: same names except the OpenAI aliases.
  json task = {{"model", body.value("model", json())}};
  if (!body.contains("model") || !body["model"].is_string()) {
    throw common::invalid_request("model", "model is required (a model reference)");
  }
  for (const char* f : {"temperature", "top_p", "seed", "stop", "top_k", "min_p"}) {
    if (body.contains(f)) task[f] = body[f];
  }
  if (body.contains("max_completion_tokens") && !body["max_completion_tokens"].is_null()) {
    task["max_tokens"] = body["max_completion_tokens"];
  } else if (body.contains("max_tokens")) {
    task["max_tokens"] = body["max_tokens"];
  }
  if (body.contains("frequency_penalty") && body["frequency_penalty"].is_number() &&
      body["frequency_penalty"].get<double>() != 0.0) {
    // Not in our sampler; closest is the repeat penalty.
    task["repeat_penalty"] = 1.0 + std::max(0.0, body["frequency_penalty"].get<double>()) / 2.0;
  }
  if (kind == endpoint::chat) {
    const auto& messages = common::require_array(body, "messages");
    json plain = json::array();
    for (const auto& m : messages) {
      if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) {
        throw common::invalid_request("messages", "each message needs a string role");
      }
      json content = m.value("content", json(""));
      if (content.is_array()) {
        // Content parts: text ones are joined; other kinds (images, audio) are not supported.
        std::string text;
        for (const auto& part : content) {
          const bool typed = part.is_object() && part.contains("type") && part["type"].is_string();
          if (!typed) {
            throw common::invalid_request("messages", "each content part needs a string type");
          }
          if (part["type"] != "text") {
            throw common::invalid_request("messages", "content parts of type '" +
                                                          part["type"].get<std::string>() +
                                                          "' are not supported; only 'text' is");
          }
          if (!part.contains("text") || !part["text"].is_string()) {
            throw common::invalid_request("messages", "a text content part needs a string text");
          }
          text += part["text"].get<std::string>();
        }
        content = text;
      } else if (content.is_null()) {
        content = "";
      }
      if (!content.is_string()) {
        throw common::invalid_request("messages", "message content must be a string");
      }
      // OpenAI's newer "developer" role is the system prompt.
      const json role = m["role"] == "developer" ? json("system") : m["role"];
      plain.push_back({{"role", role}, {"content", content}});
    }
    task["messages"] = plain;
    // rbee extension: a template family for models whose GGUF has none (or an unknown one).
    if (body.contains("chat_template")) task["chat_template"] = body["chat_template"];
  } else {
    if (!body.contains("prompt")) throw common::invalid_request("prompt", "prompt is required");
    const auto& p = body["prompt"];
    if (p.is_array()) {
      if (p.size() != 1 || !p[0].is_string()) {
        throw common::invalid_request("prompt", "prompt must be a string (or one string)");
      }
      task["prompt"] = p[0];
    } else {
      task["prompt"] = p;
    }
  }
  request r;
  r.task = task_request::from_json(task);
  r.stream = common::optional_bool(body, "stream", false);
  if (body.contains("stream_options") && body["stream_options"].is_object()) {
    r.include_usage = common::optional_bool(body["stream_options"], "include_usage", false);
  }
  return r;
}

std::string finish_reason(std::string_view stop_reason) {
  if (stop_reason == "max_tokens" || stop_reason == "length") return "length";
  return "stop";
}

void collector::on_event(const json& event) {
  std::string type = event.value("type", "");
  if (type == "token") {
    text += event.value("t", "");
  } else if (type == "end") {
    ended = true;
    prompt_tokens = event.value("tokens_in", 0);
    completion_tokens = event.value("tokens_out", 0);
    finish = finish_reason(event.value("stop_reason", "eos"));
  } else if (type == "error") {
    error = event;
  }
}

json usage(int prompt_tokens, int completion_tokens) {
  return {{"prompt_tokens", prompt_tokens},
          {"completion_tokens", completion_tokens},
          {"total_tokens", prompt_tokens + completion_tokens}};
}

json response(endpoint kind, const std::string& id, const std::string& model, int64_t created,
              const collector& c) {
  json choice = {{"index", 0}, {"finish_reason", c.finish}, {"logprobs", nullptr}};
  if (kind == endpoint::chat) {
    choice["message"] = {{"role", "assistant"}, {"content", c.text}};
  } else {
    choice["text"] = c.text;
  }
  return {{"id", id},
          {"object", kind == endpoint::chat ? "chat.completion" : "text_completion"},
          {"created", created},
          {"model", model},
          {"choices", json::array({choice})},
          {"usage", usage(c.prompt_tokens, c.completion_tokens)}};
}

json chunk(endpoint kind, const std::string& id, const std::string& model, int64_t created,
           const std::string& content, const json& finish, bool first) {
  json choice = {{"index", 0}, {"finish_reason", finish}, {"logprobs", nullptr}};
  if (kind == endpoint::chat) {
    json delta = json::object();
    if (first) delta["role"] = "assistant";
    if (!content.empty()) delta["content"] = content;
    choice["delta"] = delta;
  } else {
    choice["text"] = content;
  }
  return {{"id", id},
          {"object", kind == endpoint::chat ? "chat.completion.chunk" : "text_completion"},
          {"created", created},
          {"model", model},
          {"choices", json::array({choice})}};
}

std::string error_type(int status) {
  switch (status) {
    case 400:
      return "invalid_request_error";
    case 401:
      return "authentication_error";
    case 403:
      return "permission_error";
    case 404:
      return "not_found_error";
    case 429:
    case 503:
      return "rate_limit_error";
    default:
      return status >= 500 ? "server_error" : "invalid_request_error";
  }
}

json error_body(int status, std::string_view code, std::string_view message, const json& param) {
  return {{"error",
           {{"message", message}, {"type", error_type(status)}, {"code", code}, {"param", param}}}};
}

}  // namespace rbee::queen::openai
