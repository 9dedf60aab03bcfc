#pragma once
// JSON Schema -> grammar (grammar.h): the documents a constrained generation may produce.
// The grammar's language is a subset of what the schema accepts (properties come in the
// order the schema lists them, numbers have bounded digits, whitespace is bounded), so
// every document it allows validates. A keyword that would change validity and that we do
// not enforce is an error naming it, never ignored. docs/structured-outputs.md lists the
// subset.
//
// Whitespace: a structural gap (after '{', '[', ',', ':' and before '}', ']') may hold one
// space, or a newline and up to 40 spaces or tabs; nothing else, so a model cannot pad
// forever. The document starts at its first byte and ends at its last (no outer space).
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

#include "structured/grammar.h"

namespace rbee::structured {

// A schema we cannot compile: `keyword` names the keyword ("pattern", "$ref"), `path` the
// JSON pointer of the schema that holds it ("" for the root, "/properties/age").
struct schema_error : std::runtime_error {
  schema_error(std::string keyword, std::string path, const std::string& message);
  std::string keyword;
  std::string path;
};

struct json_schema_options {
  // OpenAI's strict mode: every listed property is required and no other may appear.
  bool strict = false;
};

// Any JSON object (OpenAI's response_format json_object).
grammar json_object_grammar();
// Throws schema_error.
grammar json_schema_grammar(const nlohmann::json& schema, const json_schema_options& options = {});

}  // namespace rbee::structured
