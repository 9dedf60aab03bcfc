// The public API glue: error names, tokens and text. Model loading lives in model.cpp and
// model_load.cpp, contexts and decode in context.cpp, sampling in sampling.cpp.
#include "engine/engine.h"

#include "engine/chat_template.h"
#include "engine/model.h"
#include "engine/vocab.h"

namespace rbee::engine {

std::string_view to_string(error_code code) {
  switch (code) {
    case error_code::file_not_found:
      return "FILE_NOT_FOUND";
    case error_code::file_corrupt:
      return "FILE_CORRUPT";
    case error_code::unsupported_architecture:
      return "UNSUPPORTED_ARCHITECTURE";
    case error_code::unsupported_tensor_type:
      return "UNSUPPORTED_TENSOR_TYPE";
    case error_code::backend_unavailable:
      return "BACKEND_UNAVAILABLE";
    case error_code::out_of_memory:
      return "OUT_OF_MEMORY";
    case error_code::context_overflow:
      return "CONTEXT_OVERFLOW";
    case error_code::kv_cache_full:
      return "KV_CACHE_FULL";
    case error_code::invalid_argument:
      return "INVALID_ARGUMENT";
    case error_code::chat_template_unknown:
      return "CHAT_TEMPLATE_UNKNOWN";
  }
  return "UNKNOWN";
}

std::string_view to_string(split_mode mode) {
  switch (mode) {
    case split_mode::none:
      return "none";
    case split_mode::layer:
      return "layer";
    case split_mode::tensor:
      return "tensor";
  }
  return "none";
}

split_mode split_mode_from_string(std::string_view name) {
  for (const split_mode mode : {split_mode::none, split_mode::layer, split_mode::tensor})
    if (name == to_string(mode)) return mode;
  throw engine_error(
      error_code::invalid_argument,
      std::string("split mode '").append(name).append("' is not one of none, layer, tensor"));
}

std::vector<token_id> tokenize(const model& m, std::string_view text, bool add_bos,
                               bool parse_special) {
  // Vocabularies that never take a BOS (Qwen2) say so; add_bos cannot force one on them.
  return m.vocab->tokenize(text, add_bos && m.vocab->add_bos_default(), parse_special);
}

std::string token_to_piece(const model& m, token_id token) {
  return m.vocab->token_to_piece(token);
}

bool token_is_end_of_generation(const model& m, token_id token) {
  return m.vocab->is_eog(token);
}

std::vector<std::string> text_token_pieces(const model& m) {
  const vocab& v = *m.vocab;
  std::vector<std::string> pieces(static_cast<size_t>(v.n_tokens()));
  for (token_id t = 0; t < v.n_tokens(); ++t) {
    const token_type type = v.type_of(t);
    const bool text =
        type == token_type::normal || type == token_type::byte || type == token_type::undefined;
    if (text && !v.is_eog(t)) pieces[static_cast<size_t>(t)] = v.token_to_piece(t);
  }
  return pieces;
}

detokenizer::detokenizer(const model& m) : model_(&m) {}

std::string detokenizer::push(token_id token) {
  return detokenize_push(*model_->vocab, token, pending_, strip_space_);
}

std::string detokenizer::flush() {
  return detokenize_flush(pending_);
}

std::string apply_chat_template(const model& m, std::span<const chat_message> messages,
                                const chat_render_options& options) {
  return render_chat_template(*m.vocab, m.info.chat_template, messages, options);
}

std::string apply_chat_template(const model& m, std::span<const chat_message> messages,
                                bool add_assistant_prompt, std::string_view template_override) {
  return apply_chat_template(
      m, messages,
      chat_render_options{.add_generation_prompt = add_assistant_prompt,
                          .tools_json = {},
                          .template_override = std::string(template_override)});
}

}  // namespace rbee::engine
