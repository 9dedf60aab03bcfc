#include "common/json.h"

#include <cmath>
#include <string>

namespace rbee::common {

namespace {

// Pointer to the field's value, or nullptr when absent or null.
const json* field_value(const json& body, std::string_view field) {
  if (!body.is_object()) return nullptr;
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

[[noreturn]] void wrong_type(std::string_view field, std::string_view expected, const json& got) {
  throw invalid_request(field,
                        "field '" + std::string(field) + "' must be " + std::string(expected) +
                            ", got " + json_type_name(got),
                        {{"expected", expected}, {"got", json_type_name(got)}});
}

std::string checked_string(const json& v, std::string_view field, size_t max_len) {
  if (!v.is_string()) wrong_type(field, "string", v);
  const auto& s = v.get_ref<const std::string&>();
  if (s.size() > max_len) {
    throw invalid_request(
        field,
        "field '" + std::string(field) + "' is longer than " + std::to_string(max_len) + " bytes",
        {{"max_length", max_len}});
  }
  return s;
}

}  // namespace

json parse_body(std::string_view body, bool allow_empty) {
  if (body.empty() && allow_empty) return json::object();
  json parsed;
  try {
    parsed = json::parse(body);
  } catch (const json::parse_error& e) {
    throw bad_request("malformed JSON at byte " + std::to_string(e.byte) + ": " + e.what(),
                      {{"position", e.byte}});
  } catch (const json::out_of_range& e) {
    // A number beyond double's range (1e400) is the client's error, like malformed JSON.
    throw bad_request(std::string("unusable JSON: ") + e.what());
  }
  if (!parsed.is_object()) {
    throw bad_request("request body must be a JSON object, got " + json_type_name(parsed),
                      {{"expected", "object"}, {"got", json_type_name(parsed)}});
  }
  return parsed;
}

std::string json_type_name(const json& v) {
  if (v.is_number_integer() || v.is_number_unsigned()) return "integer";
  if (v.is_number_float()) return "number";
  return v.type_name();  // null, boolean, string, array, object
}

std::string require_string(const json& body, std::string_view field, size_t max_len) {
  const json* v = field_value(body, field);
  if (!v) {
    throw invalid_request(field, "missing required field '" + std::string(field) + "'",
                          {{"expected", "string"}});
  }
  return checked_string(*v, field, max_len);
}

std::optional<std::string> optional_string(const json& body, std::string_view field,
                                           size_t max_len) {
  const json* v = field_value(body, field);
  if (!v) return std::nullopt;
  return checked_string(*v, field, max_len);
}

std::string string_or(const json& body, std::string_view field, std::string_view def,
                      size_t max_len) {
  auto v = optional_string(body, field, max_len);
  return v ? *v : std::string(def);
}

double number_in_range(const json& body, std::string_view field, double def, double min,
                       double max) {
  const json* v = field_value(body, field);
  if (!v) return def;
  if (!v->is_number()) wrong_type(field, "number", *v);
  double d = v->get<double>();
  if (!std::isfinite(d) || d < min || d > max) {
    throw invalid_request(field,
                          "field '" + std::string(field) + "' must be between " + json(min).dump() +
                              " and " + json(max).dump() + ", got " + v->dump(),
                          {{"min", min}, {"max", max}});
  }
  return d;
}

std::optional<int64_t> optional_int(const json& body, std::string_view field, int64_t min,
                                    int64_t max) {
  const json* v = field_value(body, field);
  if (!v) return std::nullopt;
  bool integral = v->is_number_integer() || v->is_number_unsigned();
  if (!integral && v->is_number_float()) {
    // 3.0 is an integer to a JSON user; 3.5 is not.
    double d = v->get<double>();
    integral = std::isfinite(d) && std::floor(d) == d && std::fabs(d) < 9.0e18;
  }
  if (!integral) wrong_type(field, "integer", *v);
  bool in_range;
  int64_t value = 0;
  if (v->is_number_unsigned()) {
    uint64_t u = v->get<uint64_t>();
    in_range = u <= static_cast<uint64_t>(INT64_MAX) && static_cast<int64_t>(u) >= min &&
               static_cast<int64_t>(u) <= max;
    value = static_cast<int64_t>(u);
  } else if (v->is_number_float()) {
    value = static_cast<int64_t>(v->get<double>());
    in_range = value >= min && value <= max;
  } else {
    value = v->get<int64_t>();
    in_range = value >= min && value <= max;
  }
  if (!in_range) {
    throw invalid_request(field,
                          "field '" + std::string(field) + "' must be between " +
                              std::to_string(min) + " and " + std::to_string(max) + ", got " +
                              v->dump(),
                          {{"min", min}, {"max", max}});
  }
  return value;
}

int64_t int_in_range(const json& body, std::string_view field, int64_t def, int64_t min,
                     int64_t max) {
  auto v = optional_int(body, field, min, max);
  return v ? *v : def;
}

int64_t require_int(const json& body, std::string_view field, int64_t min, int64_t max) {
  auto v = optional_int(body, field, min, max);
  if (!v) {
    throw invalid_request(field, "missing required field '" + std::string(field) + "'",
                          {{"expected", "integer"}});
  }
  return *v;
}

std::vector<std::string> string_array(const json& body, std::string_view field, size_t max_items,
                                      size_t max_len) {
  const json* v = field_value(body, field);
  if (!v) return {};
  if (v->is_string()) return {checked_string(*v, field, max_len)};
  if (!v->is_array()) wrong_type(field, "array of strings", *v);
  if (v->size() > max_items) {
    throw invalid_request(
        field,
        "field '" + std::string(field) + "' has more than " + std::to_string(max_items) + " items",
        {{"max_items", max_items}});
  }
  std::vector<std::string> out;
  out.reserve(v->size());
  for (size_t i = 0; i < v->size(); ++i) {
    const json& item = (*v)[i];
    if (!item.is_string()) {
      throw invalid_request(field,
                            "field '" + std::string(field) + "' item " + std::to_string(i) +
                                " must be a string, got " + json_type_name(item),
                            {{"expected", "string"}, {"index", i}});
    }
    out.push_back(checked_string(item, field, max_len));
  }
  return out;
}

bool optional_bool(const json& body, std::string_view field, bool def) {
  const json* v = field_value(body, field);
  if (!v) return def;
  if (!v->is_boolean()) wrong_type(field, "boolean", *v);
  return v->get<bool>();
}

const json& require_object(const json& body, std::string_view field) {
  const json* v = field_value(body, field);
  if (!v) {
    throw invalid_request(field, "missing required field '" + std::string(field) + "'",
                          {{"expected", "object"}});
  }
  if (!v->is_object()) wrong_type(field, "object", *v);
  return *v;
}

const json& require_array(const json& body, std::string_view field) {
  const json* v = field_value(body, field);
  if (!v) {
    throw invalid_request(field, "missing required field '" + std::string(field) + "'",
                          {{"expected", "array"}});
  }
  if (!v->is_array()) wrong_type(field, "array", *v);
  return *v;
}

bool present(const json& body, std::string_view field) {
  auto it = body.find(field);
  return it != body.end() && !it->is_null();
}

}  // namespace rbee::common
