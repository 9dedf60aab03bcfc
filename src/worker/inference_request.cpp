#include "worker/inference_request.h"

#include <algorithm>
#include <limits>
#include <random>

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

  request.prompt = common::require_string(body, "prompt", max_prompt_bytes);
  if (request.prompt.empty()) throw common::invalid_request("prompt", "prompt must not be empty");

  if (auto max_tokens = common::optional_int(body, "max_tokens", 1, n_ctx)) {
    request.max_tokens = static_cast<int>(*max_tokens);
  }

  engine::sampling_params defaults = engine::sampling_default_params();
  engine::sampling_params& s = request.sampling;
  s = defaults;
  s.temperature = static_cast<float>(
      common::number_in_range(body, "temperature", defaults.temperature, 0.0, 2.0));
  s.top_p = static_cast<float>(common::number_in_range(body, "top_p", defaults.top_p, 0.0, 1.0));
  s.top_k = static_cast<int>(
      common::int_in_range(body, "top_k", defaults.top_k, 0, std::numeric_limits<int>::max()));
  s.min_p = static_cast<float>(common::number_in_range(body, "min_p", defaults.min_p, 0.0, 1.0));
  s.repeat_penalty = static_cast<float>(
      common::number_in_range(body, "repeat_penalty", defaults.repeat_penalty, 0.1, 10.0));
  // Without a seed each request samples differently; with one, it repeats exactly.
  auto seed = common::optional_int(body, "seed", 0, std::numeric_limits<int64_t>::max());
  s.seed = seed ? static_cast<uint64_t>(*seed) : random_seed();

  request.stop = common::string_array(body, "stop", max_stop_strings, max_stop_length);
  for (const auto& stop : request.stop) {
    if (stop.empty()) throw common::invalid_request("stop", "stop strings must not be empty");
  }
  return request;
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
