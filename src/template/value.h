#pragma once
// The values a template computes with, modelled on the Python objects Jinja sees when Hugging
// Face renders a chat template: None, bool, int, float, str, list, tuple, dict (insertion
// ordered), callables and Jinja's Undefined. Lists and dicts are shared by reference, as in
// Python; strings are UTF-8 and measured in code points where Python measures them.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace rbee::tmpl {

inline constexpr int max_nesting = 512;

class value;
using value_list = std::vector<value>;
// Insertion ordered, as Python dicts are: tojson prints keys in this order.
using value_dict = std::vector<std::pair<std::string, value>>;

struct call_args {
  std::vector<value> positional;
  std::vector<std::pair<std::string, value>> named;
};
using native_function = std::function<value(call_args&)>;

class value {
 public:
  enum class kind { undefined, none, boolean, integer, number, string, list, dict, function };

  value() = default;  // Undefined
  value(bool b) : kind_(kind::boolean), int_(b) {}
  value(int i) : kind_(kind::integer), int_(i) {}
  value(int64_t i) : kind_(kind::integer), int_(i) {}
  value(double d) : kind_(kind::number), number_(d) {}
  value(std::string s) : kind_(kind::string), string_(std::move(s)) {}
  value(std::string_view s) : kind_(kind::string), string_(s) {}
  value(const char* s) : kind_(kind::string), string_(s) {}

  static value none();
  // An Undefined that remembers why it is undefined, for the error of using it further.
  static value undefined(std::string why);
  // Throw template_error(limit) when the result would nest deeper than max_nesting.
  static value list(value_list items, bool is_tuple = false);
  static value dict(value_dict entries, bool is_namespace = false);
  static value function(native_function f);
  static value from_json(const nlohmann::ordered_json& j);

  kind type() const { return kind_; }
  bool is_undefined() const { return kind_ == kind::undefined; }
  bool is_none() const { return kind_ == kind::none; }
  bool is_string() const { return kind_ == kind::string; }
  bool is_list() const { return kind_ == kind::list; }
  bool is_dict() const { return kind_ == kind::dict; }
  bool is_integer() const { return kind_ == kind::integer || kind_ == kind::boolean; }
  bool is_numeric() const { return is_integer() || kind_ == kind::number; }
  bool is_tuple() const { return kind_ == kind::list && tuple_; }
  bool is_namespace() const { return kind_ == kind::dict && namespace_; }

  bool truthy() const;
  int64_t as_int() const { return int_; }  // integer or boolean
  double as_number() const { return kind_ == kind::number ? number_ : double(int_); }
  const std::string& as_string() const { return string_; }
  const std::string& undefined_reason() const { return string_; }
  value_list& items() const { return *list_; }
  value_dict& entries() const { return *dict_; }
  const native_function& callable() const { return *function_; }

  // The dict entry for `key`, or nullptr.
  value* find(std::string_view key) const;
  // Python's str() and repr().
  std::string str() const;
  std::string repr() const;
  // How deeply lists and dicts nest inside this value (0 for a scalar); bounded by
  // max_nesting so that no walk over a value, nor its destruction, recurses without limit.
  int nesting() const { return nesting_; }
  // Jinja's type name in messages ("dict object", "str object", ...).
  std::string type_name() const;

 private:
  static value from_json_at(const nlohmann::ordered_json& j, int depth);

  kind kind_ = kind::undefined;
  bool tuple_ = false;
  bool namespace_ = false;
  int nesting_ = 0;
  int64_t int_ = 0;
  double number_ = 0;
  std::string string_;  // a string's text, or why an Undefined is undefined
  std::shared_ptr<value_list> list_;
  std::shared_ptr<value_dict> dict_;
  std::shared_ptr<native_function> function_;
};

// Python's ==, as templates compare values (1 == 1.0 == True; lists and dicts deeply).
bool equal(const value& a, const value& b);

// Python's repr() of a float (shortest round trip, "1.0", "1e-05", "1e+16").
std::string float_repr(double d);

// UTF-8 helpers: strings are indexed and measured in code points, as in Python.
std::vector<std::string_view> code_points(std::string_view s);
bool is_python_space(std::string_view code_point);

}  // namespace rbee::tmpl
