#pragma once
// Chat templates. A model's tokenizer.chat_template is rendered by rbee's Jinja engine
// (src/template) as Hugging Face transformers renders it. The common template families are also
// recognised from distinctive markers and rendered by hand, producing what their Jinja templates
// produce for system/user/assistant conversations: that renderer serves template overrides
// (a family name), models without a template, and templates the Jinja engine cannot parse.
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "engine/engine.h"

namespace rbee::engine {

class vocab;

enum class chat_family { llama2, llama3, chatml, mistral, zephyr, phi3 };
std::string_view to_string(chat_family family);
// "llama2", "llama3", "chatml" (also "qwen", "qwen2"), "mistral", "zephyr" (also "tinyllama"),
// "phi3".
std::optional<chat_family> chat_family_from_name(std::string_view name);

struct chat_template {
  chat_family family = chat_family::chatml;
  // chatml: system prompt the template inserts when the conversation has none (Qwen2:
  // "You are a helpful assistant.").
  std::string default_system;
  // llama3: the Llama 3.1+ system header ("Cutting Knowledge Date: ...\nToday Date: <date>")
  // that those templates always emit; empty for Llama 3.0.
  std::string llama3_date;
};

// Recognises the family of a tokenizer.chat_template text. Throws
// engine_error(chat_template_unknown) for an empty or unrecognised template; the message names
// the families an override can select.
chat_template detect_chat_template(std::string_view template_text);
// Template of an override name; engine_error(chat_template_unknown) for an unknown name.
chat_template chat_template_from_name(std::string_view name);

// Texts the templates insert for bos_token / eos_token.
struct chat_special_texts {
  std::string bos;
  std::string eos;
};

// Renders the conversation. The BOS text appears only where the family's template emits it
// (llama2, llama3, mistral): tokenize the result with parse_special and without adding another
// BOS when it already starts with the BOS text. Roles other than system/user/assistant are
// accepted by chatml and llama3 (which print the role name) and rejected by the others with
// engine_error(invalid_argument).
std::string render_chat(const chat_template& t, std::span<const chat_message> messages,
                        bool add_assistant_prompt, const chat_special_texts& special);

// engine::apply_chat_template in one call: the override (a family name) if given; else the
// model's template run by the Jinja engine; else (no template, or Jinja the engine cannot
// parse) the family renderer, ChatML for a model without a template. BOS/EOS texts from the
// vocabulary.
std::string render_chat_template(const vocab& v, std::string_view template_text,
                                 std::span<const chat_message> messages,
                                 const chat_render_options& options);

}  // namespace rbee::engine
