#include "engine/chat_template.h"

#include <array>
#include <initializer_list>

#include <nlohmann/json.hpp>

#include "engine/vocab.h"
#include "template/template.h"

namespace rbee::engine {

namespace {

struct family_name {
  std::string_view name;
  chat_family family;
};

constexpr std::array<family_name, 9> family_names = {{
    {"llama2", chat_family::llama2},
    {"llama3", chat_family::llama3},
    {"chatml", chat_family::chatml},
    {"mistral", chat_family::mistral},
    {"zephyr", chat_family::zephyr},
    {"phi3", chat_family::phi3},
    {"qwen", chat_family::chatml},
    {"qwen2", chat_family::chatml},
    {"tinyllama", chat_family::zephyr},
}};

constexpr std::string_view override_help =
    "pass a template override naming its family: llama2, llama3, chatml, mistral, zephyr, phi3";

// Appends pieces in order (also sidesteps GCC 12's false -Wrestrict on "lit" + std::string).
std::string concat(std::initializer_list<std::string_view> parts) {
  std::string out;
  for (const std::string_view p : parts) out.append(p);
  return out;
}

bool contains(std::string_view text, std::string_view what) {
  return text.find(what) != std::string_view::npos;
}

// Python's str.strip() / Jinja's trim, for the ASCII whitespace chat text contains.
std::string_view strip(std::string_view s) {
  constexpr std::string_view ws = " \t\n\r\v\f";
  const size_t first = s.find_first_not_of(ws);
  if (first == std::string_view::npos) return {};
  return s.substr(first, s.find_last_not_of(ws) - first + 1);
}

// A Jinja string literal's text up to `end`, if it is plain text: "\n" escapes become newlines;
// a quote or brace means the literal ended and an expression follows (no fixed text).
std::optional<std::string> literal_until(std::string_view text, std::string_view end) {
  const size_t stop = text.find(end);
  if (stop == std::string_view::npos) return std::nullopt;
  std::string out;
  for (size_t i = 0; i < stop; ++i) {
    const char c = text[i];
    if (c == '\'' || c == '"' || c == '{' || c == '}') return std::nullopt;
    if (c == '\\' && i + 1 < stop && text[i + 1] == 'n') {
      out += '\n';
      ++i;
    } else {
      out += c;
    }
  }
  return out;
}

// Qwen-style templates write a fixed system turn for conversations without one:
// '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n'.
std::string chatml_default_system(std::string_view text) {
  constexpr std::string_view head = "<|im_start|>system";
  for (size_t pos = text.find(head); pos != std::string_view::npos;
       pos = text.find(head, pos + 1)) {
    std::string_view rest = text.substr(pos + head.size());
    if (rest.starts_with("\\n")) {
      rest.remove_prefix(2);
    } else if (rest.starts_with("\n")) {
      rest.remove_prefix(1);
    } else {
      continue;
    }
    if (auto literal = literal_until(rest, "<|im_end|>")) return *literal;
  }
  return {};
}

// Llama 3.1+: `set date_string = "26 Jul 2024"` is the date the template prints by default.
std::string llama3_default_date(std::string_view text) {
  constexpr std::string_view key = "date_string = \"";
  for (size_t pos = text.find(key); pos != std::string_view::npos; pos = text.find(key, pos + 1)) {
    const std::string_view rest = text.substr(pos + key.size());
    const size_t end = rest.find('"');
    if (end != std::string_view::npos && end > 0 && end < 32)
      return std::string(rest.substr(0, end));
  }
  return "26 Jul 2024";
}

[[noreturn]] void unsupported_role(chat_family family, const std::string& role) {
  throw engine_error(error_code::invalid_argument,
                     concat({"chat role '", role, "' is not supported by the ", to_string(family),
                             " template (system, user, assistant)"}));
}

void check_standard_role(chat_family family, const chat_message& m) {
  if (m.role != "system" && m.role != "user" && m.role != "assistant") {
    unsupported_role(family, m.role);
  }
}

std::string render_llama2(std::span<const chat_message> messages, const chat_special_texts& sp) {
  std::string out;
  std::optional<std::string_view> system;
  if (!messages.empty() && messages[0].role == "system") {
    system = messages[0].content;
    messages = messages.subspan(1);
  }
  for (size_t i = 0; i < messages.size(); ++i) {
    const chat_message& m = messages[i];
    check_standard_role(chat_family::llama2, m);
    std::string content = m.content;
    if (i == 0 && system) {
      content = concat({"<<SYS>>\n", *system, "\n<</SYS>>\n\n", content});
    }
    if (m.role == "user") {
      out += concat({sp.bos, "[INST] ", strip(content), " [/INST]"});
    } else if (m.role == "assistant") {
      out += concat({" ", strip(content), " ", sp.eos});
    }
    // A later system message has no place in this template: it prints nothing.
  }
  return out;
}

std::string render_mistral(std::span<const chat_message> messages, const chat_special_texts& sp) {
  // Mistral's template (v0.1/v0.2) has no system role; the usual convention puts the system
  // prompt in front of the first user message.
  std::string out = sp.bos;
  std::string system;
  for (const chat_message& m : messages) {
    check_standard_role(chat_family::mistral, m);
    if (m.role == "system") {
      system += concat({system.empty() ? "" : "\n\n", m.content});
    } else if (m.role == "user") {
      const std::string content = system.empty() ? m.content : concat({system, "\n\n", m.content});
      system.clear();
      out += concat({"[INST] ", content, " [/INST]"});
    } else {
      out += concat({m.content, sp.eos});
    }
  }
  return out;
}

std::string render_llama3(const chat_template& t, std::span<const chat_message> messages,
                          bool add_prompt, const chat_special_texts& sp) {
  const auto header = [](std::string_view role) {
    return concat({"<|start_header_id|>", role, "<|end_header_id|>\n\n"});
  };
  std::string out;
  if (!t.llama3_date.empty()) {
    // Llama 3.1+: the system turn is always there, carrying the knowledge cutoff and date.
    std::string_view system;
    if (!messages.empty() && messages[0].role == "system") {
      system = strip(messages[0].content);
      messages = messages.subspan(1);
    }
    out += concat({sp.bos, header("system"), "Cutting Knowledge Date: December 2023\nToday Date: ",
                   t.llama3_date, "\n\n", system, "<|eot_id|>"});
  }
  for (size_t i = 0; i < messages.size(); ++i) {
    if (i == 0 && t.llama3_date.empty()) out += sp.bos;
    out += concat({header(messages[i].role), strip(messages[i].content), "<|eot_id|>"});
  }
  if (add_prompt) out += header("assistant");
  return out;
}

std::string render_chatml(const chat_template& t, std::span<const chat_message> messages,
                          bool add_prompt) {
  std::string out;
  if (!t.default_system.empty() && !messages.empty() && messages[0].role != "system") {
    out += concat({"<|im_start|>system\n", t.default_system, "<|im_end|>\n"});
  }
  for (const chat_message& m : messages) {
    out += concat({"<|im_start|>", m.role, "\n", m.content, "<|im_end|>\n"});
  }
  if (add_prompt) out += "<|im_start|>assistant\n";
  return out;
}

// zephyr: <|role|>\n content </s>\n ; phi3: <|role|>\n content <|end|>\n
std::string render_tagged(chat_family family, std::span<const chat_message> messages,
                          bool add_prompt, std::string_view end_of_turn,
                          std::string_view end_without_prompt) {
  std::string out;
  for (const chat_message& m : messages) {
    check_standard_role(family, m);
    out += concat({"<|", m.role, "|>\n", m.content, end_of_turn, "\n"});
  }
  if (add_prompt) {
    out += "<|assistant|>\n";
  } else {
    out += end_without_prompt;
  }
  return out;
}

}  // namespace

std::string_view to_string(chat_family family) {
  switch (family) {
    case chat_family::llama2:
      return "llama2";
    case chat_family::llama3:
      return "llama3";
    case chat_family::chatml:
      return "chatml";
    case chat_family::mistral:
      return "mistral";
    case chat_family::zephyr:
      return "zephyr";
    case chat_family::phi3:
      return "phi3";
  }
  return "unknown";
}

std::optional<chat_family> chat_family_from_name(std::string_view name) {
  for (const auto& entry : family_names) {
    if (entry.name == name) return entry.family;
  }
  return std::nullopt;
}

chat_template detect_chat_template(std::string_view text) {
  if (strip(text).empty()) {
    throw engine_error(
        error_code::chat_template_unknown,
        concat({"the model has no chat template (tokenizer.chat_template); ", override_help}));
  }
  chat_template t;
  if (contains(text, "<|im_start|>")) {
    t.family = chat_family::chatml;
    t.default_system = chatml_default_system(text);
  } else if (contains(text, "<|start_header_id|>") && contains(text, "<|end_header_id|>")) {
    t.family = chat_family::llama3;
    if (contains(text, "Cutting Knowledge Date")) t.llama3_date = llama3_default_date(text);
  } else if (contains(text, "[INST]")) {
    t.family = contains(text, "<<SYS>>") ? chat_family::llama2 : chat_family::mistral;
  } else if (contains(text, "<|user|>") && contains(text, "<|end|>")) {
    t.family = chat_family::phi3;
  } else if (contains(text, "<|user|>") && contains(text, "<|assistant|>")) {
    t.family = chat_family::zephyr;
  } else {
    throw engine_error(
        error_code::chat_template_unknown,
        concat({"the model's chat template is not one of the known families; ", override_help}));
  }
  return t;
}

chat_template chat_template_from_name(std::string_view name) {
  const auto family = chat_family_from_name(name);
  if (!family) {
    throw engine_error(error_code::chat_template_unknown,
                       concat({"unknown chat template override '", name,
                               "' (llama2, llama3, chatml, mistral, zephyr, phi3)"}));
  }
  return chat_template{*family, {}, {}};
}

std::string render_chat(const chat_template& t, std::span<const chat_message> messages,
                        bool add_assistant_prompt, const chat_special_texts& special) {
  switch (t.family) {
    case chat_family::llama2:
      return render_llama2(messages, special);
    case chat_family::llama3:
      return render_llama3(t, messages, add_assistant_prompt, special);
    case chat_family::chatml:
      return render_chatml(t, messages, add_assistant_prompt);
    case chat_family::mistral:
      return render_mistral(messages, special);
    case chat_family::zephyr:
      return render_tagged(t.family, messages, add_assistant_prompt, special.eos, "");
    case chat_family::phi3:
      return render_tagged(t.family, messages, add_assistant_prompt, "<|end|>", special.eos);
  }
  return {};
}

namespace {

using ordered_json = nlohmann::ordered_json;

ordered_json parse_json_field(const std::string& text, std::string_view what) {
  try {
    return ordered_json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw engine_error(error_code::invalid_argument,
                       concat({what, " is not valid JSON: ", e.what()}));
  }
}

// Templates read tool call arguments as a mapping (tojson, items()); OpenAI sends them as JSON
// text, so text that encodes an object becomes that object.
ordered_json tool_calls_value(const std::string& text) {
  ordered_json calls = parse_json_field(text, "tool_calls");
  if (!calls.is_array()) {
    throw engine_error(error_code::invalid_argument, "tool_calls must be a JSON array");
  }
  for (ordered_json& call : calls) {
    if (!call.is_object() || !call.contains("function") || !call["function"].is_object()) continue;
    ordered_json& arguments = call["function"]["arguments"];
    if (!arguments.is_string()) continue;
    ordered_json decoded = ordered_json::parse(arguments.get<std::string>(), nullptr, false);
    if (decoded.is_object()) arguments = std::move(decoded);
  }
  return calls;
}

ordered_json context_of(std::span<const chat_message> messages, const chat_render_options& options,
                        const chat_special_texts& special) {
  ordered_json list = ordered_json::array();
  for (const chat_message& m : messages) {
    ordered_json message = {{"role", m.role}, {"content", m.content}};
    if (!m.tool_calls_json.empty()) message["tool_calls"] = tool_calls_value(m.tool_calls_json);
    if (!m.tool_call_id.empty()) message["tool_call_id"] = m.tool_call_id;
    if (!m.name.empty()) message["name"] = m.name;
    list.push_back(std::move(message));
  }
  ordered_json tools = nullptr;
  if (!options.tools_json.empty()) {
    tools = parse_json_field(options.tools_json, "tools");
    if (!tools.is_array()) {
      throw engine_error(error_code::invalid_argument, "tools must be a JSON array");
    }
  }
  return {{"messages", std::move(list)},
          {"tools", std::move(tools)},
          {"add_generation_prompt", options.add_generation_prompt},
          {"bos_token", special.bos},
          {"eos_token", special.eos}};
}

std::string render_jinja(const tmpl::chat_template_program& program,
                         std::span<const chat_message> messages, const chat_render_options& options,
                         const chat_special_texts& special) {
  try {
    return program.render(context_of(messages, options, special));
  } catch (const tmpl::template_error& e) {
    if (e.what_kind == tmpl::template_error::kind::raised) {
      throw engine_error(error_code::invalid_argument,
                         concat({"the model's chat template rejects these messages: ", e.what()}));
    }
    throw engine_error(
        error_code::invalid_argument,
        concat({"the model's chat template cannot render these messages: ", e.what()}));
  }
}

}  // namespace

std::string render_chat_template(const vocab& v, std::string_view template_text,
                                 std::span<const chat_message> messages,
                                 const chat_render_options& options) {
  chat_special_texts special;
  if (v.valid(v.bos())) special.bos = v.token_text(v.bos());
  if (v.valid(v.eos())) special.eos = v.token_text(v.eos());
  if (!options.template_override.empty()) {
    return render_chat(chat_template_from_name(options.template_override), messages,
                       options.add_generation_prompt, special);
  }
  // A model without any template gets ChatML, as llama.cpp's server does.
  if (strip(template_text).empty()) {
    return render_chat(chat_template_from_name("chatml"), messages, options.add_generation_prompt,
                       special);
  }
  std::optional<tmpl::chat_template_program> program;
  std::string syntax_problem;
  try {
    program = tmpl::chat_template_program::parse(template_text);
  } catch (const tmpl::template_error& e) {
    syntax_problem = e.what();
  }
  if (program) return render_jinja(*program, messages, options, special);
  // Jinja this engine cannot parse: the family renderer if the family is known; guessing an
  // unknown format would silently garble the prompt, so that stays an error.
  try {
    return render_chat(detect_chat_template(template_text), messages, options.add_generation_prompt,
                       special);
  } catch (const engine_error& e) {
    throw engine_error(e.code, concat({e.what(), " (its Jinja: ", syntax_problem, ")"}));
  }
}

}  // namespace rbee::engine
