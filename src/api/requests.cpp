#include "api/requests.h"

#include <algorithm>

#include "api/model_ref.h"
#include "common/errors.h"
#include "common/json.h"
#include "common/secrets.h"
#include "structured/json_schema.h"

namespace rbee::api {

namespace {

using nlohmann::json;

bool present(const json& body, const char* field) {
  return body.contains(field) && !body[field].is_null();
}

void require_object(const json& body) {
  if (!body.is_object()) throw common::bad_request("request body must be a JSON object");
}

bool is_plain_id(const std::string& id) {
  if (id.empty() || id.size() > max_job_id_length) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.' || c == ':';
  });
}

// Each message is {role, content}; errors name the item's field ("messages[1].role").
std::vector<chat_message> messages_from_json(const json& body) {
  const json& messages = common::require_array(body, "messages");
  if (messages.empty()) {
    throw common::invalid_request("messages", "messages must hold at least one message");
  }
  if (messages.size() > max_messages) {
    throw common::invalid_request("messages", "messages holds " + std::to_string(messages.size()) +
                                                  " items; at most " +
                                                  std::to_string(max_messages) + " are accepted");
  }
  std::vector<chat_message> out;
  out.reserve(messages.size());
  size_t content_bytes = 0;
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string item = "messages[" + std::to_string(i) + "]";
    const json& m = messages[i];
    if (!m.is_object()) {
      throw common::invalid_request(
          item,
          item + " must be an object {\"role\", \"content\"}, not " + common::json_type_name(m));
    }
    const auto role = m.find("role");
    if (role == m.end() || !role->is_string() ||
        (*role != "system" && *role != "user" && *role != "assistant")) {
      throw common::invalid_request(item + ".role",
                                    item + ".role must be \"system\", \"user\" or \"assistant\"");
    }
    const auto content = m.find("content");
    if (content == m.end() || !content->is_string()) {
      throw common::invalid_request(item + ".content", item + ".content must be a string");
    }
    content_bytes += content->get_ref<const std::string&>().size();
    if (content_bytes > max_prompt_bytes) {
      throw common::invalid_request(
          item + ".content",
          "the messages' contents exceed " + std::to_string(max_prompt_bytes) + " bytes",
          {{"max_length", max_prompt_bytes}});
    }
    out.push_back({role->get<std::string>(), content->get<std::string>()});
  }
  return out;
}

// A device index: a non-negative integer, or one written as decimal text ("0").
std::optional<int> device_from_json(const json& body) {
  if (!present(body, "device")) return std::nullopt;
  const json& d = body["device"];
  if (d.is_string()) {
    const auto& text = d.get_ref<const std::string&>();
    const bool decimal = !text.empty() && text.size() <= 4 &&
                         text.find_first_not_of("0123456789") == std::string::npos;
    if (!decimal) {
      throw common::invalid_request(
          "device", "device must be a device index such as 0, not '" + text.substr(0, 64) + "'");
    }
    return std::stoi(text);
  }
  return static_cast<int>(*common::optional_int(body, "device", 0, 4096));
}

}  // namespace

output_constraint output_constraint::from_json(const json& value) {
  if (!value.is_object())
    throw common::invalid_request("constraint", "constraint must be an object {\"type\", ...}");
  const auto type = value.find("type");
  output_constraint c;
  if (type != value.end() && *type == "json_object") {
    c.type = kind::json_object;
    return c;
  }
  if (type == value.end() || *type != "json_schema")
    throw common::invalid_request("constraint.type",
                                  "constraint.type must be \"json_object\" or \"json_schema\"");
  c.type = kind::json_schema;
  const auto schema = value.find("schema");
  if (schema == value.end() || (!schema->is_object() && !schema->is_boolean()))
    throw common::invalid_request("constraint.schema", "constraint.schema must be a JSON schema");
  c.schema = *schema;
  if (const auto strict = value.find("strict"); strict != value.end() && !strict->is_null()) {
    if (!strict->is_boolean())
      throw common::invalid_request("constraint.strict", "constraint.strict must be a boolean");
    c.strict = strict->get<bool>();
  }
  // Compiling is the validation: a schema that passes here compiles on every worker.
  try {
    structured::json_schema_grammar(c.schema, {.strict = c.strict});
  } catch (const structured::schema_error& e) {
    throw common::invalid_request("constraint.schema",
                                  std::string("constraint.schema") +
                                      (e.path.empty() ? "" : " at " + e.path) + ": " + e.what(),
                                  {{"keyword", e.keyword}, {"schema_path", e.path}});
  }
  return c;
}

json output_constraint::to_json() const {
  if (type == kind::json_object) return {{"type", "json_object"}};
  return {{"type", "json_schema"}, {"schema", schema}, {"strict", strict}};
}

generation_request generation_request::from_json(const json& body) {
  require_object(body);
  generation_request g;
  if (present(body, "messages")) {
    if (present(body, "prompt")) {
      throw common::invalid_request("messages", "give either prompt or messages, not both");
    }
    g.messages = messages_from_json(body);
    if (auto name = common::optional_string(body, "chat_template", max_chat_template_name)) {
      if (name->empty()) {
        throw common::invalid_request("chat_template",
                                      "chat_template must name a template family (e.g. chatml)");
      }
      g.chat_template = *name;
    }
  } else {
    g.prompt = common::require_string(body, "prompt", max_prompt_bytes);
    if (g.prompt.empty()) throw common::invalid_request("prompt", "prompt must not be empty");
    if (present(body, "chat_template")) {
      throw common::invalid_request("chat_template",
                                    "chat_template applies to messages; a prompt is used as given");
    }
  }
  if (auto n =
          common::optional_int(body, "max_tokens", max_tokens_limits.min, max_tokens_limits.max)) {
    g.max_tokens = static_cast<int>(*n);
  }
  g.sampling = sampling_options::from_json(body);
  g.stop = common::string_array(body, "stop", max_stop_strings, max_stop_length);
  for (const auto& stop : g.stop) {
    if (stop.empty()) throw common::invalid_request("stop", "stop strings must not be empty");
  }
  if (present(body, "constraint")) g.constraint = output_constraint::from_json(body["constraint"]);
  return g;
}

void generation_request::to_json(json& body) const {
  if (messages.empty()) {
    body["prompt"] = prompt;
  } else {
    json list = json::array();
    for (const auto& m : messages) list.push_back({{"role", m.role}, {"content", m.content}});
    body["messages"] = std::move(list);
    if (!chat_template.empty()) body["chat_template"] = chat_template;
  }
  if (max_tokens) body["max_tokens"] = *max_tokens;
  sampling.to_json(body);
  body["stop"] = stop;
  if (constraint) body["constraint"] = constraint->to_json();
}

inference_request inference_request::from_json(const json& body) {
  require_object(body);
  inference_request r;
  if (auto job_id = common::optional_string(body, "job_id", max_job_id_length)) {
    if (!is_plain_id(*job_id)) {
      throw common::invalid_request(
          "job_id", "job_id must be 1-128 characters of letters, digits, '-', '_', '.' or ':'");
    }
    r.job_id = *job_id;
  } else {
    r.job_id = "job-" + common::random_token(8);
  }
  r.generation = generation_request::from_json(body);
  return r;
}

json inference_request::to_json() const {
  json body = {{"job_id", job_id}};
  generation.to_json(body);
  return body;
}

task_request task_request::from_json(const json& body) {
  require_object(body);
  task_request r;
  r.task_id = "task-" + common::random_token(8);
  r.model = parse_model_ref(common::require_string(body, "model", max_model_ref_length), "model")
                .canonical();
  if (auto node = common::optional_string(body, "node", max_node_name_length)) {
    if (node->empty()) throw common::invalid_request("node", "node must not be empty");
    r.node = *node;
  }
  r.generation = generation_request::from_json(body);
  r.backend = common::string_or(body, "backend", "", 16);
  if (!r.backend.empty() && r.backend != "cpu" && r.backend != "cuda") {
    throw common::invalid_request("backend", "backend must be \"cpu\" or \"cuda\"");
  }
  r.device = device_from_json(body);
  return r;
}

json task_request::to_json() const {
  json body = {{"model", model}};
  if (node) body["node"] = *node;
  generation.to_json(body);
  if (!backend.empty()) body["backend"] = backend;
  if (device) body["device"] = *device;
  return body;
}

inference_request task_request::for_worker() const {
  return inference_request{.job_id = task_id, .generation = generation};
}

}  // namespace rbee::api
