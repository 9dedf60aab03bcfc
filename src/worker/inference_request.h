#pragma once
// POST /v1/inference bodies become plain inference_request structs here; JSON goes no further
// (the scheduler and its slots never see it). Every rejection is a 400 INVALID_REQUEST naming
// the field, except a chat template the engine cannot render (400 CHAT_TEMPLATE_UNKNOWN).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/json.h"
#include "engine/engine.h"

namespace rbee::worker {

inline constexpr size_t max_stop_strings = 4;
inline constexpr size_t max_stop_length = 100;
inline constexpr size_t max_job_id_length = 128;
inline constexpr size_t max_prompt_bytes = 1 << 20;  // also: all message contents together
inline constexpr size_t max_messages = 1024;
inline constexpr size_t max_chat_template_name = 32;
// max_tokens when the request has none: this many, or what is left of the context.
inline constexpr int default_max_tokens = 256;

struct inference_request {
  std::string job_id;
  // Exactly one of prompt and messages is given.
  std::string prompt;
  std::vector<engine::chat_message> messages;
  std::string chat_template;      // family name overriding the model's template; "" = the model's
  std::optional<int> max_tokens;  // nullopt: default_max_tokens capped by the context
  engine::sampling_params sampling;
  std::vector<std::string> stop;
};

// Validates the fields that need no model (types and ranges); n_ctx bounds max_tokens.
// A missing job_id is generated ("job-" + random hex). Unknown fields are ignored.
// Throws common::http_error (400 INVALID_REQUEST, details.field).
inference_request parse_inference_request(const common::json& body, int n_ctx);

// Checks the tokenized prompt against the context and returns the number of tokens to
// generate: the prompt must leave room for at least one token, and prompt + max_tokens must
// fit (400 naming "prompt" or "max_tokens" otherwise).
// The prompt's tokens: the prompt text, or the messages rendered with the chat template (plus
// the assistant header). Special-token text is recognised; BOS is added unless the rendered
// text already starts with it. Throws common::http_error: 400 CHAT_TEMPLATE_UNKNOWN (the message
// says to pass chat_template) or 400 INVALID_REQUEST.
std::vector<engine::token_id> prompt_tokens(const engine::model& model,
                                            const inference_request& request);

int resolve_max_tokens(const inference_request& request, int n_prompt_tokens, int n_ctx);

}  // namespace rbee::worker
