#pragma once
// rbee's own Jinja engine, for the chat templates models ship (tokenizer.chat_template). It
// renders as Hugging Face transformers does: Jinja2's sandbox with trim_blocks and
// lstrip_blocks, the loopcontrols extension, the globals raise_exception and strftime_now, and
// HF's tojson (non-ASCII kept, keys unsorted). docs/chat-templates.md lists the supported subset.
//
// A template from a model file is untrusted input: parsing and rendering never crash or hang;
// every failure is a template_error with the template line, and rendering is bounded in
// output size, work and nesting depth (render_limits).
#include <cstdint>
#include <ctime>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace rbee::tmpl {

struct template_error : std::runtime_error {
  enum class kind {
    syntax,  // the template cannot be parsed, or uses what this engine does not support
    raised,  // the template called raise_exception(message)
    render,  // an error while rendering (undefined attribute, wrong types, ...)
    limit,   // a render limit was exceeded
  };
  template_error(kind k, int line, const std::string& message);
  kind what_kind;
  int line;  // 1-based line of the template, 0 when unknown
};

struct render_limits {
  size_t max_output_bytes = size_t{16} << 20;      // the result, and any one string or capture
  uint64_t max_steps = 10'000'000;                 // expressions evaluated and loop iterations
  uint64_t max_bytes_built = uint64_t{256} << 20;  // bytes copied into new strings, in total
  int max_depth = 200;                             // nested macro calls and expressions
};

struct render_options {
  render_limits limits;
  // The time strftime_now formats; local time now when unset (tests pin it).
  std::function<std::tm()> now;
};

namespace detail {
struct program;
}

class chat_template_program {
 public:
  // Throws template_error(syntax) with the line of the problem.
  static chat_template_program parse(std::string_view source);
  // Renders with `context`'s keys as the template's variables (messages, tools,
  // add_generation_prompt, bos_token, ...). Throws template_error.
  std::string render(const nlohmann::ordered_json& context,
                     const render_options& options = {}) const;

 private:
  std::shared_ptr<const detail::program> program_;
};

}  // namespace rbee::tmpl
