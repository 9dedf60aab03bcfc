#include "template/value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "template/template.h"

namespace rbee::tmpl {

value value::none() {
  value v;
  v.kind_ = kind::none;
  return v;
}

value value::undefined(std::string why) {
  value v;
  v.string_ = std::move(why);
  return v;
}

namespace {

int nesting_of(int deepest_child) {
  if (deepest_child + 1 > max_nesting) {
    throw template_error(template_error::kind::limit, 0,
                         "lists and dicts nest deeper than " + std::to_string(max_nesting));
  }
  return deepest_child + 1;
}

}  // namespace

value value::list(value_list items, bool is_tuple) {
  int deepest = 0;
  for (const value& item : items) deepest = std::max(deepest, item.nesting_);
  value v;
  v.nesting_ = nesting_of(deepest);
  v.kind_ = kind::list;
  v.tuple_ = is_tuple;
  v.list_ = std::make_shared<value_list>(std::move(items));
  return v;
}

value value::dict(value_dict entries, bool is_namespace) {
  int deepest = 0;
  for (const auto& entry : entries) deepest = std::max(deepest, entry.second.nesting_);
  value v;
  v.nesting_ = nesting_of(deepest);
  v.kind_ = kind::dict;
  v.namespace_ = is_namespace;
  v.dict_ = std::make_shared<value_dict>(std::move(entries));
  return v;
}

value value::function(native_function f) {
  value v;
  v.kind_ = kind::function;
  v.function_ = std::make_shared<native_function>(std::move(f));
  return v;
}

value value::from_json(const nlohmann::ordered_json& j) {
  return from_json_at(j, 0);
}

value value::from_json_at(const nlohmann::ordered_json& j, int depth) {
  if (depth > max_nesting) {
    throw template_error(template_error::kind::limit, 0,
                         "the template's input nests deeper than " + std::to_string(max_nesting));
  }
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null:
      return none();
    case nlohmann::ordered_json::value_t::boolean:
      return value(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer:
      return value(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
      const uint64_t u = j.get<uint64_t>();
      if (u > uint64_t(INT64_MAX)) return value(double(u));
      return value(int64_t(u));
    }
    case nlohmann::ordered_json::value_t::number_float:
      return value(j.get<double>());
    case nlohmann::ordered_json::value_t::string:
      return value(j.get_ref<const std::string&>());
    case nlohmann::ordered_json::value_t::array: {
      value_list items;
      items.reserve(j.size());
      for (const auto& e : j) items.push_back(from_json_at(e, depth + 1));
      return list(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      value_dict entries;
      entries.reserve(j.size());
      for (const auto& [k, e] : j.items()) entries.emplace_back(k, from_json_at(e, depth + 1));
      return dict(std::move(entries));
    }
    default:
      return value();  // binary and discarded values have no template meaning
  }
}

bool value::truthy() const {
  switch (kind_) {
    case kind::undefined:
    case kind::none:
      return false;
    case kind::boolean:
    case kind::integer:
      return int_ != 0;
    case kind::number:
      return number_ != 0.0;
    case kind::string:
      return !string_.empty();
    case kind::list:
      return !list_->empty();
    case kind::dict:
      return !dict_->empty();
    case kind::function:
      return true;
  }
  return false;
}

value* value::find(std::string_view key) const {
  if (kind_ != kind::dict) return nullptr;
  for (auto& [k, v] : *dict_) {
    if (k == key) return &v;
  }
  return nullptr;
}

std::string float_repr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d < 0 ? "-inf" : "inf";
  // Shortest round-trip digits, then Python's layout: fixed for exponents -4..15, else
  // scientific with a signed two-digit exponent.
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  std::string sign;
  if (sci[0] == '-') {
    sign = "-";
    sci.erase(0, 1);
  }
  const size_t e = sci.find('e');
  std::string digits = sci.substr(0, e);
  if (digits.size() > 1) digits.erase(1, 1);  // drop the '.'
  const int exponent = std::stoi(sci.substr(e + 1));
  if (exponent >= -4 && exponent < 16) {
    std::string out;
    if (exponent < 0) {
      out = "0." + std::string(size_t(-exponent - 1), '0') + digits;
    } else if (size_t(exponent) + 1 >= digits.size()) {
      out = digits + std::string(size_t(exponent) + 1 - digits.size(), '0') + ".0";
    } else {
      out = digits.substr(0, size_t(exponent) + 1) + "." + digits.substr(size_t(exponent) + 1);
    }
    return sign + out;
  }
  std::string mantissa = digits.substr(0, 1);
  if (digits.size() > 1) mantissa += "." + digits.substr(1);
  char exp_buf[16];
  std::snprintf(exp_buf, sizeof exp_buf, "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
  return sign + mantissa + exp_buf;
}

namespace {

std::string string_repr(const std::string& s) {
  const bool has_single = s.find('\'') != std::string::npos;
  const bool has_double = s.find('"') != std::string::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == quote || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (u < 0x20 || u == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", u);
      out += buf;
    } else {
      out += c;
    }
  }
  out += quote;
  return out;
}

}  // namespace

std::string value::str() const {
  switch (kind_) {
    case kind::undefined:
      return "";
    case kind::string:
      return string_;
    default:
      return repr();
  }
}

std::string value::repr() const {
  switch (kind_) {
    case kind::undefined:
      return "";
    case kind::none:
      return "None";
    case kind::boolean:
      return int_ ? "True" : "False";
    case kind::integer:
      return std::to_string(int_);
    case kind::number:
      return float_repr(number_);
    case kind::string:
      return string_repr(string_);
    case kind::list: {
      std::string out = tuple_ ? "(" : "[";
      for (size_t i = 0; i < list_->size(); ++i) {
        if (i > 0) out += ", ";
        out += (*list_)[i].repr();
      }
      if (tuple_ && list_->size() == 1) out += ",";
      out += tuple_ ? ")" : "]";
      return out;
    }
    case kind::dict: {
      if (namespace_) return "<Namespace>";
      std::string out = "{";
      for (size_t i = 0; i < dict_->size(); ++i) {
        if (i > 0) out += ", ";
        out += string_repr((*dict_)[i].first) + ": " + (*dict_)[i].second.repr();
      }
      return out + "}";
    }
    case kind::function:
      return "<function>";
  }
  return "";
}

std::string value::type_name() const {
  switch (kind_) {
    case kind::undefined:
      return "Undefined";
    case kind::none:
      return "NoneType";
    case kind::boolean:
      return "bool object";
    case kind::integer:
      return "int object";
    case kind::number:
      return "float object";
    case kind::string:
      return "str object";
    case kind::list:
      return tuple_ ? "tuple object" : "list object";
    case kind::dict:
      return namespace_ ? "Namespace object" : "dict object";
    case kind::function:
      return "function";
  }
  return "object";
}

bool equal(const value& a, const value& b) {
  if (a.is_numeric() && b.is_numeric()) {
    if (a.is_integer() && b.is_integer()) return a.as_int() == b.as_int();
    return a.as_number() == b.as_number();
  }
  if (a.type() != b.type()) return false;
  switch (a.type()) {
    case value::kind::undefined:
    case value::kind::none:
      return true;
    case value::kind::string:
      return a.as_string() == b.as_string();
    case value::kind::list: {
      const value_list& x = a.items();
      const value_list& y = b.items();
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i) {
        if (!equal(x[i], y[i])) return false;
      }
      return true;
    }
    case value::kind::dict: {
      // A namespace equals only itself, as a Python object without __eq__ does.
      if (a.is_namespace() || b.is_namespace()) return &a.entries() == &b.entries();
      if (a.entries().size() != b.entries().size()) return false;
      for (const auto& [k, v] : a.entries()) {
        const value* other = b.find(k);
        if (!other || !equal(v, *other)) return false;
      }
      return true;
    }
    case value::kind::function:
      return &a.callable() == &b.callable();
    default:
      return false;
  }
}

std::vector<std::string_view> code_points(std::string_view s) {
  std::vector<std::string_view> out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const auto lead = static_cast<unsigned char>(s[i]);
    size_t len = lead < 0x80           ? 1
                 : (lead >> 5) == 0x6  ? 2
                 : (lead >> 4) == 0xe  ? 3
                 : (lead >> 3) == 0x1e ? 4
                                       : 1;
    if (i + len > s.size()) len = 1;
    for (size_t k = 1; k < len; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) {
        len = 1;  // an invalid sequence: one byte at a time
        break;
      }
    }
    out.push_back(s.substr(i, len));
    i += len;
  }
  return out;
}

bool is_python_space(std::string_view cp) {
  if (cp.size() == 1) {
    const char c = cp[0];
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= '\x1c' && c <= '\x1f');
  }
  // The non-ASCII code points Python's str.isspace() accepts.
  static constexpr std::string_view unicode_spaces[] = {
      "\u0085", "\u00a0", "\u1680", "\u2000", "\u2001", "\u2002", "\u2003",
      "\u2004", "\u2005", "\u2006", "\u2007", "\u2008", "\u2009", "\u200a",
      "\u2028", "\u2029", "\u202f", "\u205f", "\u3000"};
  for (const std::string_view s : unicode_spaces) {
    if (cp == s) return true;
  }
  return false;
}

}  // namespace rbee::tmpl
