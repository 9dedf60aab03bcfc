#pragma once
// JSON alias plus validation helpers for request bodies. Every helper throws
// http_error 400 INVALID_REQUEST with details {"field": "<name>", "expected": "<type>", ...};
// a missing optional field yields the default; unknown fields are ignored.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/errors.h"

namespace rbee::common {

using json = nlohmann::json;

// Parses an HTTP body; malformed JSON -> 400 INVALID_REQUEST with the byte position.
// An empty body parses as {} when allow_empty is set. A non-object top level is a 400.
json parse_body(std::string_view body, bool allow_empty = false);

// Name of a JSON value's type as users read it ("string", "number", "object", ...).
std::string json_type_name(const json& v);

std::string require_string(const json& body, std::string_view field, size_t max_len = 1 << 20);
std::optional<std::string> optional_string(const json& body, std::string_view field,
                                           size_t max_len = 1 << 20);
std::string string_or(const json& body, std::string_view field, std::string_view def,
                      size_t max_len = 1 << 20);

// Missing or null -> def; otherwise must be a number within [min, max].
double number_in_range(const json& body, std::string_view field, double def, double min,
                       double max);
// Missing or null -> def; otherwise must be an integer (no fraction) within [min, max].
int64_t int_in_range(const json& body, std::string_view field, int64_t def, int64_t min,
                     int64_t max);
// Like int_in_range but the field must be present.
int64_t require_int(const json& body, std::string_view field, int64_t min, int64_t max);
std::optional<int64_t> optional_int(const json& body, std::string_view field, int64_t min,
                                    int64_t max);

// Missing or null -> empty; a single string is accepted as a one-element array
// (OpenAI's "stop" allows both).
std::vector<std::string> string_array(const json& body, std::string_view field, size_t max_items,
                                      size_t max_len);

bool optional_bool(const json& body, std::string_view field, bool def);

// The field is there and not null (absent and null both mean "not given").
bool present(const json& body, std::string_view field);

// Must be present and a JSON object/array respectively; returns a reference into body.
const json& require_object(const json& body, std::string_view field);
const json& require_array(const json& body, std::string_view field);

}  // namespace rbee::common
