#include "api/requests.h"

#include <algorithm>
#include <limits>

#include "api/model_ref.h"
#include "common/errors.h"
#include "common/json.h"
#include "common/secrets.h"
#include "common/text.h"
#include "structured/json_schema.h"

namespace rbee::api {

namespace {

using nlohmann::json;

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

// {"type": "function"}; an absent type counts as one where OpenAI allows leaving it out.
bool typed_function(const json& item, bool may_omit_type) {
  const auto type = item.find("type");
  if (type == item.end()) return may_omit_type;
  return type->is_string() && *type == "function";
}

bool is_tool_name(const std::string& name) {
  if (name.empty() || name.size() > max_tool_name_length) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.';
  });
}

std::string tool_name_from_json(const json& holder, const std::string& field) {
  const auto name = holder.find("name");
  if (name == holder.end() || !name->is_string() || !is_tool_name(name->get<std::string>())) {
    throw common::invalid_request(
        field, field + " must be 1-64 letters, digits, '_', '-' or '.' (a function name)");
  }
  return name->get<std::string>();
}

// An assistant's tool_calls: [{"id", "type": "function", "function": {"name", "arguments"}}].
std::vector<tool_call> tool_calls_from_json(const json& calls, const std::string& item) {
  const std::string field = item + ".tool_calls";
  if (!calls.is_array()) throw common::invalid_request(field, field + " must be an array");
  std::vector<tool_call> out;
  for (size_t i = 0; i < calls.size(); ++i) {
    const std::string call_field = field + "[" + std::to_string(i) + "]";
    const json& c = calls[i];
    const bool shaped = c.is_object() && typed_function(c, true) && c.contains("function") &&
                        c["function"].is_object();
    if (!shaped) {
      throw common::invalid_request(call_field,
                                    call_field +
                                        " must be {\"type\": \"function\", \"function\": "
                                        "{\"name\", \"arguments\"}}");
    }
    tool_call call;
    if (common::present(c, "id")) {
      if (!c["id"].is_string()) {
        throw common::invalid_request(call_field + ".id", call_field + ".id must be a string");
      }
      call.id = c["id"].get<std::string>();
    }
    call.name = tool_name_from_json(c["function"], call_field + ".function.name");
    const json& args = c["function"].value("arguments", json("{}"));
    if (!args.is_string()) {
      throw common::invalid_request(call_field + ".function.arguments",
                                    call_field + ".function.arguments must be a JSON string");
    }
    call.arguments = args.get<std::string>();
    out.push_back(std::move(call));
  }
  return out;
}

// OpenAI's tools: [{"type": "function", "function": {"name", "description", "parameters"}}].
std::vector<tool_definition> tools_from_json(const json& body) {
  if (!common::present(body, "tools")) return {};
  const json& tools = body["tools"];
  if (!tools.is_array() || tools.size() > max_tools) {
    throw common::invalid_request(
        "tools", "tools must be an array of at most " + std::to_string(max_tools) + " functions");
  }
  std::vector<tool_definition> out;
  for (size_t i = 0; i < tools.size(); ++i) {
    const std::string field = "tools[" + std::to_string(i) + "]";
    const json& t = tools[i];
    if (!t.is_object() || !typed_function(t, false) || !t.contains("function") ||
        !t["function"].is_object()) {
      throw common::invalid_request(
          field, field + " must be {\"type\": \"function\", \"function\": {\"name\", ...}}");
    }
    const json& f = t["function"];
    tool_definition d;
    d.name = tool_name_from_json(f, field + ".function.name");
    if (f.contains("description") && !f["description"].is_string()) {
      throw common::invalid_request(field + ".function.description",
                                    field + ".function.description must be a string");
    }
    d.description = f.value("description", "");
    if (common::present(f, "parameters")) {
      if (!f["parameters"].is_object()) {
        throw common::invalid_request(field + ".function.parameters",
                                      field + ".function.parameters must be a JSON schema object");
      }
      d.parameters = f["parameters"];
    }
    out.push_back(std::move(d));
  }
  return out;
}

bool valid_role(const json& role) {
  return role.is_string() &&
         (role == "system" || role == "user" || role == "assistant" || role == "tool");
}

// Each message is {role, content} (+ tool_calls, tool_call_id, name); errors name the item's
// field ("messages[1].role").
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
    if (role == m.end() || !valid_role(*role)) {
      throw common::invalid_request(
          item + ".role", item + ".role must be \"system\", \"user\", \"assistant\" or \"tool\"");
    }
    chat_message message;
    message.role = role->get<std::string>();
    if (common::present(m, "tool_calls")) {
      if (message.role != "assistant") {
        throw common::invalid_request(item + ".tool_calls",
                                      item + ".tool_calls belongs to assistant messages");
      }
      message.tool_calls = tool_calls_from_json(m["tool_calls"], item);
    }
    // An assistant message that only calls tools may have no content.
    const auto content = m.find("content");
    const bool may_omit = !message.tool_calls.empty() && (content == m.end() || content->is_null());
    if (!may_omit && (content == m.end() || !content->is_string())) {
      throw common::invalid_request(item + ".content", item + ".content must be a string");
    }
    if (!may_omit) message.content = content->get<std::string>();
    content_bytes += message.content.size();
    if (content_bytes > max_prompt_bytes) {
      throw common::invalid_request(
          item + ".content",
          "the messages' contents exceed " + std::to_string(max_prompt_bytes) + " bytes",
          {{"max_length", max_prompt_bytes}});
    }
    if (message.role == "tool") {
      auto id = common::optional_string(m, "tool_call_id", max_job_id_length);
      if (!id || id->empty()) {
        throw common::invalid_request(item + ".tool_call_id",
                                      item + ".tool_call_id must name the call it answers");
      }
      message.tool_call_id = *id;
    }
    if (common::present(m, "name")) message.name = tool_name_from_json(m, item + ".name");
    out.push_back(std::move(message));
  }
  return out;
}

}  // namespace

json tool_calls_to_json(const std::vector<tool_call>& calls) {
  json out = json::array();
  for (const auto& c : calls) {
    out.push_back({{"id", c.id},
                   {"type", "function"},
                   {"function", {{"name", c.name}, {"arguments", c.arguments}}}});
  }
  return out;
}

json tools_to_json(const std::vector<tool_definition>& tools) {
  json out = json::array();
  for (const auto& t : tools) {
    json function = {{"name", t.name}, {"parameters", t.parameters}};
    if (!t.description.empty()) function["description"] = t.description;
    out.push_back({{"type", "function"}, {"function", std::move(function)}});
  }
  return out;
}

namespace {

json message_to_json(const chat_message& m) {
  json out = {{"role", m.role}, {"content", m.content}};
  if (!m.tool_calls.empty()) out["tool_calls"] = tool_calls_to_json(m.tool_calls);
  if (!m.tool_call_id.empty()) out["tool_call_id"] = m.tool_call_id;
  if (!m.name.empty()) out["name"] = m.name;
  return out;
}

// A device index: a non-negative integer, or one written as decimal text ("0").
std::optional<int> device_from_json(const json& body) {
  if (!common::present(body, "device")) return std::nullopt;
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
  if (common::present(body, "messages")) {
    if (common::present(body, "prompt")) {
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
    g.tools = tools_from_json(body);
  } else {
    g.prompt = common::require_string(body, "prompt", max_prompt_bytes);
    if (g.prompt.empty()) throw common::invalid_request("prompt", "prompt must not be empty");
    for (const char* chat_only : {"chat_template", "tools"}) {
      if (common::present(body, chat_only)) {
        throw common::invalid_request(
            chat_only, std::string(chat_only) + " applies to messages; a prompt is used as given");
      }
    }
  }
  if (auto n =
          common::optional_int(body, "max_tokens", max_tokens_limits.min, max_tokens_limits.max)) {
    g.max_tokens = static_cast<int>(*n);
  }
  g.sampling = sampling_options::from_json(body);
  if (auto n = common::optional_int(body, "n", n_choices_limits.min, n_choices_limits.max)) {
    g.n = static_cast<int>(*n);
  }
  if (auto k = common::optional_int(body, "logprobs", logprobs_limits.min, logprobs_limits.max)) {
    g.logprobs = static_cast<int>(*k);
  }
  g.stop = common::string_array(body, "stop", max_stop_strings, max_stop_length);
  for (const auto& stop : g.stop) {
    if (stop.empty()) throw common::invalid_request("stop", "stop strings must not be empty");
  }
  if (common::present(body, "constraint"))
    g.constraint = output_constraint::from_json(body["constraint"]);
  return g;
}

void generation_request::to_json(json& body) const {
  if (messages.empty()) {
    body["prompt"] = prompt;
  } else {
    json list = json::array();
    for (const auto& m : messages) list.push_back(message_to_json(m));
    body["messages"] = std::move(list);
    if (!chat_template.empty()) body["chat_template"] = chat_template;
    if (!tools.empty()) body["tools"] = tools_to_json(tools);
  }
  if (max_tokens) body["max_tokens"] = *max_tokens;
  sampling.to_json(body);
  if (n != 1) body["n"] = n;
  if (logprobs) body["logprobs"] = *logprobs;
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
  r.resumable = common::optional_bool(body, "resumable", false);
  if (common::present(body, "resume")) r.resume = resume_point::from_json(body["resume"]);
  if ((r.resumable || r.resume) && r.generation.n != 1) {
    throw common::invalid_request(r.resume ? "resume" : "resumable",
                                  "resuming a generation needs n = 1");
  }
  return r;
}

json inference_request::to_json() const {
  json body = {{"job_id", job_id}};
  generation.to_json(body);
  if (resumable) body["resumable"] = true;
  if (resume) body["resume"] = resume->to_json();
  return body;
}

namespace {

std::vector<int32_t> token_ids(const json& value, const std::string& field) {
  if (!value.is_array()) throw common::invalid_request(field, field + " must be an array");
  if (value.size() > max_resume_tokens) {
    throw common::invalid_request(
        field, field + " holds more than " + std::to_string(max_resume_tokens) + " tokens");
  }
  std::vector<int32_t> ids;
  ids.reserve(value.size());
  for (const auto& id : value) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 ||
        id.get<int64_t>() > std::numeric_limits<int32_t>::max()) {
      throw common::invalid_request(field, field + " must hold token ids (integers >= 0)");
    }
    ids.push_back(static_cast<int32_t>(id.get<int64_t>()));
  }
  return ids;
}

}  // namespace

resume_point resume_point::from_json(const json& value) {
  if (!value.is_object()) throw common::invalid_request("resume", "resume must be an object");
  resume_point r;
  if (!value.contains("prompt_tokens")) {
    throw common::invalid_request("resume.prompt_tokens", "resume.prompt_tokens is required");
  }
  r.prompt_tokens = token_ids(value["prompt_tokens"], "resume.prompt_tokens");
  if (r.prompt_tokens.empty()) {
    throw common::invalid_request("resume.prompt_tokens", "resume.prompt_tokens is empty");
  }
  if (value.contains("generated")) r.generated = token_ids(value["generated"], "resume.generated");
  const auto state = common::optional_string(value, "rng_state", 16);
  if (!state) throw common::invalid_request("resume.rng_state", "resume.rng_state is required");
  auto parsed = common::parse_hex_u64(*state);
  if (!parsed) {
    throw common::invalid_request("resume.rng_state",
                                  "resume.rng_state must be 1 to 16 hexadecimal digits");
  }
  r.rng_state = *parsed;
  return r;
}

json resume_point::to_json() const {
  return {{"prompt_tokens", prompt_tokens},
          {"generated", generated},
          {"rng_state", common::hex_u64(rng_state)}};
}

int priority_from_json(const json& body) {
  if (!common::present(body, "priority")) return 0;
  const json& p = body["priority"];
  if (p.is_string()) {
    if (p == "interactive") return interactive_priority;
    if (p == "batch") return batch_priority;
  } else if (p.is_number_integer()) {
    auto value = p.get<int64_t>();
    if (value >= -1000 && value <= 1000) return static_cast<int>(value);
  }
  throw common::invalid_request(
      "priority", "priority must be \"interactive\", \"batch\" or an integer in [-1000, 1000]");
}

std::vector<int> device_indices_from_json(const json& list) {
  if (!list.is_array() || list.empty() || list.size() > max_split_devices)
    throw common::invalid_request("devices", "devices must be an array of 1 to " +
                                                 std::to_string(max_split_devices) +
                                                 " device indices, such as [0, 1]");
  std::vector<int> devices;
  for (const json& d : list) {
    if (!d.is_number_integer() || d.get<int64_t>() < 0 || d.get<int64_t>() > 4096)
      throw common::invalid_request(
          "devices", "devices must hold device indices such as 0, not " + d.dump().substr(0, 64));
    devices.push_back(d.get<int>());
  }
  return devices;
}

device_split device_split_from_json(const json& body) {
  const std::string split = common::string_or(body, "split", "", 16);
  const bool splits = split == "layer" || split == "tensor";
  if (!split.empty() && !splits && split != "none")
    throw common::invalid_request("split", "split must be \"layer\", \"tensor\" or \"none\"");
  if (!common::present(body, "devices")) {
    if (splits) throw common::invalid_request("devices", "split \"" + split + "\" needs devices");
    return {};
  }
  std::vector<int> devices = device_indices_from_json(body["devices"]);
  if (!splits) throw common::invalid_request("split", "devices need split \"layer\" or \"tensor\"");
  return {std::move(devices), split};
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
  r.priority = priority_from_json(body);
  r.hub = hub_access::from_json(body);
  auto sized = [&](std::string_view field, int64_t min, int64_t max) -> std::optional<int> {
    auto value = common::optional_int(body, field, min, max);
    return value ? std::optional<int>(static_cast<int>(*value)) : std::nullopt;
  };
  r.worker = {.ctx = sized("ctx", 256, 1 << 20),
              .slots = sized("slots", 1, 256),
              .keep_alive_s = sized("keep_alive_s", 0, 7 * 24 * 3600),
              .devices = {},
              .split = {}};
  device_split forced = device_split_from_json(body);
  r.worker.devices = std::move(forced.devices);
  r.worker.split = std::move(forced.split);
  return r;
}

json task_request::to_json() const {
  json body = {{"model", model}};
  if (node) body["node"] = *node;
  generation.to_json(body);
  if (!backend.empty()) body["backend"] = backend;
  if (device) body["device"] = *device;
  if (priority != 0) body["priority"] = priority;
  if (worker.ctx) body["ctx"] = *worker.ctx;
  if (worker.slots) body["slots"] = *worker.slots;
  if (worker.keep_alive_s) body["keep_alive_s"] = *worker.keep_alive_s;
  if (!worker.devices.empty()) {
    body["devices"] = worker.devices;
    body["split"] = worker.split;
  }
  return body;
}

inference_request task_request::for_worker() const {
  return inference_request{
      .job_id = task_id, .generation = generation, .resumable = false, .resume = std::nullopt};
}

}  // namespace rbee::api
