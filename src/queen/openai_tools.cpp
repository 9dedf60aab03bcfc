#include "queen/openai_tools.h"

#include <algorithm>
#include <array>
#include <optional>

#include <nlohmann/json.hpp>

#include "common/secrets.h"
#include "common/text.h"

namespace rbee::queen::openai {

namespace {

using nlohmann::json;

constexpr std::string_view hermes_open = "<tool_call>";
constexpr std::string_view hermes_close = "</tool_call>";
constexpr std::string_view mistral_marker = "[TOOL_CALLS]";
constexpr std::string_view llama_marker = "<|python_tag|>";
constexpr std::array<std::string_view, 3> markers = {hermes_open, mistral_marker, llama_marker};

std::optional<json> parse_json(std::string_view text) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return std::nullopt;
  return j;
}

bool offered(const std::vector<api::tool_definition>& tools, const std::string& name) {
  return std::any_of(tools.begin(), tools.end(), [&](const auto& t) { return t.name == name; });
}

// {"name", "arguments" | "parameters"} (arguments as an object or as JSON text) as a call.
std::optional<api::tool_call> call_of(const json& j,
                                      const std::vector<api::tool_definition>& tools) {
  if (!j.is_object() || !j.contains("name") || !j["name"].is_string()) return std::nullopt;
  std::string name = j["name"].get<std::string>();
  if (!offered(tools, name)) return std::nullopt;
  json args = j.contains("arguments") ? j["arguments"] : j.value("parameters", json::object());
  if (!args.is_object() && !args.is_string()) return std::nullopt;
  return api::tool_call{.id = "call_" + common::random_token(12),
                        .name = std::move(name),
                        .arguments = args.is_string() ? args.get<std::string>() : args.dump()};
}

// A call, a list of calls or {"tool_calls": [...]}; nothing unless every item is a call.
std::vector<api::tool_call> calls_of(const json& j,
                                     const std::vector<api::tool_definition>& tools) {
  if (j.is_object() && j.contains("tool_calls")) return calls_of(j["tool_calls"], tools);
  std::vector<api::tool_call> out;
  if (j.is_array()) {
    for (const auto& item : j) {
      auto call = call_of(item, tools);
      if (!call) return {};
      out.push_back(std::move(*call));
    }
  } else if (auto call = call_of(j, tools)) {
    out.push_back(std::move(*call));
  }
  return out;
}

// JSON text holding calls: one document, or Llama's "call; call".
std::vector<api::tool_call> calls_in_json_text(std::string_view text,
                                               const std::vector<api::tool_definition>& tools) {
  if (auto j = parse_json(common::trim(text))) return calls_of(*j, tools);
  std::vector<api::tool_call> out;
  for (size_t at = 0; at <= text.size();) {
    size_t end = std::min(text.find(';', at), text.size());
    auto j = parse_json(common::trim(text.substr(at, end - at)));
    at = end + 1;
    if (!j) return {};
    auto calls = calls_of(*j, tools);
    if (calls.empty()) return {};
    for (auto& c : calls) out.push_back(std::move(c));
  }
  return out;
}

// Hermes: each <tool_call>...</tool_call> block (the last one may lack its closing tag when
// generation stopped there); the text between blocks stays content.
parsed_reply hermes_calls(std::string_view text, const std::vector<api::tool_definition>& tools) {
  parsed_reply out;
  size_t at = 0;
  while (at < text.size()) {
    size_t open = text.find(hermes_open, at);
    if (open == std::string_view::npos) break;
    size_t body = open + hermes_open.size();
    size_t close = text.find(hermes_close, body);
    size_t end = close == std::string_view::npos ? text.size() : close + hermes_close.size();
    auto calls = calls_in_json_text(text.substr(body, std::min(close, text.size()) - body), tools);
    if (calls.empty()) return {std::string(text), {}};  // a malformed block: all of it is text
    out.content += text.substr(at, open - at);
    for (auto& c : calls) out.calls.push_back(std::move(c));
    at = end;
  }
  out.content += text.substr(std::min(at, text.size()));
  return out;
}

// Text after a marker (Mistral, Llama's python tag) that holds JSON calls.
parsed_reply marked_calls(std::string_view text, std::string_view marker,
                          const std::vector<api::tool_definition>& tools) {
  size_t at = text.find(marker);
  auto calls = calls_in_json_text(text.substr(at + marker.size()), tools);
  if (calls.empty()) return {std::string(text), {}};
  return {std::string(common::trim(text.substr(0, at))), std::move(calls)};
}

// Could `tail` still grow into a marker (or be one)?
bool may_begin_marker(std::string_view tail) {
  return std::any_of(markers.begin(), markers.end(), [&](std::string_view m) {
    return tail.size() >= m.size() ? tail.starts_with(m) : m.starts_with(tail);
  });
}

}  // namespace

parsed_reply parse_tool_calls(std::string_view text,
                              const std::vector<api::tool_definition>& tools) {
  if (tools.empty()) return {std::string(text), {}};
  if (text.find(hermes_open) != std::string_view::npos) return hermes_calls(text, tools);
  for (auto marker : {mistral_marker, llama_marker}) {
    if (text.find(marker) != std::string_view::npos) return marked_calls(text, marker, tools);
  }
  auto calls = calls_in_json_text(text, tools);
  if (calls.empty()) return {std::string(text), {}};
  return {"", std::move(calls)};
}

std::string reply_stream::push(std::string_view piece) {
  pending_ += piece;
  if (holding_ || tools_.empty()) {
    if (holding_) return {};
    sent_any_ = true;
    return std::exchange(pending_, {});
  }
  // A reply that opens with JSON may be a call in the generic or Llama form.
  if (!sent_any_) {
    auto start = common::trim(pending_);
    if (start.empty()) return {};
    if (start.front() == '{' || start.front() == '[') {
      holding_ = true;
      return {};
    }
  }
  // Send everything before the first place a marker may begin.
  size_t keep = pending_.size();
  for (size_t i = 0; i < pending_.size(); ++i) {
    if ((pending_[i] == '<' || pending_[i] == '[') &&
        may_begin_marker(std::string_view(pending_).substr(i))) {
      keep = i;
      break;
    }
  }
  std::string ready = pending_.substr(0, keep);
  pending_.erase(0, keep);
  // What is left is a marker, or a text that may still become one.
  holding_ = std::any_of(markers.begin(), markers.end(),
                         [&](std::string_view m) { return pending_.starts_with(m); });
  if (!ready.empty()) sent_any_ = true;
  return ready;
}

parsed_reply reply_stream::finish() {
  return parse_tool_calls(std::exchange(pending_, {}), tools_);
}

}  // namespace rbee::queen::openai
