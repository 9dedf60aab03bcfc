#include "worker/inference_request.h"

#include <algorithm>
#include <limits>
#include <random>

#include "api/sampling.h"
#include "common/errors.h"
#include "common/secrets.h"

namespace rbee::worker {

namespace {

// Job ids travel in URLs (DELETE /v1/inference/{job_id}) and logs: keep them plain.
bool valid_job_id(const std::string& id) {
  if (id.empty() || id.size() > max_job_id_length) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.' || c == ':';
  });
}

uint64_t random_seed() {
  std::random_device device;
  return (static_cast<uint64_t>(device()) << 32) | device();
}

// Each message is {role, content}; errors name the item's field ("messages[1].role").
std::vector<engine::chat_message> parse_messages(const common::json& body) {
  const common::json& messages = common::require_array(body, "messages");
  if (messages.empty()) {
    throw common::invalid_request("messages", "messages must hold at least one message");
  }
  if (messages.size() > max_messages) {
    throw common::invalid_request("messages", "messages holds " + std::to_string(messages.size()) +
                                                  " items; at most " +
                                                  std::to_string(max_messages) + " are accepted");
  }
  std::vector<engine::chat_message> out;
  out.reserve(messages.size());
  size_t content_bytes = 0;
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string item = "messages[" + std::to_string(i) + "]";
    const common::json& m = messages[i];
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
          "the messages' contents exceed " + std::to_string(max_prompt_bytes) + " bytes");
    }
    out.push_back({role->get<std::string>(), content->get<std::string>()});
  }
  return out;
}

bool present(const common::json& body, const char* field) {
  return body.contains(field) && !body[field].is_null();
}

}  // namespace

inference_request parse_inference_request(const common::json& body, int n_ctx) {
  if (!body.is_object()) throw common::bad_request("request body must be a JSON object");
  inference_request request;

  auto job_id = common::optional_string(body, "job_id", max_job_id_length);
  if (job_id) {
    if (!valid_job_id(*job_id)) {
      throw common::invalid_request(
          "job_id", "job_id must be 1-128 characters of letters, digits, '-', '_', '.' or ':'");
    }
    request.job_id = *job_id;
  } else {
    request.job_id = "job-" + common::random_token(8);
  }

  if (present(body, "messages")) {
    if (present(body, "prompt")) {
      throw common::invalid_request("messages", "give either prompt or messages, not both");
    }
    request.messages = parse_messages(body);
    if (auto name = common::optional_string(body, "chat_template", max_chat_template_name)) {
      if (name->empty()) {
        throw common::invalid_request("chat_template",
                                      "chat_template must name a template family (e.g. chatml)");
      }
      request.chat_template = *name;
    }
  } else {
    request.prompt = common::require_string(body, "prompt", max_prompt_bytes);
    if (request.prompt.empty()) throw common::invalid_request("prompt", "prompt must not be empty");
    if (present(body, "chat_template")) {
      throw common::invalid_request("chat_template",
                                    "chat_template applies to messages; a prompt is used as given");
    }
  }

  if (auto max_tokens = common::optional_int(body, "max_tokens", 1, n_ctx)) {
    request.max_tokens = static_cast<int>(*max_tokens);
  }

  const auto options = api::sampling_options::from_json(body);
  engine::sampling_params& s = request.sampling;
  s = engine::sampling_default_params();
  if (options.temperature) s.temperature = static_cast<float>(*options.temperature);
  if (options.top_p) s.top_p = static_cast<float>(*options.top_p);
  if (options.top_k) s.top_k = static_cast<int>(*options.top_k);
  if (options.min_p) s.min_p = static_cast<float>(*options.min_p);
  if (options.repeat_penalty) s.repeat_penalty = static_cast<float>(*options.repeat_penalty);
  // Without a seed each request samples differently; with one, it repeats exactly.
  s.seed = options.seed ? static_cast<uint64_t>(*options.seed) : random_seed();

  request.stop = common::string_array(body, "stop", max_stop_strings, max_stop_length);
  for (const auto& stop : request.stop) {
    if (stop.empty()) throw common::invalid_request("stop", "stop strings must not be empty");
  }
  return request;
}

std::vector<engine::token_id> prompt_tokens(const engine::model& model,
                                            const inference_request& request) {
  if (request.messages.empty()) {
    try {
      return engine::tokenize(model, request.prompt, /*add_bos=*/true, /*parse_special=*/true);
    } catch (const engine::engine_error& e) {
      throw common::invalid_request("prompt",
                                    std::string("prompt cannot be tokenized: ") + e.what());
    }
  }
  std::string text;
  try {
    text = engine::apply_chat_template(model, request.messages, /*add_assistant_prompt=*/true,
                                       request.chat_template);
  } catch (const engine::engine_error& e) {
    if (e.code != engine::error_code::chat_template_unknown) {
      throw common::invalid_request("messages",
                                    std::string("messages cannot be rendered: ") + e.what());
    }
    throw common::http_error(
        400, common::codes::CHAT_TEMPLATE_UNKNOWN,
        std::string(e.what()) + "; set \"chat_template\" in the request to one of these families",
        {{"field", request.chat_template.empty() ? "messages" : "chat_template"}});
  }
  try {
    // Templates that emit BOS (llama2, llama3, mistral) start with its text: no second one.
    std::vector<engine::token_id> tokens =
        engine::tokenize(model, text, /*add_bos=*/false, /*parse_special=*/true);
    if (!tokens.empty() && tokens.front() == engine::model_get_info(model).bos) return tokens;
    return engine::tokenize(model, text, /*add_bos=*/true, /*parse_special=*/true);
  } catch (const engine::engine_error& e) {
    throw common::invalid_request("messages",
                                  std::string("messages cannot be tokenized: ") + e.what());
  }
}

int resolve_max_tokens(const inference_request& request, int n_prompt_tokens, int n_ctx) {
  if (n_prompt_tokens >= n_ctx) {
    throw common::invalid_request("prompt",
                                  "prompt is " + std::to_string(n_prompt_tokens) +
                                      " tokens; the context holds " + std::to_string(n_ctx) +
                                      " (at least one must be left for the answer)",
                                  {{"prompt_tokens", n_prompt_tokens}, {"n_ctx", n_ctx}});
  }
  int room = n_ctx - n_prompt_tokens;
  if (!request.max_tokens) return std::min(default_max_tokens, room);
  if (*request.max_tokens > room) {
    throw common::invalid_request(
        "max_tokens",
        "prompt (" + std::to_string(n_prompt_tokens) + " tokens) + max_tokens (" +
            std::to_string(*request.max_tokens) + ") exceeds the context of " +
            std::to_string(n_ctx) + " tokens",
        {{"prompt_tokens", n_prompt_tokens},
         {"max_tokens", *request.max_tokens},
         {"n_ctx", n_ctx}});
  }
  return *request.max_tokens;
}

}  // namespace rbee::worker
