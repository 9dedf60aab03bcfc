#pragma once
// POST /v1/inference bodies become plain inference_request structs here; JSON goes no further
// (the scheduler and its slots never see it). Every rejection is a 400 INVALID_REQUEST naming
// the field.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/json.h"
#include "engine/engine.h"

namespace rbee::worker {

inline constexpr size_t max_stop_strings = 4;
inline constexpr size_t max_stop_length = 100;
inline constexpr size_t max_job_id_length = 128;
inline constexpr size_t max_prompt_bytes = 1 << 20;
// max_tokens when the request has none: this many, or what is left of the context.
inline constexpr int default_max_tokens = 256;

struct inference_request {
  std::string job_id;
  std::string prompt;
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
int resolve_max_tokens(const inference_request& request, int n_prompt_tokens, int n_ctx);

}  // namespace rbee::worker
