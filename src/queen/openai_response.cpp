// Task events -> OpenAI response objects and stream chunks.

#include <stdexcept>

#include "common/secrets.h"
#include "common/version.h"
#include "queen/openai.h"

namespace rbee::queen::openai {

namespace {

using nlohmann::json;

const char* object_name(endpoint kind, bool streamed) {
  if (kind == endpoint::completion) return "text_completion";
  return streamed ? "chat.completion.chunk" : "chat.completion";
}

json envelope(const response_meta& meta, bool streamed) {
  return {{"id", meta.id},
          {"object", object_name(meta.kind, streamed)},
          {"created", meta.created},
          {"model", meta.model},
          {"system_fingerprint", system_fingerprint()}};
}

}  // namespace

void collector::on_event(const json& event) {
  std::string type = event.value("type", "");
  if (type == "token") {
    auto& choice = choices[choice_index(event, n)];
    choice.text += event.value("t", "");
    if (auto lp = logprob_of(event)) choice.logprobs.push_back(std::move(*lp));
  } else if (type == "end") {
    for (const auto& ended_choice : ended_choices(event)) {
      auto& choice = choices[choice_index(ended_choice, n)];
      choice.finish = finish_reason(ended_choice.value("stop_reason", "eos"));
      choice.completion_tokens = ended_choice.value("tokens_out", 0);
    }
    prompt_tokens = event.value("tokens_in", 0);
    cached_tokens = event.value("tokens_cached", 0);
    ended = true;
  } else if (type == "error") {
    error = event;
  }
}

int choice_index(const json& event, int n) {
  const auto index = event.find("index");
  if (index == event.end()) return 0;
  if (!index->is_number_integer() || index->get<int64_t>() < 0 || index->get<int64_t>() >= n) {
    throw std::runtime_error("the worker sent an event for choice " + index->dump().substr(0, 20) +
                             " of a request for " + std::to_string(n));
  }
  return index->get<int>();
}

json ended_choices(const json& end_event) {
  if (end_event.contains("choices") && end_event["choices"].is_array()) {
    return end_event["choices"];
  }
  return json::array({{{"index", 0},
                       {"tokens_out", end_event.value("tokens_out", 0)},
                       {"stop_reason", end_event.value("stop_reason", "eos")}}});
}

int collector::completion_tokens() const {
  int total = 0;
  for (const auto& [index, choice] : choices) total += choice.completion_tokens;
  return total;
}

json usage(int prompt_tokens, int completion_tokens, int cached_tokens) {
  return {{"prompt_tokens", prompt_tokens},
          {"completion_tokens", completion_tokens},
          {"total_tokens", prompt_tokens + completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", cached_tokens}}}};
}

const std::string& system_fingerprint() {
  static const std::string fingerprint = "rbee-" + common::version_string();  // once, not per chunk
  return fingerprint;
}

json tool_calls_json(const std::vector<api::tool_call>& calls, bool streamed) {
  json out = json::array();
  for (size_t i = 0; i < calls.size(); ++i) {
    json call = {{"id", calls[i].id},
                 {"type", "function"},
                 {"function", {{"name", calls[i].name}, {"arguments", calls[i].arguments}}}};
    if (streamed) call["index"] = i;
    out.push_back(std::move(call));
  }
  return out;
}

parsed_reply read_reply(const request& r, const std::string& text) {
  switch (r.reply) {
    case reply_kind::text:
      return {text, {}};
    case reply_kind::tool_calls:
      return parse_tool_calls(text, r.tools);
    case reply_kind::forced_call:
      return {
          "",
          {{.id = "call_" + common::random_token(12), .name = r.forced_tool, .arguments = text}}};
  }
  return {text, {}};
}

json response(const response_meta& meta, const request& r, const collector& c) {
  json choices = json::array();
  for (int i = 0; i < r.n; ++i) {
    auto it = c.choices.find(i);
    const choice_state empty;
    const choice_state& choice = it == c.choices.end() ? empty : it->second;
    std::string finish = choice.finish;
    json item = {{"index", i}, {"logprobs", nullptr}};
    if (meta.kind == endpoint::chat) {
      auto reply = read_reply(r, choice.text);
      json message = {{"role", "assistant"}, {"content", reply.content}, {"refusal", nullptr}};
      if (!reply.calls.empty()) {
        message["content"] = reply.content.empty() ? json() : json(reply.content);
        message["tool_calls"] = tool_calls_json(reply.calls, false);
        // A forced call is what the client asked for; OpenAI then reports "stop".
        if (r.reply == reply_kind::tool_calls) finish = "tool_calls";
      }
      item["message"] = std::move(message);
      if (r.logprobs) item["logprobs"] = chat_logprobs(choice.logprobs);
    } else {
      item["text"] = choice.text;
      if (r.logprobs) item["logprobs"] = completion_logprobs(choice.logprobs);
    }
    item["finish_reason"] = finish;
    choices.push_back(std::move(item));
  }
  json out = envelope(meta, false);
  out["choices"] = std::move(choices);
  out["usage"] = usage(c.prompt_tokens, c.completion_tokens(), c.cached_tokens);
  return out;
}

json chunk(const response_meta& meta, int index, const json& delta_or_text,
           const json& finish_reason) {
  json choice = {{"index", index}, {"finish_reason", finish_reason}, {"logprobs", nullptr}};
  if (meta.kind == endpoint::chat) {
    choice["delta"] = delta_or_text;
  } else {
    choice["text"] = delta_or_text;
  }
  json out = envelope(meta, true);
  out["choices"] = json::array({std::move(choice)});
  return out;
}

json usage_chunk(const response_meta& meta, int prompt_tokens, int completion_tokens,
                 int cached_tokens) {
  json out = envelope(meta, true);
  out["choices"] = json::array();
  out["usage"] = usage(prompt_tokens, completion_tokens, cached_tokens);
  return out;
}

std::optional<token_logprob> logprob_of(const json& e) {
  if (!e.contains("logprob") || !e["logprob"].is_number()) return std::nullopt;
  token_logprob lp;
  lp.logprob = e["logprob"].get<double>();
  lp.token = e.value("token", e.value("t", ""));
  if (e.contains("bytes") && e["bytes"].is_array()) {
    lp.bytes = e["bytes"].get<std::vector<int>>();
  } else {
    lp.bytes.assign(lp.token.begin(), lp.token.end());
    for (auto& b : lp.bytes) b &= 0xFF;
  }
  if (e.contains("top_logprobs") && e["top_logprobs"].is_array()) lp.top = e["top_logprobs"];
  return lp;
}

json chat_logprobs(const std::vector<token_logprob>& lps) {
  json content = json::array();
  for (const auto& lp : lps) {
    json top = json::array();
    for (const auto& alt : lp.top) {
      top.push_back({{"token", alt.value("token", "")},
                     {"logprob", alt.value("logprob", 0.0)},
                     {"bytes", alt.value("bytes", json::array())}});
    }
    content.push_back(
        {{"token", lp.token}, {"logprob", lp.logprob}, {"bytes", lp.bytes}, {"top_logprobs", top}});
  }
  return {{"content", content}, {"refusal", nullptr}};
}

json completion_logprobs(const std::vector<token_logprob>& lps) {
  json tokens = json::array();
  json token_logprobs = json::array();
  json top_logprobs = json::array();
  json text_offset = json::array();
  size_t offset = 0;
  for (const auto& lp : lps) {
    tokens.push_back(lp.token);
    token_logprobs.push_back(lp.logprob);
    json top = json::object();
    for (const auto& alt : lp.top) top[alt.value("token", "")] = alt.value("logprob", 0.0);
    top_logprobs.push_back(std::move(top));
    text_offset.push_back(offset);
    offset += lp.bytes.size();
  }
  return {{"tokens", tokens},
          {"token_logprobs", token_logprobs},
          {"top_logprobs", top_logprobs},
          {"text_offset", text_offset}};
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
