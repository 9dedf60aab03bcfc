#include "template/builtins.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <optional>

#include "template/ast.h"

namespace rbee::tmpl::detail {

namespace {

// ---- arguments ----

// The argument at `index` or named `name`, or nullptr.
const value* argument(const call_args& args, size_t index, std::string_view name) {
  for (const auto& [k, v] : args.named) {
    if (k == name) return &v;
  }
  return index < args.positional.size() ? &args.positional[index] : nullptr;
}

value argument_or(const call_args& args, size_t index, std::string_view name, value fallback) {
  const value* v = argument(args, index, name);
  return v ? *v : fallback;
}

bool flag(const call_args& args, size_t index, std::string_view name, bool fallback) {
  const value* v = argument(args, index, name);
  return v ? v->truthy() : fallback;
}

std::string string_argument(const call_args& args, size_t index, std::string_view name,
                            std::string_view what, builtin_env& env) {
  const value* v = argument(args, index, name);
  if (!v || !v->is_string())
    env.fail(std::string(what) + " needs a string argument '" + std::string(name) + "'");
  return v->as_string();
}

// ---- strings ----

std::string checked_concat(builtin_env& env, std::initializer_list<std::string_view> parts) {
  size_t total = 0;
  for (const std::string_view p : parts) total += p.size();
  if (total > env.max_string_bytes()) env.fail("a string would exceed the output limit");
  env.charge(total);
  std::string out;
  out.reserve(total);
  for (const std::string_view p : parts) out.append(p);
  return out;
}

char ascii_upper(char c) {
  return c >= 'a' && c <= 'z' ? char(c - 'a' + 'A') : c;
}
char ascii_lower(char c) {
  return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c;
}
bool ascii_letter(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

std::string to_upper(std::string s) {
  for (char& c : s) c = ascii_upper(c);
  return s;
}
std::string to_lower(std::string s) {
  for (char& c : s) c = ascii_lower(c);
  return s;
}

// Python's str.capitalize(): first character upper, the rest lower.
std::string capitalize(const std::string& s) {
  std::string out = to_lower(s);
  if (!out.empty()) out[0] = ascii_upper(out[0]);
  return out;
}

// Python's str.title(): a letter after a non-letter starts a word.
std::string python_title(const std::string& s) {
  std::string out = s;
  bool previous_letter = false;
  for (char& c : out) {
    c = previous_letter ? ascii_lower(c) : ascii_upper(c);
    previous_letter = ascii_letter(c);
  }
  return out;
}

// Jinja's title filter: words start after '-', whitespace or an opening bracket.
std::string jinja_title(const std::string& s) {
  std::string out = s;
  bool word_start = true;
  for (char& c : out) {
    const bool separator = c == '-' || c == ' ' || (c >= '\t' && c <= '\r') || c == '(' ||
                           c == '{' || c == '[' || c == '<';
    c = separator ? c : word_start ? ascii_upper(c) : ascii_lower(c);
    word_start = separator;
  }
  return out;
}

// Python's str.strip/lstrip/rstrip: whitespace, or any of the code points in `chars`.
std::string strip(const std::string& s, const value* chars, bool left, bool right) {
  const auto cps = code_points(s);
  const std::vector<std::string_view> set = chars && chars->is_string()
                                                ? code_points(chars->as_string())
                                                : std::vector<std::string_view>{};
  const bool by_chars = chars && chars->is_string();
  auto strippable = [&](std::string_view cp) {
    return by_chars ? std::find(set.begin(), set.end(), cp) != set.end() : is_python_space(cp);
  };
  size_t begin = 0;
  size_t end = cps.size();
  if (left) {
    while (begin < end && strippable(cps[begin])) ++begin;
  }
  if (right) {
    while (end > begin && strippable(cps[end - 1])) --end;
  }
  if (begin == end) return {};
  const char* first = cps[begin].data();
  const char* last = cps[end - 1].data() + cps[end - 1].size();
  return std::string(first, size_t(last - first));
}

value split(const std::string& s, const value* sep, int64_t max_split, builtin_env& env) {
  value_list parts;
  if (!sep || sep->is_none()) {
    // Runs of whitespace separate; leading and trailing whitespace yields nothing.
    const auto cps = code_points(s);
    size_t i = 0;
    while (i < cps.size()) {
      while (i < cps.size() && is_python_space(cps[i])) ++i;
      if (i == cps.size()) break;
      if (max_split >= 0 && int64_t(parts.size()) == max_split) {
        const char* rest = cps[i].data();
        parts.emplace_back(std::string(rest, size_t(s.data() + s.size() - rest)));
        break;
      }
      const char* start = cps[i].data();
      while (i < cps.size() && !is_python_space(cps[i])) ++i;
      const char* stop = i < cps.size() ? cps[i].data() : s.data() + s.size();
      parts.emplace_back(std::string(start, size_t(stop - start)));
    }
  } else {
    if (!sep->is_string()) env.fail("split() separator must be a string");
    const std::string& d = sep->as_string();
    if (d.empty()) env.fail("split() separator must not be empty");
    size_t start = 0;
    for (;;) {
      const size_t at = s.find(d, start);
      if (at == std::string::npos || (max_split >= 0 && int64_t(parts.size()) == max_split)) {
        parts.emplace_back(s.substr(start));
        break;
      }
      parts.emplace_back(s.substr(start, at - start));
      start = at + d.size();
    }
  }
  env.charge(s.size() + parts.size() * element_cost);
  return value::list(std::move(parts));
}

std::string replace(const std::string& s, const std::string& old, const std::string& with,
                    int64_t count, builtin_env& env) {
  std::string out;
  int64_t done = 0;
  auto append = [&](std::string_view piece) {
    if (out.size() + piece.size() > env.max_string_bytes()) {
      env.fail("a string would exceed the output limit");
    }
    env.charge(piece.size());
    out.append(piece);
  };
  if (old.empty()) {
    // Python inserts the replacement before every character and at the end.
    for (const std::string_view cp : code_points(s)) {
      if (count < 0 || done < count) {
        append(with);
        ++done;
      }
      append(cp);
    }
    if (count < 0 || done < count) append(with);
    return out;
  }
  size_t start = 0;
  for (;;) {
    const size_t at = s.find(old, start);
    if (at == std::string::npos || (count >= 0 && done == count)) {
      append(std::string_view(s).substr(start));
      return out;
    }
    append(std::string_view(s).substr(start, at - start));
    append(with);
    start = at + old.size();
    ++done;
  }
}

bool starts_or_ends_with(const std::string& s, const value& affix, bool at_start,
                         builtin_env& env) {
  auto matches = [&](const value& a) {
    if (!a.is_string()) env.fail("startswith/endswith takes a string or a tuple of strings");
    const std::string& x = a.as_string();
    if (x.size() > s.size()) return false;
    return at_start ? s.compare(0, x.size(), x) == 0
                    : s.compare(s.size() - x.size(), x.size(), x) == 0;
  };
  if (affix.is_list()) {
    for (const value& a : affix.items()) {
      if (matches(a)) return true;
    }
    return false;
  }
  return matches(affix);
}

std::string join(const value_list& items, const std::string& separator, builtin_env& env) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    const std::string piece = items[i].str();
    const size_t add = piece.size() + (i > 0 ? separator.size() : 0);
    if (out.size() + add > env.max_string_bytes()) {
      env.fail("a string would exceed the output limit");
    }
    env.charge(add);
    if (i > 0) out += separator;
    out += piece;
  }
  return out;
}

// ---- methods: obj.name(...) ----

value bound(native_function f) {
  return value::function(std::move(f));
}

value string_method(const std::string& s, const std::string& name, builtin_env& env) {
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    const bool left = name != "rstrip";
    const bool right = name != "lstrip";
    return bound([s, left, right](call_args& a) {
      return value(strip(s, argument(a, 0, "chars"), left, right));
    });
  }
  if (name == "split") {
    return bound([s, &env](call_args& a) {
      const value max_split = argument_or(a, 1, "maxsplit", value(-1));
      return split(s, argument(a, 0, "sep"), max_split.is_integer() ? max_split.as_int() : -1, env);
    });
  }
  if (name == "startswith" || name == "endswith") {
    const bool at_start = name == "startswith";
    return bound([s, at_start, &env](call_args& a) {
      if (a.positional.empty()) env.fail("startswith/endswith needs an argument");
      return value(starts_or_ends_with(s, a.positional[0], at_start, env));
    });
  }
  if (name == "upper") return bound([s](call_args&) { return value(to_upper(s)); });
  if (name == "lower") return bound([s](call_args&) { return value(to_lower(s)); });
  if (name == "title") return bound([s](call_args&) { return value(python_title(s)); });
  if (name == "capitalize") return bound([s](call_args&) { return value(capitalize(s)); });
  if (name == "replace") {
    return bound([s, &env](call_args& a) {
      const std::string old = string_argument(a, 0, "old", "replace()", env);
      const std::string with = string_argument(a, 1, "new", "replace()", env);
      const value count = argument_or(a, 2, "count", value(-1));
      return value(replace(s, old, with, count.is_integer() ? count.as_int() : -1, env));
    });
  }
  if (name == "find") {
    return bound([s, &env](call_args& a) {
      const std::string needle = string_argument(a, 0, "sub", "find()", env);
      const size_t at = s.find(needle);
      if (at == std::string::npos) return value(-1);
      return value(int64_t(code_points(std::string_view(s).substr(0, at)).size()));
    });
  }
  if (name == "join") {
    return bound([s, &env](call_args& a) {
      if (a.positional.empty()) env.fail("join() needs an iterable");
      return value(join(iterate(a.positional[0], env), s, env));
    });
  }
  return value::undefined("'str object' has no attribute '" + name + "'");
}

value dict_method(const value& d, const std::string& name, builtin_env& env) {
  if (name == "items") {
    return bound([d, &env](call_args&) {
      value_list pairs;
      for (const auto& [k, v] : d.entries()) pairs.push_back(value::list({value(k), v}, true));
      env.charge(pairs.size() * element_cost);
      return value::list(std::move(pairs));
    });
  }
  if (name == "keys") {
    return bound([d](call_args&) {
      value_list keys;
      for (const auto& entry : d.entries()) keys.emplace_back(entry.first);
      return value::list(std::move(keys));
    });
  }
  if (name == "values") {
    return bound([d](call_args&) {
      value_list values;
      for (const auto& entry : d.entries()) values.push_back(entry.second);
      return value::list(std::move(values));
    });
  }
  if (name == "get") {
    return bound([d, &env](call_args& a) {
      if (a.positional.empty()) env.fail("get() needs a key");
      const value fallback = a.positional.size() > 1 ? a.positional[1] : value::none();
      if (!a.positional[0].is_string()) return fallback;
      const value* v = d.find(a.positional[0].as_string());
      return v ? *v : fallback;
    });
  }
  return {};
}

// ---- filters ----

int64_t to_int(const value& v, int64_t fallback) {
  if (v.is_integer()) return v.as_int();
  if (v.type() == value::kind::number) {
    return std::isfinite(v.as_number()) ? int64_t(v.as_number()) : fallback;
  }
  if (v.is_string()) {
    const std::string s = strip(v.as_string(), nullptr, true, true);
    char* end = nullptr;
    errno = 0;
    const long long i = std::strtoll(s.c_str(), &end, 10);
    if (!s.empty() && end == s.c_str() + s.size() && errno == 0) return i;
    const double d = std::strtod(s.c_str(), &end);  // Jinja's int('3.7') is 3
    if (!s.empty() && end == s.c_str() + s.size() && std::isfinite(d)) return int64_t(d);
  }
  return fallback;
}

double to_float(const value& v, double fallback) {
  if (v.is_numeric()) return v.as_number();
  if (v.is_string()) {
    const std::string s = strip(v.as_string(), nullptr, true, true);
    char* end = nullptr;
    const double d = std::strtod(s.c_str(), &end);
    if (!s.empty() && end == s.c_str() + s.size()) return d;
  }
  return fallback;
}

// Follows a dotted attribute path ("function.name") with subscript semantics.
value attribute_path(const value& v, const std::string& path, builtin_env& env) {
  value current = v;
  size_t start = 0;
  for (;;) {
    const size_t dot = path.find('.', start);
    const std::string part = path.substr(start, dot == std::string::npos ? dot : dot - start);
    current = get_item(current, value(part), env);
    if (dot == std::string::npos) return current;
    start = dot + 1;
  }
}

// Sort key comparison for sort/dictsort/min/max: strings case-insensitively unless asked.
bool less_than(const value& a, const value& b, bool case_sensitive, builtin_env& env) {
  if (!case_sensitive && a.is_string() && b.is_string()) {
    return to_lower(a.as_string()) < to_lower(b.as_string());
  }
  return compare_values("<", a, b, env);
}

std::string indent(const std::string& s, const value& width, bool first, bool blank) {
  const std::string unit =
      width.is_string()
          ? width.as_string()
          : std::string(size_t(std::max<int64_t>(0, width.is_integer() ? width.as_int() : 4)), ' ');
  std::vector<std::string> lines;
  size_t start = 0;
  while (start <= s.size()) {
    const size_t nl = s.find('\n', start);
    if (nl == std::string::npos) {
      if (start < s.size()) lines.push_back(s.substr(start));
      break;
    }
    lines.push_back(s.substr(start, nl - start));
    start = nl + 1;
  }
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i > 0) {
      out += '\n';
      if (blank || !lines[i].empty()) out += unit;
    }
    out += lines[i];
  }
  if (first) out = unit + out;
  return out;
}

value round_filter(const value& input, const call_args& args, builtin_env& env) {
  if (!input.is_numeric()) env.fail("round needs a number, got " + input.type_name());
  const value precision = argument_or(args, 0, "precision", value(0));
  const value method = argument_or(args, 1, "method", value("common"));
  const double scale = std::pow(10.0, double(precision.is_integer() ? precision.as_int() : 0));
  const double x = input.as_number() * scale;
  double r;
  if (method.is_string() && method.as_string() == "ceil") {
    r = std::ceil(x);
  } else if (method.is_string() && method.as_string() == "floor") {
    r = std::floor(x);
  } else {
    r = std::nearbyint(x);  // Python's round(): ties to even
  }
  return value(r / scale);
}

value select_items(const value& input, const call_args& args, bool by_attribute, bool keep,
                   builtin_env& env) {
  size_t next = 0;
  std::string attribute;
  if (by_attribute) {
    if (args.positional.empty() || !args.positional[0].is_string()) {
      env.fail("selectattr/rejectattr need an attribute name");
    }
    attribute = args.positional[0].as_string();
    next = 1;
  }
  std::string test;
  call_args test_args;
  if (next < args.positional.size()) {
    if (!args.positional[next].is_string() || !is_known_test(args.positional[next].as_string())) {
      env.fail("unknown test " + args.positional[next].repr());
    }
    test = args.positional[next].as_string();
    test_args.positional.assign(args.positional.begin() + long(next) + 1, args.positional.end());
  }
  value_list out;
  for (const value& item : iterate(input, env)) {
    const value subject = by_attribute ? attribute_path(item, attribute, env) : item;
    const bool passes = test.empty() ? subject.truthy() : apply_test(test, subject, test_args, env);
    if (passes == keep) out.push_back(item);
  }
  return value::list(std::move(out));
}

value map_items(const value& input, const call_args& args, builtin_env& env) {
  value_list out;
  if (const value* attribute = argument(args, 99, "attribute")) {
    const value fallback = argument_or(args, 99, "default", value());
    for (const value& item : iterate(input, env)) {
      value v = attribute_path(item, attribute->str(), env);
      out.push_back(v.is_undefined() && !fallback.is_undefined() ? fallback : v);
    }
    return value::list(std::move(out));
  }
  if (args.positional.empty() || !args.positional[0].is_string() ||
      !is_known_filter(args.positional[0].as_string())) {
    env.fail("map() needs a filter name or attribute=");
  }
  const std::string filter = args.positional[0].as_string();
  call_args filter_args;
  filter_args.positional.assign(args.positional.begin() + 1, args.positional.end());
  for (const value& item : iterate(input, env)) {
    out.push_back(apply_filter(filter, item, filter_args, env));
  }
  return value::list(std::move(out));
}

value min_max(const value& input, const call_args& args, bool want_max, builtin_env& env) {
  const bool case_sensitive = flag(args, 0, "case_sensitive", false);
  const value attribute = argument_or(args, 1, "attribute", value());
  value best;
  value best_key;
  for (const value& item : iterate(input, env)) {
    const value key =
        attribute.is_string() ? attribute_path(item, attribute.as_string(), env) : item;
    if (best.is_undefined() || (want_max ? less_than(best_key, key, case_sensitive, env)
                                         : less_than(key, best_key, case_sensitive, env))) {
      best = item;
      best_key = key;
    }
  }
  return best.is_undefined() ? value::undefined("the sequence is empty") : best;
}

value sort_items(const value& input, const call_args& args, builtin_env& env) {
  const bool reverse = flag(args, 0, "reverse", false);
  const bool case_sensitive = flag(args, 1, "case_sensitive", false);
  const value attribute = argument_or(args, 2, "attribute", value());
  value_list items = iterate(input, env);
  auto key = [&](const value& v) {
    return attribute.is_string() ? attribute_path(v, attribute.as_string(), env) : v;
  };
  std::stable_sort(items.begin(), items.end(), [&](const value& a, const value& b) {
    return reverse ? less_than(key(b), key(a), case_sensitive, env)
                   : less_than(key(a), key(b), case_sensitive, env);
  });
  return value::list(std::move(items));
}

value json_filter(const value& input, const call_args& args, builtin_env& env) {
  json_format format;
  format.ensure_ascii = flag(args, 0, "ensure_ascii", false);
  const value indent_arg = argument_or(args, 1, "indent", value::none());
  if (indent_arg.is_integer()) {
    format.indent_set = true;
    format.indent = std::string(size_t(std::max<int64_t>(0, indent_arg.as_int())), ' ');
  } else if (indent_arg.is_string()) {
    format.indent_set = true;
    format.indent = indent_arg.as_string();
  }
  if (format.indent_set) format.item_separator = ",";
  const value separators = argument_or(args, 2, "separators", value::none());
  if (separators.is_list()) {
    if (separators.items().size() != 2 || !separators.items()[0].is_string() ||
        !separators.items()[1].is_string()) {
      env.fail("tojson separators must be two strings");
    }
    format.item_separator = separators.items()[0].as_string();
    format.key_separator = separators.items()[1].as_string();
  }
  format.sort_keys = flag(args, 3, "sort_keys", false);
  return value(to_json(input, format, env));
}

void json_string(std::string& out, const std::string& s, bool ensure_ascii) {
  out += '"';
  for (const std::string_view cp : code_points(s)) {
    const auto c = static_cast<unsigned char>(cp[0]);
    if (cp.size() == 1) {
      switch (c) {
        case '"':
          out += "\\\"";
          continue;
        case '\\':
          out += "\\\\";
          continue;
        case '\n':
          out += "\\n";
          continue;
        case '\r':
          out += "\\r";
          continue;
        case '\t':
          out += "\\t";
          continue;
        case '\b':
          out += "\\b";
          continue;
        case '\f':
          out += "\\f";
          continue;
        default:
          break;
      }
      if (c < 0x20 || (ensure_ascii && c >= 0x80)) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\u%04x", c);
        out += buf;
        continue;
      }
      out += cp;
      continue;
    }
    if (!ensure_ascii) {
      out += cp;
      continue;
    }
    uint32_t code = c & (0xff >> (cp.size() + 1));
    for (size_t i = 1; i < cp.size(); ++i) code = (code << 6) | (cp[i] & 0x3f);
    char buf[16];
    if (code >= 0x10000) {
      code -= 0x10000;
      std::snprintf(buf, sizeof buf, "\\u%04x\\u%04x", 0xd800 + (code >> 10),
                    0xdc00 + (code & 0x3ff));
    } else {
      std::snprintf(buf, sizeof buf, "\\u%04x", code);
    }
    out += buf;
  }
  out += '"';
}

void json_value(std::string& out, const value& v, const json_format& f, int depth,
                builtin_env& env) {
  if (out.size() > env.max_string_bytes()) env.fail("tojson output exceeds the output limit");
  auto newline = [&](int level) {
    if (!f.indent_set) return;
    out += '\n';
    for (int i = 0; i < level; ++i) out += f.indent;
  };
  switch (v.type()) {
    case value::kind::none:
      out += "null";
      return;
    case value::kind::boolean:
      out += v.as_int() ? "true" : "false";
      return;
    case value::kind::integer:
      out += std::to_string(v.as_int());
      return;
    case value::kind::number: {
      const double d = v.as_number();
      out += std::isnan(d)   ? "NaN"
             : std::isinf(d) ? (d < 0 ? "-Infinity" : "Infinity")
                             : float_repr(d);
      return;
    }
    case value::kind::string:
      json_string(out, v.as_string(), f.ensure_ascii);
      return;
    case value::kind::list: {
      if (v.items().empty()) {
        out += "[]";
        return;
      }
      out += '[';
      for (size_t i = 0; i < v.items().size(); ++i) {
        if (i > 0) out += f.item_separator;
        newline(depth + 1);
        json_value(out, v.items()[i], f, depth + 1, env);
      }
      newline(depth);
      out += ']';
      return;
    }
    case value::kind::dict: {
      if (v.is_namespace()) env.fail("Object of type Namespace is not JSON serializable");
      if (v.entries().empty()) {
        out += "{}";
        return;
      }
      std::vector<const std::pair<std::string, value>*> entries;
      for (const auto& e : v.entries()) entries.push_back(&e);
      if (f.sort_keys) {
        std::stable_sort(entries.begin(), entries.end(),
                         [](const auto* a, const auto* b) { return a->first < b->first; });
      }
      out += '{';
      for (size_t i = 0; i < entries.size(); ++i) {
        if (i > 0) out += f.item_separator;
        newline(depth + 1);
        json_string(out, entries[i]->first, f.ensure_ascii);
        out += f.key_separator;
        json_value(out, entries[i]->second, f, depth + 1, env);
      }
      newline(depth);
      out += '}';
      return;
    }
    case value::kind::undefined:
      env.fail("Object of type Undefined is not JSON serializable");
    case value::kind::function:
      env.fail("a function is not JSON serializable");
  }
}

}  // namespace

bool is_known_filter(std::string_view name) {
  static constexpr std::array<std::string_view, 36> names = {
      "abs",   "capitalize", "count",      "d",       "default", "dictsort",
      "first", "float",      "indent",     "int",     "items",   "join",
      "last",  "length",     "list",       "lower",   "map",     "max",
      "min",   "reject",     "rejectattr", "replace", "reverse", "round",
      "safe",  "select",     "selectattr", "sort",    "string",  "sum",
      "title", "tojson",     "trim",       "unique",  "upper",   "wordcount"};
  return std::find(names.begin(), names.end(), name) != names.end();
}

bool is_known_test(std::string_view name) {
  static constexpr std::array<std::string_view, 29> names = {
      "boolean", "callable", "defined",  "divisibleby", "eq",          "equalto",
      "even",    "false",    "float",    "ge",          "greaterthan", "gt",
      "in",      "integer",  "iterable", "le",          "lessthan",    "lower",
      "lt",      "mapping",  "ne",       "none",        "number",      "odd",
      "sameas",  "sequence", "string",   "true",        "undefined"};
  return std::find(names.begin(), names.end(), name) != names.end();
}

value apply_filter(std::string_view name, const value& input, call_args& args, builtin_env& env) {
  if (name == "default" || name == "d") {
    const bool boolean = flag(args, 1, "boolean", false);
    if (input.is_undefined() || (boolean && !input.truthy())) {
      return argument_or(args, 0, "default_value", value(""));
    }
    return input;
  }
  if (name == "trim") return value(strip(input.str(), argument(args, 0, "chars"), true, true));
  if (name == "length" || name == "count") return value(length_of(input, env));
  if (name == "tojson") return json_filter(input, args, env);
  if (name == "upper") return value(to_upper(input.str()));
  if (name == "lower") return value(to_lower(input.str()));
  if (name == "capitalize") return value(capitalize(input.str()));
  if (name == "title") return value(jinja_title(input.str()));
  if (name == "string") return value(input.str());
  if (name == "safe") return input.is_string() ? input : value(input.str());
  if (name == "first" || name == "last") {
    value_list items = iterate(input, env);
    if (items.empty()) return value::undefined("the sequence is empty");
    return name == "first" ? items.front() : items.back();
  }
  if (name == "join") {
    const value separator = argument_or(args, 0, "d", value(""));
    value_list items = iterate(input, env);
    if (const value* attribute = argument(args, 1, "attribute")) {
      for (value& item : items) item = attribute_path(item, attribute->str(), env);
    }
    return value(join(items, separator.str(), env));
  }
  if (name == "items") {
    if (input.is_undefined()) return value::list({});
    if (!input.is_dict()) env.fail("items filter needs a mapping, got " + input.type_name());
    call_args none;
    return dict_method(input, "items", env).callable()(none);
  }
  if (name == "list") return value::list(iterate(input, env));
  if (name == "int") {
    return value(to_int(input, argument_or(args, 0, "default", value(0)).as_int()));
  }
  if (name == "float")
    return value(to_float(input, argument_or(args, 0, "default", value(0.0)).as_number()));
  if (name == "replace") {
    const std::string old = string_argument(args, 0, "old", "replace", env);
    const std::string with = string_argument(args, 1, "new", "replace", env);
    const value count = argument_or(args, 2, "count", value(-1));
    return value(replace(input.str(), old, with, count.is_integer() ? count.as_int() : -1, env));
  }
  if (name == "round") return round_filter(input, args, env);
  if (name == "indent") {
    const std::string text = input.str();
    env.charge(text.size() * 2);
    return value(indent(text, argument_or(args, 0, "width", value(4)),
                        flag(args, 1, "first", false), flag(args, 2, "blank", false)));
  }
  if (name == "map") return map_items(input, args, env);
  if (name == "select" || name == "reject")
    return select_items(input, args, false, name == "select", env);
  if (name == "selectattr" || name == "rejectattr") {
    return select_items(input, args, true, name == "selectattr", env);
  }
  if (name == "unique") {
    const bool case_sensitive = flag(args, 0, "case_sensitive", false);
    const value attribute = argument_or(args, 1, "attribute", value());
    value_list out;
    value_list seen;
    for (const value& item : iterate(input, env)) {
      value key = attribute.is_string() ? attribute_path(item, attribute.as_string(), env) : item;
      if (!case_sensitive && key.is_string()) key = value(to_lower(key.as_string()));
      bool found = false;
      for (const value& s : seen) found = found || equal(s, key);
      if (!found) {
        seen.push_back(key);
        out.push_back(item);
      }
    }
    return value::list(std::move(out));
  }
  if (name == "dictsort") {
    if (!input.is_dict()) env.fail("dictsort needs a mapping, got " + input.type_name());
    const bool case_sensitive = flag(args, 0, "case_sensitive", false);
    const value by = argument_or(args, 1, "by", value("key"));
    const bool reverse = flag(args, 2, "reverse", false);
    const size_t position = by.is_string() && by.as_string() == "value" ? 1 : 0;
    call_args none;
    value pairs = dict_method(input, "items", env).callable()(none);
    value_list items = pairs.items();
    std::stable_sort(items.begin(), items.end(), [&](const value& a, const value& b) {
      const value& x = a.items()[position];
      const value& y = b.items()[position];
      return reverse ? less_than(y, x, case_sensitive, env) : less_than(x, y, case_sensitive, env);
    });
    return value::list(std::move(items));
  }
  if (name == "abs") {
    if (input.is_integer()) return value(input.as_int() < 0 ? -input.as_int() : input.as_int());
    if (input.is_numeric()) return value(std::fabs(input.as_number()));
    env.fail("bad operand type for abs(): " + input.type_name());
  }
  if (name == "sum") {
    const value attribute = argument_or(args, 0, "attribute", value());
    value total = argument_or(args, 1, "start", value(0));
    for (const value& item : iterate(input, env)) {
      total = binary_operation(
          "+", total,
          attribute.is_string() ? attribute_path(item, attribute.as_string(), env) : item, env);
    }
    return total;
  }
  if (name == "min" || name == "max") return min_max(input, args, name == "max", env);
  if (name == "reverse") {
    if (input.is_string()) {
      auto cps = code_points(input.as_string());
      std::string out;
      for (auto it = cps.rbegin(); it != cps.rend(); ++it) out.append(*it);
      return value(std::move(out));
    }
    value_list items = iterate(input, env);
    std::reverse(items.begin(), items.end());
    return value::list(std::move(items));
  }
  if (name == "sort") return sort_items(input, args, env);
  if (name == "wordcount") {
    return value(int64_t(split(input.str(), nullptr, -1, env).items().size()));
  }
  env.fail("unknown filter '" + std::string(name) + "'");
}

bool apply_test(std::string_view name, const value& input, call_args& args, builtin_env& env) {
  const value* arg = argument(args, 0, "value");
  auto need_arg = [&]() -> const value& {
    if (!arg) env.fail("test '" + std::string(name) + "' needs an argument");
    return *arg;
  };
  if (name == "defined") return !input.is_undefined();
  if (name == "undefined") return input.is_undefined();
  if (name == "none") return input.is_none();
  if (name == "string") return input.is_string();
  if (name == "number") return input.is_numeric();
  if (name == "integer") return input.type() == value::kind::integer;
  if (name == "float") return input.type() == value::kind::number;
  if (name == "boolean") return input.type() == value::kind::boolean;
  if (name == "true") return input.type() == value::kind::boolean && input.as_int() != 0;
  if (name == "false") return input.type() == value::kind::boolean && input.as_int() == 0;
  if (name == "mapping") return input.is_dict();
  if (name == "callable") return input.type() == value::kind::function;
  // Undefined iterates as empty and has a length, so Jinja counts it as both.
  if (name == "iterable") {
    return input.is_string() || input.is_list() || input.is_dict() || input.is_undefined();
  }
  if (name == "sequence") {
    return input.is_string() || input.is_list() || input.is_dict() || input.is_undefined();
  }
  if (name == "lower") return input.is_string() && to_lower(input.as_string()) == input.as_string();
  if (name == "upper") return input.is_string() && to_upper(input.as_string()) == input.as_string();
  if (name == "odd" || name == "even") {
    if (!input.is_integer()) env.fail("test '" + std::string(name) + "' needs an integer");
    return (input.as_int() % 2 != 0) == (name == "odd");
  }
  if (name == "divisibleby") {
    const value& d = need_arg();
    if (!input.is_integer() || !d.is_integer() || d.as_int() == 0) {
      env.fail("divisibleby needs non-zero integers");
    }
    return input.as_int() % d.as_int() == 0;
  }
  if (name == "equalto" || name == "eq") return equal(input, need_arg());
  if (name == "ne") return !equal(input, need_arg());
  if (name == "sameas") return equal(input, need_arg());
  if (name == "lt" || name == "lessthan") return compare_values("<", input, need_arg(), env);
  if (name == "le") return compare_values("<=", input, need_arg(), env);
  if (name == "gt" || name == "greaterthan") return compare_values(">", input, need_arg(), env);
  if (name == "ge") return compare_values(">=", input, need_arg(), env);
  if (name == "in") return compare_values("in", input, need_arg(), env);
  env.fail("unknown test '" + std::string(name) + "'");
}

value get_attribute(const value& obj, const std::string& name, builtin_env& env) {
  switch (obj.type()) {
    case value::kind::undefined:
      env.fail(obj.undefined_reason());
    case value::kind::string:
      return string_method(obj.as_string(), name, env);
    case value::kind::dict: {
      if (!obj.is_namespace()) {
        value method = dict_method(obj, name, env);
        if (!method.is_undefined()) return method;
      }
      if (const value* v = obj.find(name)) return *v;
      break;
    }
    default:
      break;
  }
  return value::undefined("'" + obj.type_name() + "' has no attribute '" + name + "'");
}

value get_item(const value& obj, const value& key, builtin_env& env) {
  switch (obj.type()) {
    case value::kind::undefined:
      env.fail(obj.undefined_reason());
    case value::kind::dict:
      if (key.is_string()) {
        if (const value* v = obj.find(key.as_string())) return *v;
      }
      return value::undefined("'" + obj.type_name() + "' has no attribute '" + key.str() + "'");
    case value::kind::list:
    case value::kind::string: {
      if (!key.is_integer()) {
        if (obj.is_string() && key.is_string()) return get_attribute(obj, key.as_string(), env);
        return value::undefined("'" + obj.type_name() + "' has no item " + key.repr());
      }
      std::vector<std::string_view> cps;
      if (obj.is_string()) cps = code_points(obj.as_string());
      const auto size = int64_t(obj.is_string() ? cps.size() : obj.items().size());
      int64_t i = key.as_int();
      if (i < 0) i += size;
      if (i < 0 || i >= size) {
        return value::undefined("'" + obj.type_name() + "' has no item " + key.repr());
      }
      return obj.is_string() ? value(std::string(cps[size_t(i)])) : obj.items()[size_t(i)];
    }
    default:
      return value::undefined("'" + obj.type_name() + "' has no item " + key.repr());
  }
}

value get_slice(const value& obj, const value& start, const value& stop, const value& step,
                builtin_env& env) {
  if (obj.is_undefined()) env.fail(obj.undefined_reason());
  if (!obj.is_string() && !obj.is_list()) env.fail("'" + obj.type_name() + "' cannot be sliced");
  auto bound_of = [&](const value& v) -> std::optional<int64_t> {
    if (v.is_undefined() || v.is_none()) return std::nullopt;
    if (!v.is_integer()) env.fail("slice indices must be integers");
    return v.as_int();
  };
  const int64_t s = bound_of(step).value_or(1);
  if (s == 0) env.fail("slice step cannot be zero");
  std::vector<std::string_view> cps;
  if (obj.is_string()) cps = code_points(obj.as_string());
  const auto size = int64_t(obj.is_string() ? cps.size() : obj.items().size());
  // Python's slice.indices().
  auto clamp = [&](std::optional<int64_t> v, int64_t fallback) {
    if (!v) return fallback;
    int64_t x = *v;
    if (x < 0) x += size;
    if (s > 0) return std::clamp<int64_t>(x, 0, size);
    return std::clamp<int64_t>(x, -1, size - 1);
  };
  const int64_t first = clamp(bound_of(start), s > 0 ? 0 : size - 1);
  const int64_t last = clamp(bound_of(stop), s > 0 ? size : -1);
  std::string text;
  value_list items;
  for (int64_t i = first; s > 0 ? i < last : i > last; i += s) {
    if (obj.is_string()) {
      text.append(cps[size_t(i)]);
    } else {
      items.push_back(obj.items()[size_t(i)]);
    }
  }
  env.charge(text.size() + items.size() * element_cost);
  if (obj.is_string()) return value(std::move(text));
  return value::list(std::move(items), obj.is_tuple());
}

namespace {

[[noreturn]] void unsupported(std::string_view op, const value& a, const value& b,
                              builtin_env& env) {
  if (a.is_undefined()) env.fail(a.undefined_reason());
  if (b.is_undefined()) env.fail(b.undefined_reason());
  env.fail("unsupported operand types for " + std::string(op) + ": '" + a.type_name() + "' and '" +
           b.type_name() + "'");
}

enum class integer_op { add, subtract, multiply };

value integer_arithmetic(integer_op op, int64_t a, int64_t b, builtin_env& env) {
  int64_t r = 0;
  const bool overflow = op == integer_op::add        ? __builtin_add_overflow(a, b, &r)
                        : op == integer_op::subtract ? __builtin_sub_overflow(a, b, &r)
                                                     : __builtin_mul_overflow(a, b, &r);
  if (overflow) env.fail("integer overflow");
  return value(r);
}

value repeat(const value& seq, int64_t n, builtin_env& env) {
  if (n <= 0) return seq.is_string() ? value("") : value::list({});
  const size_t unit = seq.is_string() ? seq.as_string().size() : seq.items().size();
  if (unit != 0 && uint64_t(n) > env.max_string_bytes() / unit) {
    env.fail("a repetition would exceed the output limit");
  }
  env.charge(unit * size_t(n) * (seq.is_string() ? 1 : element_cost));
  if (seq.is_string()) {
    std::string out;
    out.reserve(unit * size_t(n));
    for (int64_t i = 0; i < n; ++i) out += seq.as_string();
    return value(std::move(out));
  }
  value_list items;
  for (int64_t i = 0; i < n; ++i) items.insert(items.end(), seq.items().begin(), seq.items().end());
  return value::list(std::move(items));
}

}  // namespace

value binary_operation(std::string_view op, const value& a, const value& b, builtin_env& env) {
  if (op == "~") return value(checked_concat(env, {a.str(), b.str()}));
  const bool ints = a.is_integer() && b.is_integer();
  const bool numbers = a.is_numeric() && b.is_numeric();
  if (op == "+") {
    if (ints) return integer_arithmetic(integer_op::add, a.as_int(), b.as_int(), env);
    if (numbers) return value(a.as_number() + b.as_number());
    if (a.is_string() && b.is_string())
      return value(checked_concat(env, {a.as_string(), b.as_string()}));
    if (a.is_list() && b.is_list()) {
      value_list items = a.items();
      items.insert(items.end(), b.items().begin(), b.items().end());
      env.charge(items.size() * element_cost);
      return value::list(std::move(items), a.is_tuple() && b.is_tuple());
    }
  } else if (op == "-") {
    if (ints) return integer_arithmetic(integer_op::subtract, a.as_int(), b.as_int(), env);
    if (numbers) return value(a.as_number() - b.as_number());
  } else if (op == "*") {
    if (ints) return integer_arithmetic(integer_op::multiply, a.as_int(), b.as_int(), env);
    if (numbers) return value(a.as_number() * b.as_number());
    if ((a.is_string() || a.is_list()) && b.is_integer()) return repeat(a, b.as_int(), env);
    if ((b.is_string() || b.is_list()) && a.is_integer()) return repeat(b, a.as_int(), env);
  } else if (op == "/") {
    if (numbers) {
      if (b.as_number() == 0) env.fail("division by zero");
      return value(a.as_number() / b.as_number());
    }
  } else if (op == "//" || op == "%") {
    if (numbers && b.as_number() == 0) env.fail("integer division or modulo by zero");
    if (ints) {
      const int64_t x = a.as_int();
      const int64_t y = b.as_int();
      if (x == INT64_MIN && y == -1) env.fail("integer overflow");
      int64_t q = x / y;
      int64_t m = x % y;
      if (m != 0 && ((m < 0) != (y < 0))) {  // Python floors
        --q;
        m += y;
      }
      return value(op == "//" ? q : m);
    }
    if (numbers) {
      const double x = a.as_number();
      const double y = b.as_number();
      if (op == "//") return value(std::floor(x / y));
      double m = std::fmod(x, y);
      if (m != 0 && ((m < 0) != (y < 0))) m += y;
      return value(m);
    }
  } else if (op == "**") {
    if (ints && b.as_int() >= 0) {
      int64_t result = 1;
      for (int64_t i = 0; i < b.as_int(); ++i) {
        if (__builtin_mul_overflow(result, a.as_int(), &result)) env.fail("integer overflow");
        if (result == 0 || result == 1) break;
      }
      return value(result);
    }
    if (numbers) return value(std::pow(a.as_number(), b.as_number()));
  }
  unsupported(op, a, b, env);
}

bool compare_values(std::string_view op, const value& a, const value& b, builtin_env& env) {
  if (op == "==") return equal(a, b);
  if (op == "!=") return !equal(a, b);
  if (op == "in" || op == "not in") {
    bool found = false;
    if (b.is_string()) {
      if (!a.is_string())
        env.fail("'in <string>' requires a string on the left, got " + a.type_name());
      found = b.as_string().find(a.as_string()) != std::string::npos;
    } else if (b.is_list()) {
      for (const value& item : b.items()) found = found || equal(a, item);
    } else if (b.is_dict()) {
      found = a.is_string() && b.find(a.as_string()) != nullptr;
    } else if (!b.is_undefined()) {
      env.fail("argument of type '" + b.type_name() + "' is not iterable");
    }
    return op == "in" ? found : !found;
  }
  int order = 0;
  if (a.is_numeric() && b.is_numeric()) {
    if (a.is_integer() && b.is_integer()) {
      order = a.as_int() < b.as_int() ? -1 : a.as_int() > b.as_int() ? 1 : 0;
    } else {
      order = a.as_number() < b.as_number() ? -1 : a.as_number() > b.as_number() ? 1 : 0;
    }
  } else if (a.is_string() && b.is_string()) {
    // UTF-8 byte order is code point order, as Python compares.
    const int c = a.as_string().compare(b.as_string());
    order = c < 0 ? -1 : c > 0 ? 1 : 0;
  } else {
    if (a.is_undefined()) env.fail(a.undefined_reason());
    if (b.is_undefined()) env.fail(b.undefined_reason());
    env.fail("'" + std::string(op) + "' not supported between '" + a.type_name() + "' and '" +
             b.type_name() + "'");
  }
  if (op == "<") return order < 0;
  if (op == ">") return order > 0;
  if (op == "<=") return order <= 0;
  return order >= 0;
}

value_list iterate(const value& v, builtin_env& env) {
  switch (v.type()) {
    case value::kind::undefined:
      return {};
    case value::kind::list:
      env.charge(v.items().size() * element_cost);
      return v.items();
    case value::kind::dict: {
      env.charge(v.entries().size() * element_cost);
      value_list keys;
      for (const auto& entry : v.entries()) keys.emplace_back(entry.first);
      return keys;
    }
    case value::kind::string: {
      env.charge(v.as_string().size() * element_cost);
      value_list chars;
      for (const std::string_view cp : code_points(v.as_string()))
        chars.emplace_back(std::string(cp));
      return chars;
    }
    default:
      env.fail("'" + v.type_name() + "' is not iterable");
  }
}

std::string to_json(const value& v, const json_format& format, builtin_env& env) {
  std::string out;
  json_value(out, v, format, 0, env);
  env.charge(out.size());
  return out;
}

int64_t length_of(const value& v, builtin_env& env) {
  switch (v.type()) {
    case value::kind::undefined:
      return 0;
    case value::kind::string:
      return int64_t(code_points(v.as_string()).size());
    case value::kind::list:
      return int64_t(v.items().size());
    case value::kind::dict:
      return int64_t(v.entries().size());
    default:
      env.fail("object of type '" + v.type_name() + "' has no len()");
  }
}

}  // namespace rbee::tmpl::detail
