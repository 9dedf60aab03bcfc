// OpenAI request bodies -> task requests. Every parameter either works as OpenAI documents it
// or is refused with a 400 naming it.

#include <algorithm>
#include <set>

#include "common/errors.h"
#include "common/json.h"
#include "queen/openai.h"

namespace rbee::queen::openai {

namespace {

using nlohmann::json;

// Top alternatives per token: OpenAI's chat limit (completions allow 5).
constexpr int max_top_logprobs = 20;
constexpr int max_choices = 16;

// Parameters both endpoints take, passed to the task under the same name.
const std::set<std::string, std::less<>> shared_sampling = {"temperature",
                                                            "top_p",
                                                            "seed",
                                                            "stop",
                                                            "top_k",
                                                            "min_p",
                                                            "repeat_penalty",
                                                            "presence_penalty",
                                                            "frequency_penalty",
                                                            "logit_bias"};

// `node` is an rbee extension: the registered node to run on, as for /v2/tasks.
const std::set<std::string, std::less<>> shared_other = {
    "model", "max_tokens", "n",        "stream",       "stream_options",
    "user",  "logprobs",   "priority", "service_tier", "node"};

const std::set<std::string, std::less<>> chat_only = {"messages",        "max_completion_tokens",
                                                      "top_logprobs",    "tools",
                                                      "tool_choice",     "parallel_tool_calls",
                                                      "response_format", "chat_template",
                                                      "modalities",      "store",
                                                      "metadata"};

const std::set<std::string, std::less<>> completion_only = {"prompt", "echo", "suffix", "best_of"};

// Anything not listed is refused; these get a reason beyond "not supported".
std::string why_not(const std::string& parameter) {
  if (parameter == "functions" || parameter == "function_call") {
    return parameter + " is the deprecated form of tools; send tools and tool_choice";
  }
  if (parameter == "audio") return "audio output is not supported: rbee serves text models";
  return "parameter '" + parameter + "' is not supported by rbee";
}

void refuse_unknown(endpoint kind, const json& body) {
  const auto& own = kind == endpoint::chat ? chat_only : completion_only;
  for (const auto& [key, value] : body.items()) {
    if (shared_sampling.count(key) || shared_other.count(key) || own.count(key)) continue;
    throw common::invalid_request(key, why_not(key));
  }
}

// Parameters accepted only with their default value.
void require_default(const json& body, const char* field, const json& allowed,
                     const std::string& reason) {
  if (common::present(body, field) && body[field] != allowed) {
    throw common::invalid_request(field, std::string(field) + ": " + reason);
  }
}

// Content parts: text ones are joined; other kinds (images, audio) need a model rbee cannot run.
std::string text_of_parts(const json& parts, const std::string& item) {
  std::string text;
  for (const auto& part : parts) {
    const bool typed = part.is_object() && part.contains("type") && part["type"].is_string();
    if (!typed) {
      throw common::invalid_request(item + ".content", "each content part needs a string type");
    }
    if (part["type"] != "text") {
      throw common::invalid_request(item + ".content",
                                    "content parts of type '" + part["type"].get<std::string>() +
                                        "' are not supported: only 'text' is (a text model)");
    }
    if (!part.contains("text") || !part["text"].is_string()) {
      throw common::invalid_request(item + ".content", "a text content part needs a string text");
    }
    text += part["text"].get<std::string>();
  }
  return text;
}

// OpenAI's messages in the task's form: parts flattened, "developer" is the system prompt.
json task_messages(const json& body) {
  const auto& messages = common::require_array(body, "messages");
  json out = json::array();
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string item = "messages[" + std::to_string(i) + "]";
    json m = messages[i];
    if (!m.is_object()) throw common::invalid_request(item, item + " must be an object");
    if (m.contains("content") && m["content"].is_array()) {
      m["content"] = text_of_parts(m["content"], item);
    }
    if (m.value("role", json()) == "developer") m["role"] = "system";
    out.push_back(std::move(m));
  }
  return out;
}

const api::tool_definition* find_tool(const std::vector<api::tool_definition>& tools,
                                      const std::string& name) {
  auto it = std::find_if(tools.begin(), tools.end(), [&](const auto& t) { return t.name == name; });
  return it == tools.end() ? nullptr : &*it;
}

json parameters_schema(const api::tool_definition& tool) {
  return tool.parameters.empty() ? json{{"type", "object"}} : tool.parameters;
}

// tool_choice "required": the reply is a list of calls of the offered functions.
json required_calls_schema(const std::vector<api::tool_definition>& tools, bool parallel) {
  json variants = json::array();
  for (const auto& t : tools) {
    variants.push_back(
        {{"type", "object"},
         {"properties", {{"name", {{"const", t.name}}}, {"arguments", parameters_schema(t)}}},
         {"required", {"name", "arguments"}},
         {"additionalProperties", false}});
  }
  json schema = {{"type", "array"}, {"minItems", 1}, {"items", {{"anyOf", variants}}}};
  if (!parallel) schema["maxItems"] = 1;
  return schema;
}

// tool_choice: how the reply is read, and the constraint (JSON) that forces a call.
std::optional<json> apply_tool_choice(const json& body, request& r) {
  json choice = body.value("tool_choice", json("auto"));
  if (choice.is_null()) choice = "auto";
  if (r.tools.empty()) {
    if (choice != "none" && common::present(body, "tool_choice")) {
      throw common::invalid_request("tool_choice", "tool_choice needs tools");
    }
    return std::nullopt;
  }
  const bool parallel = common::optional_bool(body, "parallel_tool_calls", true);
  if (choice == "none") return std::nullopt;
  if (choice == "auto") {
    r.reply = reply_kind::tool_calls;
    return std::nullopt;
  }
  if (choice == "required") {
    r.reply = reply_kind::tool_calls;
    return json{{"type", "json_schema"}, {"schema", required_calls_schema(r.tools, parallel)}};
  }
  const bool named = choice.is_object() && choice.value("type", json()) == "function" &&
                     choice.contains("function") && choice["function"].is_object() &&
                     choice["function"].contains("name") && choice["function"]["name"].is_string();
  if (!named) {
    throw common::invalid_request(
        "tool_choice",
        "tool_choice must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", "
        "\"function\": {\"name\": ...}}");
  }
  const std::string name = choice["function"]["name"].get<std::string>();
  const auto* tool = find_tool(r.tools, name);
  if (!tool) {
    throw common::invalid_request(
        "tool_choice", "tool_choice names '" + name.substr(0, 64) + "', which is not in tools");
  }
  r.reply = reply_kind::forced_call;
  r.forced_tool = name;
  return json{{"type", "json_schema"}, {"schema", parameters_schema(*tool)}};
}

// response_format: text, json_object or json_schema, enforced by constrained decoding.
std::optional<json> response_format_constraint(const json& body) {
  if (!common::present(body, "response_format")) return std::nullopt;
  const json& format = body["response_format"];
  const std::string type =
      format.is_object() && format.contains("type") && format["type"].is_string()
          ? format["type"].get<std::string>()
          : "";
  if (type == "text") return std::nullopt;
  if (type == "json_object") return json{{"type", "json_object"}};
  if (type == "json_schema") {
    const json spec = format.value("json_schema", json());
    if (!spec.is_object() || !spec.contains("schema") || !spec["schema"].is_object()) {
      throw common::invalid_request("response_format",
                                    "response_format.json_schema.schema must be a JSON schema");
    }
    return json{{"type", "json_schema"},
                {"schema", spec["schema"]},
                {"strict", common::optional_bool(spec, "strict", false)}};
  }
  throw common::invalid_request(
      "response_format",
      "response_format.type must be \"text\", \"json_object\" or \"json_schema\"");
}

// The constraint the worker enforces; a schema it cannot compile is the parameter's fault.
api::output_constraint constraint_of(const json& constraint, const char* parameter) {
  try {
    return api::output_constraint::from_json(constraint);
  } catch (const common::http_error& e) {
    json details = e.details.is_object() ? e.details : json::object();
    details["field"] = parameter;
    throw common::http_error(e.status, e.code, std::string(parameter) + ": " + e.message, details);
  }
}

// logprobs: chat has logprobs: bool + top_logprobs: k; completions has logprobs: k.
std::optional<int> requested_logprobs(endpoint kind, const json& body) {
  if (kind == endpoint::completion) {
    auto k = common::optional_int(body, "logprobs", 0, max_top_logprobs);
    return k ? std::optional<int>(static_cast<int>(*k)) : std::nullopt;
  }
  const bool wanted = common::optional_bool(body, "logprobs", false);
  auto top = common::optional_int(body, "top_logprobs", 0, max_top_logprobs);
  if (top && !wanted) {
    throw common::invalid_request("top_logprobs", "top_logprobs needs logprobs: true");
  }
  if (!wanted) return std::nullopt;
  return static_cast<int>(top.value_or(0));
}

json prompt_of(const json& body) {
  if (!body.contains("prompt")) throw common::invalid_request("prompt", "prompt is required");
  const auto& p = body["prompt"];
  if (p.is_array()) {
    if (p.size() != 1 || !p[0].is_string()) {
      throw common::invalid_request("prompt", "prompt must be a string (or a list of one string)");
    }
    return p[0];
  }
  return p;
}

// vLLM's integer "priority", or OpenAI's service_tier: "flex" is batch work (it may wait),
// "auto" and "default" are interactive.
json queue_priority(const json& body) {
  if (common::present(body, "service_tier")) {
    const json& tier = body["service_tier"];
    if (common::present(body, "priority")) {
      throw common::invalid_request("service_tier", "send either service_tier or priority");
    }
    if (tier == "flex") return api::batch_priority;
    if (tier == "auto" || tier == "default") return api::interactive_priority;
    throw common::invalid_request("service_tier",
                                  "service_tier must be \"auto\", \"default\" or \"flex\"");
  }
  return common::present(body, "priority") ? body["priority"] : json(api::interactive_priority);
}

}  // namespace

request parse_request(endpoint kind, const json& body) {
  if (!body.is_object()) throw common::bad_request("request body must be a JSON object");
  refuse_unknown(kind, body);
  if (!body.contains("model") || !body["model"].is_string()) {
    throw common::invalid_request("model", "model is required (a model reference)");
  }
  request r;
  json task = {{"model", body["model"]}};
  if (body.contains("node")) task["node"] = body["node"];
  for (const auto& f : shared_sampling) {
    if (body.contains(f)) task[f] = body[f];
  }
  if (common::present(body, "max_completion_tokens")) {
    task["max_tokens"] = body["max_completion_tokens"];
  } else if (body.contains("max_tokens")) {
    task["max_tokens"] = body["max_tokens"];
  }
  r.n = static_cast<int>(common::optional_int(body, "n", 1, max_choices).value_or(1));
  if (r.n > 1) task["n"] = r.n;
  r.logprobs = requested_logprobs(kind, body);
  if (r.logprobs) task["logprobs"] = *r.logprobs;
  if (kind == endpoint::chat) {
    task["messages"] = task_messages(body);
    for (const char* f : {"chat_template", "tools"}) {
      if (body.contains(f)) task[f] = body[f];
    }
    require_default(body, "modalities", json::array({"text"}), "rbee answers with text only");
    require_default(body, "store", false, "rbee does not store completions");
  } else {
    task["prompt"] = prompt_of(body);
    require_default(body, "echo", false, "echoing the prompt is not supported");
    require_default(body, "suffix", "", "insertion (suffix) is not supported");
    require_default(body, "best_of", r.n, "best_of must equal n (no server-side ranking)");
  }
  task["priority"] = queue_priority(body);
  r.task = task_request::from_json(task);
  if (kind == endpoint::chat) {
    r.tools = r.task.generation.tools;
    auto forced_call = apply_tool_choice(body, r);
    auto format = response_format_constraint(body);
    if (forced_call && format) {
      throw common::invalid_request("response_format",
                                    "response_format cannot be combined with a forced tool_choice");
    }
    if (forced_call) r.task.generation.constraint = constraint_of(*forced_call, "tools");
    if (format) r.task.generation.constraint = constraint_of(*format, "response_format");
  }
  r.stream = common::optional_bool(body, "stream", false);
  if (common::present(body, "stream_options")) {
    if (!body["stream_options"].is_object()) {
      throw common::invalid_request("stream_options", "stream_options must be an object");
    }
    r.include_usage = common::optional_bool(body["stream_options"], "include_usage", false);
  }
  return r;
}

std::string finish_reason(std::string_view stop_reason) {
  if (stop_reason == "max_tokens" || stop_reason == "length") return "length";
  return "stop";
}

}  // namespace rbee::queen::openai
