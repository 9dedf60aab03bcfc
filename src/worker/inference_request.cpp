#include "worker/inference_request.h"

#include <random>

#include "api/requests.h"
#include "common/errors.h"
#include "structured/json_schema.h"

namespace rbee::worker {

namespace {

uint64_t random_seed() {
  std::random_device device;
  return (static_cast<uint64_t>(device()) << 32) | device();
}

// The engine's parameters: the request's knobs over the engine's defaults.
engine::sampling_params sampling_params_of(const api::sampling_options& options) {
  engine::sampling_params s = engine::sampling_default_params();
  if (options.temperature) s.temperature = static_cast<float>(*options.temperature);
  if (options.top_p) s.top_p = static_cast<float>(*options.top_p);
  if (options.top_k) s.top_k = static_cast<int>(*options.top_k);
  if (options.min_p) s.min_p = static_cast<float>(*options.min_p);
  if (options.repeat_penalty) s.repeat_penalty = static_cast<float>(*options.repeat_penalty);
  if (options.presence_penalty) s.presence_penalty = static_cast<float>(*options.presence_penalty);
  if (options.frequency_penalty)
    s.frequency_penalty = static_cast<float>(*options.frequency_penalty);
  for (const auto& [token, bias] : options.logit_bias)
    s.logit_bias.emplace_back(token, static_cast<float>(bias));
  // Without a seed each request samples differently; with one, it repeats exactly.
  s.seed = options.seed ? static_cast<uint64_t>(*options.seed) : random_seed();
  return s;
}

}  // namespace

inference_request parse_inference_request(const common::json& body, int n_ctx) {
  api::inference_request wire = api::inference_request::from_json(body);
  api::generation_request& g = wire.generation;
  if (g.max_tokens && *g.max_tokens > n_ctx) {
    throw common::invalid_request("max_tokens", "max_tokens must be at most the context of " +
                                                    std::to_string(n_ctx) + " tokens");
  }
  inference_request request;
  request.job_id = std::move(wire.job_id);
  request.prompt = std::move(g.prompt);
  for (auto& m : g.messages) {
    engine::chat_message message(std::move(m.role), std::move(m.content));
    if (!m.tool_calls.empty())
      message.tool_calls_json = api::tool_calls_to_json(m.tool_calls).dump();
    message.tool_call_id = std::move(m.tool_call_id);
    message.name = std::move(m.name);
    request.messages.push_back(std::move(message));
  }
  if (!g.tools.empty()) request.tools_json = api::tools_to_json(g.tools).dump();
  request.chat_template = std::move(g.chat_template);
  request.max_tokens = g.max_tokens;
  request.sampling = sampling_params_of(g.sampling);
  request.stop = std::move(g.stop);
  request.n_choices = g.n;
  request.n_logprobs = g.logprobs;
  if (g.constraint) {
    // api::output_constraint::from_json compiled the schema once already: it compiles here.
    const api::output_constraint& c = *g.constraint;
    request.grammar = std::make_shared<const structured::grammar>(
        c.type == api::output_constraint::kind::json_object
            ? structured::json_object_grammar()
            : structured::json_schema_grammar(c.schema, {.strict = c.strict}));
  }
  request.resume.report_marks = wire.resumable;
  if (wire.resume) {
    request.resume_prompt = std::move(wire.resume->prompt_tokens);
    request.resume.generated = std::move(wire.resume->generated);
    request.resume.sampler = engine::sampler_state{.rng = wire.resume->rng_state};
  }
  return request;
}

void check_against_worker(const inference_request& request, int n_vocab, int n_slots) {
  for (const auto& [token, bias] : request.sampling.logit_bias) {
    if (token >= n_vocab) {
      throw common::invalid_request(
          "logit_bias", "logit_bias names token " + std::to_string(token) +
                            "; the model's vocabulary has " + std::to_string(n_vocab) + " tokens");
    }
  }
  for (const auto* ids : {&request.resume_prompt, &request.resume.generated}) {
    for (engine::token_id token : *ids) {
      if (token >= n_vocab) {
        throw common::invalid_request("resume", "resume names token " + std::to_string(token) +
                                                    "; the model's vocabulary has " +
                                                    std::to_string(n_vocab) + " tokens");
      }
    }
  }
  if (request.n_choices > n_slots) {
    throw common::invalid_request("n",
                                  "n is " + std::to_string(request.n_choices) +
                                      "; this worker has " + std::to_string(n_slots) +
                                      " slot(s), one per choice",
                                  {{"slots_total", n_slots}});
  }
}

std::vector<engine::token_id> prompt_tokens(const engine::model& model,
                                            const inference_request& request) {
  if (!request.resume_prompt.empty()) return request.resume_prompt;
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
    text = engine::apply_chat_template(
        model, request.messages,
        engine::chat_render_options{.add_generation_prompt = true,
                                    .tools_json = request.tools_json,
                                    .template_override = request.chat_template});
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
  const int max_tokens = request.max_tokens.value_or(room);
  if (static_cast<int64_t>(request.resume.generated.size()) >= std::min(max_tokens, room)) {
    throw common::invalid_request("resume.generated",
                                  "resume.generated holds " +
                                      std::to_string(request.resume.generated.size()) +
                                      " tokens; nothing is left to generate of " +
                                      std::to_string(std::min(max_tokens, room)));
  }
  // No max_tokens: until end of generation or the end of the context, as the peers do.
  if (!request.max_tokens) return room;
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
