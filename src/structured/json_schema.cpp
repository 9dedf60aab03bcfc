#include "structured/json_schema.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <optional>
#include <set>
#include <string_view>

namespace rbee::structured {

schema_error::schema_error(std::string keyword, std::string path, const std::string& message)
    : std::runtime_error(message), keyword(std::move(keyword)), path(std::move(path)) {}

namespace {

using nlohmann::json;

// Digits a number may have: enough for any 64-bit integer and a double's precision, and a
// bound, so a model cannot write digits forever.
constexpr uint32_t max_int_digits = 20;
constexpr uint32_t max_fraction_digits = 17;
constexpr uint32_t max_exponent_digits = 3;
constexpr uint32_t max_indent = 40;
constexpr int max_depth = 64;
// Elements of the finished grammar: far beyond real schemas, small enough to compile fast.
constexpr size_t max_elements = 200'000;

// Keywords that only annotate: they never change which documents validate.
const std::set<std::string_view> annotation_keywords = {
    "title",    "description", "default",  "examples",  "$schema", "$id",
    "$comment", "deprecated",  "readOnly", "writeOnly", "$defs",   "definitions"};
// Keywords we enforce; any other keyword is refused.
const std::set<std::string_view> enforced_keywords = {
    "type",      "properties",  "required", "additionalProperties",
    "items",     "prefixItems", "minItems", "maxItems",
    "minLength", "maxLength",   "format",   "enum",
    "const",     "anyOf",       "oneOf",    "allOf",
    "$ref",      "nullable"};

const std::array<std::string_view, 7> type_names = {"object",  "array",   "string", "number",
                                                    "integer", "boolean", "null"};

std::string child(const std::string& path, std::string_view key) {
  std::string escaped;
  for (const char c : key) {
    if (c == '~')
      escaped += "~0";
    else if (c == '/')
      escaped += "~1";
    else
      escaped += c;
  }
  return path + "/" + escaped;
}

class compiler {
 public:
  compiler(const json& root, const json_schema_options& options) : root_(root), options_(options) {
    build_json_rules();
  }

  grammar finish(uint32_t root_rule) {
    if (b_.n_elements() > max_elements)
      throw schema_error("schema", "", "the schema is too large to compile");
    try {
      return b_.finish(root_rule);
    } catch (const grammar_error& e) {
      throw schema_error("$ref", "", std::string("the schema's references loop: ") + e.what());
    }
  }

  uint32_t any_object() const { return object_; }

  uint32_t compile(const json& s, const std::string& path, int depth) {
    if (depth > max_depth)
      throw schema_error("schema", path,
                         "the schema nests deeper than " + std::to_string(max_depth) + " levels");
    if (b_.n_elements() > max_elements)
      throw schema_error("schema", path, "the schema is too large to compile");
    if (s.is_boolean()) {
      if (!s.get<bool>()) throw schema_error("false", path, "schema false allows no value");
      return value_;
    }
    if (!s.is_object())
      throw schema_error("schema", path, "a schema must be an object or a boolean");
    for (const auto& [key, _] : s.items()) {
      if (!annotation_keywords.contains(key) && !enforced_keywords.contains(key))
        throw schema_error(key, path, "JSON-schema keyword '" + key + "' is not supported");
    }
    if (s.contains("$ref")) {
      refuse_beside(s, path, "$ref", {});
      return ref_rule(s["$ref"], path, depth);
    }
    if (s.contains("const") || s.contains("enum")) return enum_rule(s, path);
    for (const char* k : {"anyOf", "oneOf", "allOf"}) {
      if (s.contains(k)) {
        refuse_beside(s, path, k, {});
        return any_of_rule(s[k], child(path, k), k, depth);
      }
    }
    std::vector<sequence> alternatives;
    for (const std::string& type : types_of(s, path)) {
      alternatives.push_back({rule_item(type_rule(s, type, path, depth))});
    }
    return b_.add(alternatives);
  }

 private:
  // ---- the JSON language itself ----
  void build_json_rules() {
    const uint32_t indent_char = b_.add({{byte_item(' ')}, {byte_item('\t')}});
    ws_ =
        b_.add({{}, {byte_item(' ')}, {byte_item('\n'), repeat_item(indent_char, 0, max_indent)}});

    hex_ = b_.add({{range_item('0', '9')}, {range_item('a', 'f')}, {range_item('A', 'F')}});
    digit_ = b_.add({{range_item('0', '9')}});
    const auto cont = range_item(0x80, 0xBF);
    byte_set plain = range_item(0x20, 0x7F).bytes;
    plain.reset('"');
    plain.reset('\\');
    byte_set simple_escape;
    for (const char c : std::string_view("\"\\/bfnrt")) simple_escape.set(static_cast<uint8_t>(c));
    const uint32_t escape = b_.add(
        {{set_item(simple_escape)},
         {byte_item('u'), rule_item(hex_), rule_item(hex_), rule_item(hex_), rule_item(hex_)}});
    // One character: printable ASCII, an escape, or a well-formed UTF-8 sequence (no
    // overlong forms, no surrogates).
    char_ = b_.add({{set_item(plain)},
                    {byte_item('\\'), rule_item(escape)},
                    {range_item(0xC2, 0xDF), cont},
                    {byte_item(0xE0), range_item(0xA0, 0xBF), cont},
                    {range_item(0xE1, 0xEC), cont, cont},
                    {byte_item(0xED), range_item(0x80, 0x9F), cont},
                    {range_item(0xEE, 0xEF), cont, cont},
                    {byte_item(0xF0), range_item(0x90, 0xBF), cont, cont},
                    {range_item(0xF1, 0xF3), cont, cont, cont},
                    {byte_item(0xF4), range_item(0x80, 0x8F), cont, cont}});
    string_ = string_rule(0, unbounded);

    const uint32_t minus = b_.add({{}, {byte_item('-')}});
    const uint32_t int_part = b_.add(
        {{byte_item('0')}, {range_item('1', '9'), repeat_item(digit_, 0, max_int_digits - 1)}});
    const uint32_t fraction =
        b_.add({{}, {byte_item('.'), repeat_item(digit_, 1, max_fraction_digits)}});
    const uint32_t sign = b_.add({{}, {byte_item('+')}, {byte_item('-')}});
    byte_set e;
    e.set('e');
    e.set('E');
    const uint32_t exponent =
        b_.add({{}, {set_item(e), rule_item(sign), repeat_item(digit_, 1, max_exponent_digits)}});
    integer_ = b_.add({{rule_item(minus), rule_item(int_part)}});
    number_ =
        b_.add({{rule_item(minus), rule_item(int_part), rule_item(fraction), rule_item(exponent)}});
    boolean_ = b_.add({literal("true"), literal("false")});
    null_ = b_.add({literal("null")});

    value_ = b_.declare();
    object_ = map_rule(value_);
    array_ = list_rule(value_, 0, unbounded);
    b_.define(value_, {{rule_item(object_)},
                       {rule_item(array_)},
                       {rule_item(string_)},
                       {rule_item(number_)},
                       {rule_item(boolean_)},
                       {rule_item(null_)}});
  }

  item ws() const { return rule_item(ws_); }

  uint32_t string_rule(uint32_t min, uint32_t max) {
    return b_.add({{byte_item('"'), repeat_item(char_, min, max), byte_item('"')}});
  }

  // {"key": value, ...} with any keys.
  uint32_t map_rule(uint32_t value) {
    const uint32_t member =
        b_.add({{rule_item(string_), ws(), byte_item(':'), ws(), rule_item(value), ws()}});
    const uint32_t more = b_.add({{byte_item(','), ws(), rule_item(member)}});
    const uint32_t body = b_.add(
        {{byte_item('}')}, {rule_item(member), repeat_item(more, 0, unbounded), byte_item('}')}});
    return b_.add({{byte_item('{'), ws(), rule_item(body)}});
  }

  // [item, ...] with min..max items.
  uint32_t list_rule(uint32_t item_rule, uint32_t min, uint32_t max) {
    std::vector<sequence> body;
    if (min == 0) body.push_back({byte_item(']')});
    if (max > 0) {
      const uint32_t more = b_.add({{byte_item(','), ws(), rule_item(item_rule), ws()}});
      const uint32_t more_min = min > 0 ? min - 1 : 0;
      const uint32_t more_max = max == unbounded ? unbounded : max - 1;
      body.push_back(
          {rule_item(item_rule), ws(), repeat_item(more, more_min, more_max), byte_item(']')});
    }
    return b_.add({{byte_item('['), ws(), rule_item(b_.add(body))}});
  }

  // ---- schema keywords ----
  // Refuses enforced keywords beside `keyword` (other than `allowed`): combining them would
  // need an intersection of languages, which we do not build.
  void refuse_beside(const json& s, const std::string& path, std::string_view keyword,
                     const std::set<std::string_view>& allowed) {
    for (const auto& [key, _] : s.items()) {
      if (key == keyword || annotation_keywords.contains(key) || allowed.contains(key)) continue;
      throw schema_error(key, path,
                         "'" + key + "' beside '" + std::string(keyword) + "' is not supported");
    }
  }

  uint32_t ref_rule(const json& ref, const std::string& path, int depth) {
    if (!ref.is_string()) throw schema_error("$ref", path, "$ref must be a string");
    const std::string& target = ref.get_ref<const std::string&>();
    if (auto it = refs_.find(target); it != refs_.end()) return it->second;
    if (target.empty() || target[0] != '#')
      throw schema_error("$ref", path,
                         "$ref '" + target + "' is not local; only '#/$defs/...' is supported");
    const json* resolved = nullptr;
    try {
      const json::json_pointer pointer(target.substr(1));
      if (root_.contains(pointer)) resolved = &root_.at(pointer);
    } catch (const json::exception&) {
    }
    if (!resolved) throw schema_error("$ref", path, "$ref '" + target + "' does not resolve");
    // Declared before compiling the target, so recursive schemas refer back to it.
    const uint32_t rule = b_.declare();
    refs_[target] = rule;
    b_.define(rule, {{rule_item(compile(*resolved, target.substr(1), depth + 1))}});
    return rule;
  }

  uint32_t any_of_rule(const json& list, const std::string& path, std::string_view keyword,
                       int depth) {
    if (!list.is_array() || list.empty())
      throw schema_error(std::string(keyword), path,
                         std::string(keyword) + " must be a non-empty array of schemas");
    // allOf needs the intersection of its schemas: only the trivial one is taken.
    if (keyword == "allOf" && list.size() != 1)
      throw schema_error("allOf", path, "allOf with more than one schema is not supported");
    // oneOf is compiled as anyOf: a document matching two branches is not excluded.
    std::vector<sequence> alternatives;
    for (size_t i = 0; i < list.size(); ++i)
      alternatives.push_back(
          {rule_item(compile(list[i], child(path, std::to_string(i)), depth + 1))});
    return b_.add(alternatives);
  }

  static bool has_type(const json& value, std::string_view type) {
    if (type == "object") return value.is_object();
    if (type == "array") return value.is_array();
    if (type == "string") return value.is_string();
    if (type == "number") return value.is_number();
    if (type == "integer")
      return value.is_number_integer() ||
             (value.is_number_float() && std::floor(value.get<double>()) == value.get<double>());
    if (type == "boolean") return value.is_boolean();
    return value.is_null();
  }

  uint32_t enum_rule(const json& s, const std::string& path) {
    const bool is_const = s.contains("const");
    refuse_beside(s, path, is_const ? "const" : "enum", {"type", "nullable"});
    if (is_const && s.contains("enum"))
      throw schema_error("enum", path, "'enum' beside 'const' is not supported");
    std::vector<json> values;
    if (is_const) {
      values.push_back(s["const"]);
    } else {
      const json& list = s["enum"];
      if (!list.is_array() || list.empty())
        throw schema_error("enum", path, "enum must be a non-empty array");
      values.assign(list.begin(), list.end());
    }
    const std::vector<std::string> types =
        s.contains("type") ? types_of(s, path) : std::vector<std::string>{};
    std::vector<sequence> alternatives;
    for (const json& v : values) {
      const bool typed = types.empty() || std::any_of(types.begin(), types.end(),
                                                      [&](auto& t) { return has_type(v, t); });
      if (typed) alternatives.push_back(literal(v.dump()));
    }
    if (alternatives.empty())
      throw schema_error(is_const ? "const" : "enum", path, "no value of the enum has the type");
    return b_.add(alternatives);
  }

  // The types the schema allows: `type` (a name or a list), else what its keywords imply,
  // else any; `nullable: true` adds null.
  std::vector<std::string> types_of(const json& s, const std::string& path) {
    std::vector<std::string> types;
    auto add = [&](const json& t) {
      if (!t.is_string() ||
          std::find(type_names.begin(), type_names.end(), t.get<std::string>()) == type_names.end())
        throw schema_error("type", path,
                           "type must be one of object, array, string, number, "
                           "integer, boolean, null");
      if (std::find(types.begin(), types.end(), t.get<std::string>()) == types.end())
        types.push_back(t.get<std::string>());
    };
    if (s.contains("type")) {
      const json& t = s["type"];
      if (t.is_array()) {
        if (t.empty()) throw schema_error("type", path, "type must not be an empty list");
        for (const json& each : t) add(each);
      } else {
        add(t);
      }
    } else if (s.contains("properties") || s.contains("required") ||
               s.contains("additionalProperties")) {
      types.push_back("object");
    } else if (s.contains("items") || s.contains("prefixItems") || s.contains("minItems") ||
               s.contains("maxItems")) {
      types.push_back("array");
    } else if (s.contains("minLength") || s.contains("maxLength") || s.contains("format")) {
      types.push_back("string");
    } else {
      types.assign(type_names.begin(), type_names.end());
      std::erase(types, "integer");  // number covers it
    }
    if (s.contains("nullable")) {
      if (!s["nullable"].is_boolean())
        throw schema_error("nullable", path, "nullable must be a boolean");
      if (s["nullable"].get<bool>() && std::find(types.begin(), types.end(), "null") == types.end())
        types.push_back("null");
    }
    return types;
  }

  uint32_t type_rule(const json& s, const std::string& type, const std::string& path, int depth) {
    if (type == "object") return object_rule(s, path, depth);
    if (type == "array") return array_rule(s, path, depth);
    if (type == "string") return string_schema_rule(s, path);
    if (type == "number") return number_;
    if (type == "integer") return integer_;
    if (type == "boolean") return boolean_;
    return null_;
  }

  std::optional<uint32_t> count_keyword(const json& s, const char* keyword,
                                        const std::string& path) {
    if (!s.contains(keyword)) return std::nullopt;
    const json& v = s[keyword];
    if (!v.is_number_unsigned() && !(v.is_number_integer() && v.get<int64_t>() >= 0))
      throw schema_error(keyword, path, std::string(keyword) + " must be a non-negative integer");
    const uint64_t n = v.get<uint64_t>();
    if (n >= unbounded) throw schema_error(keyword, path, std::string(keyword) + " is too large");
    return static_cast<uint32_t>(n);
  }

  uint32_t object_rule(const json& s, const std::string& path, int depth) {
    const json* properties = s.contains("properties") ? &s["properties"] : nullptr;
    if (properties && !properties->is_object())
      throw schema_error("properties", path, "properties must be an object");
    std::vector<std::string> required;
    if (s.contains("required")) {
      const json& r = s["required"];
      if (!r.is_array()) throw schema_error("required", path, "required must be an array");
      for (const json& name : r) {
        if (!name.is_string())
          throw schema_error("required", path, "required must list property names");
        required.push_back(name.get<std::string>());
      }
    }
    const json additional = s.value("additionalProperties", json(true));
    if (!additional.is_boolean() && !additional.is_object())
      throw schema_error("additionalProperties", path,
                         "additionalProperties must be a boolean or a schema");
    const bool listed = properties || !required.empty();
    if (!listed) {
      if (additional.is_boolean()) return additional.get<bool>() ? object_ : empty_object();
      return map_rule(compile(additional, child(path, "additionalProperties"), depth + 1));
    }
    if (s.contains("additionalProperties") && additional != json(false) && !options_.strict)
      throw schema_error("additionalProperties", path,
                         "additional properties beside the listed ones are not supported; set "
                         "additionalProperties to false");

    // Listed properties in order, then required names without a schema.
    struct property {
      std::string name;
      uint32_t value;
      bool required;
    };
    std::vector<property> props;
    auto is_required = [&](const std::string& name) {
      return options_.strict || std::find(required.begin(), required.end(), name) != required.end();
    };
    if (properties) {
      for (const auto& [name, schema] : properties->items()) {
        props.push_back({name, compile(schema, child(child(path, "properties"), name), depth + 1),
                         is_required(name)});
      }
    }
    for (const std::string& name : required) {
      if (!properties || !properties->contains(name)) props.push_back({name, value_, true});
    }
    // first[i]: properties i.. when none was written yet; after[i]: when one was (each is
    // preceded by a comma). Optional properties may be left out.
    const size_t n = props.size();
    std::vector<uint32_t> first(n + 1), after(n + 1);
    first[n] = b_.add({{}});
    after[n] = first[n];
    for (size_t i = n; i-- > 0;) {
      const sequence member = literal(json(props[i].name).dump()) +
                              sequence{ws(), byte_item(':'), ws(), rule_item(props[i].value), ws()};
      const sequence written = member + rule_item(after[i + 1]);
      std::vector<sequence> first_alts = {written};
      std::vector<sequence> after_alts = {sequence{byte_item(','), ws()} + written};
      if (!props[i].required) {
        first_alts.push_back({rule_item(first[i + 1])});
        after_alts.push_back({rule_item(after[i + 1])});
      }
      first[i] = b_.add(first_alts);
      after[i] = b_.add(after_alts);
    }
    return b_.add({{byte_item('{'), ws(), rule_item(first[0]), byte_item('}')}});
  }

  uint32_t empty_object() { return b_.add({{byte_item('{'), ws(), byte_item('}')}}); }

  uint32_t array_rule(const json& s, const std::string& path, int depth) {
    const uint32_t min = count_keyword(s, "minItems", path).value_or(0);
    uint32_t max = count_keyword(s, "maxItems", path).value_or(unbounded);
    if (min > max) throw schema_error("minItems", path, "minItems is above maxItems");
    bool more_items = true;  // items beyond the prefix are allowed
    uint32_t item_rule = value_;
    if (s.contains("items")) {
      const json& items = s["items"];
      if (items.is_boolean() && !items.get<bool>())
        more_items = false;
      else
        item_rule = compile(items, child(path, "items"), depth + 1);
    }
    std::vector<uint32_t> prefix;
    if (s.contains("prefixItems")) {
      const json& list = s["prefixItems"];
      if (!list.is_array()) throw schema_error("prefixItems", path, "prefixItems must be an array");
      for (size_t i = 0; i < list.size() && prefix.size() < max; ++i)
        prefix.push_back(
            compile(list[i], child(child(path, "prefixItems"), std::to_string(i)), depth + 1));
    }
    const uint32_t k = static_cast<uint32_t>(prefix.size());
    if (!more_items) {
      max = std::min(max, k);
      if (min > max)
        throw schema_error("minItems", path, "minItems asks for more items than the array allows");
    }
    if (k == 0) return more_items ? list_rule(item_rule, min, max) : empty_array();

    // Items after the prefix: ", item" repeated to reach min..max.
    sequence rest;
    if (more_items && max > k) {
      const uint32_t more = b_.add({{byte_item(','), ws(), rule_item(item_rule), ws()}});
      rest.push_back(
          repeat_item(more, min > k ? min - k : 0, max == unbounded ? unbounded : max - k));
    }
    // chain[j]: j prefix items written; the next one, or the end once min is met.
    uint32_t next = b_.add({rest});
    for (uint32_t j = k - 1; j >= 1; --j) {
      std::vector<sequence> alts = {
          {byte_item(','), ws(), rule_item(prefix[j]), ws(), rule_item(next)}};
      if (j >= min) alts.push_back({});
      next = b_.add(alts);
    }
    std::vector<sequence> body = {{rule_item(prefix[0]), ws(), rule_item(next), byte_item(']')}};
    if (min == 0) body.push_back({byte_item(']')});
    return b_.add({{byte_item('['), ws(), rule_item(b_.add(body))}});
  }

  uint32_t empty_array() { return b_.add({{byte_item('['), ws(), byte_item(']')}}); }

  uint32_t string_schema_rule(const json& s, const std::string& path) {
    const uint32_t min = count_keyword(s, "minLength", path).value_or(0);
    const uint32_t max = count_keyword(s, "maxLength", path).value_or(unbounded);
    if (min > max) throw schema_error("minLength", path, "minLength is above maxLength");
    if (!s.contains("format"))
      return min == 0 && max == unbounded ? string_ : string_rule(min, max);
    if (s.contains("minLength") || s.contains("maxLength"))
      throw schema_error("format", path, "format beside minLength or maxLength is not supported");
    if (!s["format"].is_string()) throw schema_error("format", path, "format must be a string");
    const std::string format = s["format"].get<std::string>();
    sequence body;
    if (format == "date")
      body = date();
    else if (format == "time")
      body = time();
    else if (format == "date-time")
      body = date() + byte_item('T') + time();
    else if (format == "uuid")
      body = uuid();
    else
      throw schema_error(
          "format", path,
          "format '" + format + "' is not supported (date, time, date-time, uuid are)");
    return b_.add({sequence{byte_item('"')} + body + byte_item('"')});
  }

  sequence digits(uint32_t n) const { return sequence(n, range_item('0', '9')); }

  sequence date() {
    const uint32_t month =
        b_.add({{byte_item('0'), range_item('1', '9')}, {byte_item('1'), range_item('0', '2')}});
    const uint32_t day = b_.add({{byte_item('0'), range_item('1', '9')},
                                 {range_item('1', '2'), range_item('0', '9')},
                                 {byte_item('3'), range_item('0', '1')}});
    return digits(4) + byte_item('-') + rule_item(month) + byte_item('-') + rule_item(day);
  }

  sequence time() {
    const uint32_t hour = b_.add(
        {{range_item('0', '1'), range_item('0', '9')}, {byte_item('2'), range_item('0', '3')}});
    const sequence minute = {range_item('0', '5'), range_item('0', '9')};
    const uint32_t fraction = b_.add({{}, {byte_item('.'), repeat_item(digit_, 1, 9)}});
    byte_set sign;
    sign.set('+');
    sign.set('-');
    const uint32_t zone = b_.add(
        {{byte_item('Z')}, sequence{set_item(sign), rule_item(hour), byte_item(':')} + minute});
    return sequence{rule_item(hour), byte_item(':')} + minute + byte_item(':') + minute +
           rule_item(fraction) + rule_item(zone);
  }

  sequence uuid() const {
    sequence s;
    for (const uint32_t group : {8u, 4u, 4u, 4u, 12u}) {
      if (!s.empty()) s.push_back(byte_item('-'));
      for (uint32_t i = 0; i < group; ++i) s.push_back(rule_item(hex_));
    }
    return s;
  }

  const json& root_;
  json_schema_options options_;
  grammar_builder b_;
  std::map<std::string, uint32_t> refs_;
  uint32_t ws_ = 0, hex_ = 0, digit_ = 0, char_ = 0, string_ = 0;
  uint32_t integer_ = 0, number_ = 0, boolean_ = 0, null_ = 0;
  uint32_t value_ = 0, object_ = 0, array_ = 0;
};

}  // namespace

grammar json_object_grammar() {
  const json none;
  compiler c(none, {});
  return c.finish(c.any_object());
}

grammar json_schema_grammar(const json& schema, const json_schema_options& options) {
  compiler c(schema, options);
  return c.finish(c.compile(schema, "", 0));
}

}  // namespace rbee::structured
