#pragma once
// POST /v1/inference bodies (api::inference_request, validated there) become the engine's terms
// here; JSON goes no further (the scheduler and its slots never see it). What needs the model
// is checked here: the context bounds max_tokens and the prompt, and a chat template the engine
// cannot render is 400 CHAT_TEMPLATE_UNKNOWN.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/json.h"
#include "engine/engine.h"
#include "structured/grammar.h"
#include "worker/job.h"

namespace rbee::worker {

struct inference_request {
  std::string job_id;
  // Exactly one of prompt and messages is given.
  std::string prompt;
  std::vector<engine::chat_message> messages;
  std::string chat_template;      // family name overriding the model's template; "" = the model's
  std::string tools_json;         // the tools the template shows the model (JSON array text)
  std::optional<int> max_tokens;  // nullopt: until end of generation or the end of the context
  engine::sampling_params sampling;  // choice 0's; choice i draws with seed + i
  std::vector<std::string> stop;
  int n_choices = 1;              // from one prefill of the prompt, each on its own slot
  std::optional<int> n_logprobs;  // nullopt: none; k: each token's and its k best alternatives'
  // Constrained decoding: the grammar the answer must follow (null: free text).
  std::shared_ptr<const structured::grammar> grammar;
  // Failover (docs/failover.md): report resume marks, or continue from resume_prompt (the
  // first worker's prompt tokens, used instead of rendering prompt/messages) and resume's
  // generated tokens and sampler state.
  std::vector<engine::token_id> resume_prompt;
  resume_options resume;
};

// Reads the body with api::inference_request::from_json (a missing job_id is generated; unknown
// fields are ignored); n_ctx bounds max_tokens. Throws common::http_error (400 INVALID_REQUEST,
// details.field).
inference_request parse_inference_request(const common::json& body, int n_ctx);

// What needs the loaded model and the worker's slots: logit_bias and resumed token ids inside
// the vocabulary, n at most the worker's slot count (400 naming "logit_bias", "resume" or "n").
void check_against_worker(const inference_request& request, int n_vocab, int n_slots);

// Checks the tokenized prompt against the context and returns the number of tokens to
// generate: the prompt must leave room for at least one token, and prompt + max_tokens must
// fit (400 naming "prompt" or "max_tokens" otherwise).
// The prompt's tokens: a resumed request's own, the prompt text, or the messages rendered with
// the chat template (plus the assistant header). Special-token text is recognised; BOS is added
// unless the rendered text already starts with it. Throws common::http_error: 400
// CHAT_TEMPLATE_UNKNOWN (the message says to pass chat_template) or 400 INVALID_REQUEST.
std::vector<engine::token_id> prompt_tokens(const engine::model& model,
                                            const inference_request& request);

// A resumed request's generated tokens must leave at least one to generate (400 naming
// "resume.generated").
int resolve_max_tokens(const inference_request& request, int n_prompt_tokens, int n_ctx);

}  // namespace rbee::worker
