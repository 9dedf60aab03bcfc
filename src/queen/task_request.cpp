#include "queen/task_request.h"

#include <cctype>

#include "common/errors.h"
#include "common/json.h"
#include "common/secrets.h"

namespace rbee::queen {

namespace {

using nlohmann::json;

constexpr size_t max_model_ref = 512;
// A task's text (the prompt, or all message contents together) is capped at the edge: far
// beyond any context the workers load, and small enough that a bad client cannot make the
// queen hold megabytes per request (SPEC §3, INVALID_REQUEST naming the field).
constexpr size_t max_prompt_bytes = 256 * 1024;

bool present(const json& body, const char* field) {
  return body.contains(field) && !body[field].is_null();
}

std::string device_string(const json& body) {
  if (!present(body, "device")) return "";
  const auto& d = body["device"];
  if (d.is_number_integer() && d.get<int64_t>() >= 0) return std::to_string(d.get<int64_t>());
  return common::require_string(body, "device", 64);
}

// The formats of SPEC §4 (hf:ORG/REPO[:FILE], file:/abs/path, a catalog alias), checked for
// shape only: the hive parses the reference fully, this stops URLs and path tricks early.
void validate_model_ref(const std::string& ref) {
  auto reject = [&](const std::string& why) {
    throw common::invalid_request("model", "Invalid model reference '" + ref + "': " + why,
                                  {{"reference", ref},
                                   {"accepted",
                                    "hf:ORG/REPO:FILE.gguf, hf:ORG/REPO, file:/abs/path.gguf, "
                                    "or a catalog alias"}});
  };
  for (char c : ref) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f || c == '\\') {
      reject("it contains a space, control, backslash or non-ASCII character");
    }
  }
  if (ref.find("://") != std::string::npos) {
    reject("URLs are not accepted; use hf:ORG/REPO[:FILE] (the hub is set by HF_ENDPOINT)");
  }
  if (ref.starts_with("hf:")) {
    auto slash = ref.find('/', 3);
    if (slash == std::string::npos || slash == 3 || slash + 1 == ref.size()) {
      reject("expected hf:ORG/REPO (organisation and repository)");
    }
    return;
  }
  if (ref.starts_with("file:")) {
    if (ref.size() < 6 || ref[5] != '/') reject("file: needs an absolute path");
    return;
  }
  if (ref.find('/') != std::string::npos || ref.find("..") != std::string::npos) {
    reject("aliases may not contain '/' or '..'");
  }
  for (char c : ref) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != '_' &&
        c != ':') {
      reject("aliases may only contain letters, digits, '.', '-', '_', ':'");
    }
  }
}

}  // namespace

task_request parse_task_request(const json& body) {
  task_request r;
  r.task_id = "task-" + common::random_token(8);
  r.model = common::require_string(body, "model", max_model_ref);
  if (r.model.empty()) throw common::invalid_request("model", "model must not be empty");
  validate_model_ref(r.model);
  if (auto node = common::optional_string(body, "node", 64)) {
    if (node->empty()) throw common::invalid_request("node", "node must not be empty");
    r.node = *node;
  }
  if (present(body, "messages")) {
    const auto& messages = common::require_array(body, "messages");
    if (messages.empty()) throw common::invalid_request("messages", "messages must not be empty");
    // The worker's rules (SPEC §3), checked here so a bad chat fails before any stream starts.
    r.messages = json::array();
    size_t text_bytes = 0;
    for (size_t i = 0; i < messages.size(); ++i) {
      const std::string item = "messages[" + std::to_string(i) + "]";
      const json& m = messages[i];
      if (!m.is_object()) {
        throw common::invalid_request(item, item +
                                                " must be {\"role\": string, \"content\": "
                                                "string}");
      }
      const std::string role = m.contains("role") && m["role"].is_string() ? m["role"] : "";
      if (role != "system" && role != "user" && role != "assistant") {
        throw common::invalid_request(item + ".role",
                                      item + ".role must be \"system\", \"user\" or \"assistant\"");
      }
      if (!m.contains("content") || !m["content"].is_string()) {
        throw common::invalid_request(item + ".content", item + ".content must be a string");
      }
      text_bytes += m["content"].get_ref<const std::string&>().size();
      if (text_bytes > max_prompt_bytes) {
        throw common::invalid_request(
            "messages",
            "messages are too long: more than " + std::to_string(max_prompt_bytes) + " bytes",
            {{"max_length", max_prompt_bytes}});
      }
      r.messages.push_back({{"role", role}, {"content", m["content"]}});
    }
    r.chat_template = common::string_or(body, "chat_template", "", 32);
  } else {
    r.prompt = common::require_string(body, "prompt", max_prompt_bytes);
    if (r.prompt.empty()) throw common::invalid_request("prompt", "prompt must not be empty");
    if (present(body, "chat_template")) {
      throw common::invalid_request("chat_template",
                                    "chat_template applies to messages; a prompt is used as given");
    }
  }
  r.max_tokens = static_cast<int>(common::int_in_range(
      body, "max_tokens", 256, api::max_tokens_limits.min, api::max_tokens_limits.max));
  r.sampling = api::sampling_options::from_json(body);
  r.stop = common::string_array(body, "stop", 4, 100);
  r.backend = common::string_or(body, "backend", "", 16);
  if (!r.backend.empty() && r.backend != "cpu" && r.backend != "cuda") {
    throw common::invalid_request("backend", "backend must be \"cpu\" or \"cuda\"");
  }
  r.device = device_string(body);
  return r;
}

json worker_inference_body(const task_request& r) {
  json body = {{"job_id", r.task_id}, {"max_tokens", r.max_tokens}, {"stop", r.stop}};
  if (r.messages.is_array()) {
    body["messages"] = r.messages;
    if (!r.chat_template.empty()) body["chat_template"] = r.chat_template;
  } else {
    body["prompt"] = r.prompt;
  }
  r.sampling.to_json(body);
  return body;
}

}  // namespace rbee::queen
