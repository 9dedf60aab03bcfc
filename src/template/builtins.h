#pragma once
// Jinja's built-in filters, tests, value methods (str.strip, dict.items, ...), operators and
// HF's tojson, over the values of value.h. Internal to the template library; the renderer
// calls them with itself as the budget and error sink.
#include <cstdint>
#include <string>
#include <string_view>

#include "template/template.h"
#include "template/value.h"

namespace rbee::tmpl::detail {

// What one list element or dict entry is charged to the budget: its memory.
inline constexpr size_t element_cost = sizeof(value);

// What the built-ins need from the renderer: errors at the current template line, and the
// budget every newly built string or list is charged to.
class builtin_env {
 public:
  [[noreturn]] void fail(const std::string& message) const {
    throw template_error(template_error::kind::render, current_line(), message);
  }
  virtual int current_line() const = 0;
  // Charges `n` bytes (or elements) about to be built; fails past the limits.
  virtual void charge(size_t n) = 0;
  // The size any one string may reach.
  virtual size_t max_string_bytes() const = 0;

 protected:
  ~builtin_env() = default;
};

value apply_filter(std::string_view name, const value& input, call_args& args, builtin_env& env);
bool apply_test(std::string_view name, const value& input, call_args& args, builtin_env& env);

// obj.name: a dict's key, a bound method of a str or dict, or an Undefined saying why not.
// Fails for an attribute of Undefined, as Jinja does.
value get_attribute(const value& obj, const std::string& name, builtin_env& env);
// obj[key]: list/str index (negative from the end), dict key; Undefined when absent.
value get_item(const value& obj, const value& key, builtin_env& env);
// obj[start:stop:step] with Python's slice rules; missing bounds are Undefined.
value get_slice(const value& obj, const value& start, const value& stop, const value& step,
                builtin_env& env);

// The operators: + - * / // % ** ~ and == != < > <= >= in.
value binary_operation(std::string_view op, const value& a, const value& b, builtin_env& env);
bool compare_values(std::string_view op, const value& a, const value& b, builtin_env& env);

// The items a for loop visits: a list's elements, a dict's keys, a string's characters;
// nothing for Undefined.
value_list iterate(const value& v, builtin_env& env);

// Hugging Face's tojson: json.dumps(v, ensure_ascii=False, indent=indent,
// separators=separators, sort_keys=sort_keys).
struct json_format {
  bool ensure_ascii = false;
  bool sort_keys = false;
  bool indent_set = false;
  std::string indent;  // the indentation unit when indent_set
  std::string item_separator = ", ";
  std::string key_separator = ": ";
};
std::string to_json(const value& v, const json_format& format, builtin_env& env);

// Python's len(): code points of a str, elements of a list, entries of a dict.
int64_t length_of(const value& v, builtin_env& env);

}  // namespace rbee::tmpl::detail
