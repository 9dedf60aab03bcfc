#include "structured/json_schema.h"

#include <memory>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "structured/matcher.h"

namespace rbee::structured {
namespace {

using nlohmann::json;

// The whole text is a complete document of the grammar.
bool accepts(const grammar& g, std::string_view text) {
  matcher m(std::make_shared<const grammar>(g));
  return m.accept(text) && m.complete();
}

grammar schema(std::string_view text, json_schema_options options = {}) {
  return json_schema_grammar(json::parse(text), options);
}

// The schema_error's keyword and path for a schema that does not compile.
std::pair<std::string, std::string> error_of(std::string_view text) {
  try {
    schema(text);
  } catch (const schema_error& e) {
    return {e.keyword, e.path};
  }
  return {"(compiled)", ""};
}

TEST(JsonObjectGrammar, AcceptsObjectsWithBoundedWhitespace) {
  const grammar g = json_object_grammar();
  EXPECT_TRUE(accepts(g, "{}"));
  EXPECT_TRUE(accepts(g, "{ }"));
  EXPECT_TRUE(accepts(g, R"({"a":1})"));
  EXPECT_TRUE(accepts(g, R"({"a": [1, -2.5e3, {"b": null}], "c": "x\u00e9\n", "d": true})"));
  EXPECT_TRUE(
      accepts(g, "{\n  \"a\": {\n    \"b\": \"\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\"\n  }\n}"));
  EXPECT_TRUE(accepts(g, "{\n" + std::string(40, ' ') + "\"a\":1}"));
  EXPECT_FALSE(accepts(g, "{\n" + std::string(41, ' ') + "\"a\":1}"));
  EXPECT_FALSE(accepts(g, "{  }"));  // two spaces: not one space, not a newline
  EXPECT_FALSE(accepts(g, "[]"));
  EXPECT_FALSE(accepts(g, " {}"));
  EXPECT_FALSE(accepts(g, "{} "));
  EXPECT_FALSE(accepts(g, R"({"a":})"));
  EXPECT_FALSE(accepts(g, R"({"a":1,})"));
  EXPECT_FALSE(accepts(g, R"({a:1})"));
  EXPECT_FALSE(accepts(g, R"({"a":01})"));
  EXPECT_FALSE(accepts(g, R"({"a":1.})"));
  EXPECT_FALSE(accepts(g, R"({"a":"\x"})"));
  EXPECT_FALSE(accepts(g, "{\"a\":\"\x01\"}"));          // control character unescaped
  EXPECT_FALSE(accepts(g, "{\"a\":\"\xC0\xAF\"}"));      // overlong UTF-8
  EXPECT_FALSE(accepts(g, "{\"a\":\"\xED\xA0\x80\"}"));  // a surrogate
  EXPECT_FALSE(accepts(g, R"({"a":1)"));                 // incomplete
}

TEST(JsonSchemaGrammar, ScalarTypes) {
  EXPECT_TRUE(accepts(schema(R"({"type":"string"})"), R"("hi \"there\"")"));
  EXPECT_FALSE(accepts(schema(R"({"type":"string"})"), "1"));
  EXPECT_TRUE(accepts(schema(R"({"type":"number"})"), "-0.5E+12"));
  EXPECT_TRUE(accepts(schema(R"({"type":"number"})"), "-0"));
  EXPECT_FALSE(accepts(schema(R"({"type":"number"})"), "+1"));
  EXPECT_TRUE(accepts(schema(R"({"type":"integer"})"), "-42"));
  EXPECT_FALSE(accepts(schema(R"({"type":"integer"})"), "4.2"));
  EXPECT_FALSE(accepts(schema(R"({"type":"integer"})"), std::string(21, '9')));
  EXPECT_TRUE(accepts(schema(R"({"type":"integer"})"), std::string(20, '9')));
  EXPECT_TRUE(accepts(schema(R"({"type":"boolean"})"), "false"));
  EXPECT_FALSE(accepts(schema(R"({"type":"boolean"})"), "null"));
  EXPECT_TRUE(accepts(schema(R"({"type":"null"})"), "null"));
  const grammar either = schema(R"({"type":["string","null"]})");
  EXPECT_TRUE(accepts(either, "null"));
  EXPECT_TRUE(accepts(either, R"("x")"));
  EXPECT_FALSE(accepts(either, "1"));
  const grammar nullable = schema(R"({"type":"integer","nullable":true})");
  EXPECT_TRUE(accepts(nullable, "null"));
  EXPECT_TRUE(accepts(nullable, "7"));
  EXPECT_TRUE(accepts(schema("{}"), R"([1,"a",{"b":[]}])"));
  EXPECT_TRUE(accepts(schema("true"), "12"));
}

TEST(JsonSchemaGrammar, PropertiesInOrderRequiredAndOptional) {
  const grammar g = schema(R"({"type":"object",
      "properties":{"age":{"type":"integer"},"name":{"type":"string"}},
      "required":["name"], "additionalProperties": false})");
  EXPECT_TRUE(accepts(g, R"({"name":"Ann"})"));
  EXPECT_TRUE(accepts(g, R"({"age":3,"name":"Ann"})"));
  EXPECT_TRUE(accepts(g, "{\n  \"age\": 3,\n  \"name\": \"Ann\"\n}"));
  EXPECT_FALSE(accepts(g, R"({"age":3})"));               // name is required
  EXPECT_FALSE(accepts(g, R"({"name":"Ann","x":1})"));    // no other property
  EXPECT_FALSE(accepts(g, R"({"age":"3","name":"A"})"));  // age is an integer
  EXPECT_FALSE(accepts(g, R"({})"));
  EXPECT_FALSE(accepts(g, R"({,"name":"A"})"));
}

TEST(JsonSchemaGrammar, StrictMakesEveryPropertyRequired) {
  const char* text =
      R"({"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"integer"}},
      "additionalProperties": false})";
  EXPECT_TRUE(accepts(schema(text), R"({"a":1})"));
  EXPECT_TRUE(accepts(schema(text), R"({})"));
  EXPECT_FALSE(accepts(schema(text, {.strict = true}), R"({"a":1})"));
  EXPECT_TRUE(accepts(schema(text, {.strict = true}), R"({"a":1,"b":2})"));
}

TEST(JsonSchemaGrammar, RequiredWithoutSchemaAndMaps) {
  EXPECT_TRUE(accepts(schema(R"({"required":["x"]})"), R"({"x":[true]})"));
  EXPECT_FALSE(accepts(schema(R"({"required":["x"]})"), R"({})"));
  const grammar map = schema(R"({"type":"object","additionalProperties":{"type":"number"}})");
  EXPECT_TRUE(accepts(map, R"({"a":1,"b":2.5})"));
  EXPECT_TRUE(accepts(map, R"({})"));
  EXPECT_FALSE(accepts(map, R"({"a":"1"})"));
  EXPECT_TRUE(accepts(schema(R"({"type":"object","additionalProperties":false})"), "{}"));
  EXPECT_FALSE(accepts(schema(R"({"type":"object","additionalProperties":false})"), R"({"a":1})"));
}

TEST(JsonSchemaGrammar, Arrays) {
  const grammar g =
      schema(R"({"type":"array","items":{"type":"integer"},"minItems":2,"maxItems":3})");
  EXPECT_FALSE(accepts(g, "[]"));
  EXPECT_FALSE(accepts(g, "[1]"));
  EXPECT_TRUE(accepts(g, "[1,2]"));
  EXPECT_TRUE(accepts(g, "[1, 2, 3]"));
  EXPECT_FALSE(accepts(g, "[1,2,3,4]"));
  EXPECT_FALSE(accepts(g, R"([1,"2"])"));
  const grammar any = schema(R"({"type":"array"})");
  EXPECT_TRUE(accepts(any, "[]"));
  EXPECT_TRUE(accepts(any, R"([1,"a",null])"));
  const grammar tuple =
      schema(R"({"type":"array","prefixItems":[{"type":"string"},{"type":"integer"}],
      "items":false,"minItems":1})");
  EXPECT_FALSE(accepts(tuple, "[]"));
  EXPECT_TRUE(accepts(tuple, R"(["a"])"));
  EXPECT_TRUE(accepts(tuple, R"(["a",1])"));
  EXPECT_FALSE(accepts(tuple, R"(["a",1,2])"));
  EXPECT_FALSE(accepts(tuple, R"([1])"));
  const grammar open = schema(R"({"prefixItems":[{"type":"string"}],"items":{"type":"null"}})");
  EXPECT_TRUE(accepts(open, R"(["a",null,null])"));
  EXPECT_FALSE(accepts(open, R"(["a",1])"));
}

TEST(JsonSchemaGrammar, StringLengthCountsCharacters) {
  const grammar g = schema(R"({"type":"string","minLength":2,"maxLength":3})");
  EXPECT_FALSE(accepts(g, R"("a")"));
  EXPECT_TRUE(accepts(g, R"("ab")"));
  EXPECT_TRUE(accepts(g, "\"\xC3\xA9\xC3\xA9\xC3\xA9\""));  // three characters, six bytes
  EXPECT_TRUE(accepts(g, R"("\n\u0041")"));
  EXPECT_FALSE(accepts(g, R"("abcd")"));
}

TEST(JsonSchemaGrammar, Formats) {
  EXPECT_TRUE(accepts(schema(R"({"type":"string","format":"date"})"), R"("2024-02-29")"));
  EXPECT_FALSE(accepts(schema(R"({"type":"string","format":"date"})"), R"("2024-13-01")"));
  EXPECT_TRUE(accepts(schema(R"({"format":"date-time"})"), R"("2024-02-29T23:59:01.5+01:00")"));
  EXPECT_TRUE(accepts(schema(R"({"format":"time"})"), R"("07:00:00Z")"));
  EXPECT_FALSE(accepts(schema(R"({"format":"time"})"), R"("24:00:00Z")"));
  EXPECT_TRUE(accepts(schema(R"({"format":"uuid"})"), R"("123e4567-e89b-12d3-a456-426614174000")"));
  EXPECT_FALSE(accepts(schema(R"({"format":"uuid"})"), R"("123e4567e89b12d3a456426614174000")"));
}

TEST(JsonSchemaGrammar, EnumConstAnyOf) {
  const grammar e = schema(R"({"enum":["red","green",1,null,{"a":[1]}]})");
  EXPECT_TRUE(accepts(e, R"("green")"));
  EXPECT_TRUE(accepts(e, "1"));
  EXPECT_TRUE(accepts(e, "null"));
  EXPECT_TRUE(accepts(e, R"({"a":[1]})"));
  EXPECT_FALSE(accepts(e, R"("blue")"));
  const grammar typed = schema(R"({"type":"string","enum":["a",1]})");
  EXPECT_FALSE(accepts(typed, "1"));
  EXPECT_TRUE(accepts(typed, R"("a")"));
  EXPECT_TRUE(accepts(schema(R"({"const":"x"})"), R"("x")"));
  EXPECT_FALSE(accepts(schema(R"({"const":"x"})"), R"("y")"));
  const grammar any = schema(R"({"anyOf":[{"type":"integer"},{"type":"object","properties":
      {"k":{"type":"boolean"}},"required":["k"]}]})");
  EXPECT_TRUE(accepts(any, "3"));
  EXPECT_TRUE(accepts(any, R"({"k":true})"));
  EXPECT_FALSE(accepts(any, R"("3")"));
  const grammar one = schema(R"({"oneOf":[{"type":"string"},{"type":"null"}]})");
  EXPECT_TRUE(accepts(one, "null"));
}

TEST(JsonSchemaGrammar, ReferencesIncludingRecursion) {
  const grammar g = schema(R"({"$defs":{"node":{"type":"object","properties":{
      "v":{"type":"integer"},"kids":{"type":"array","items":{"$ref":"#/$defs/node"}}},
      "required":["v"],"additionalProperties":false}},"$ref":"#/$defs/node"})");
  EXPECT_TRUE(accepts(g, R"({"v":1})"));
  EXPECT_TRUE(accepts(g, R"({"kids":[{"v":2},{"kids":[],"v":3}],"v":1})"));
  EXPECT_FALSE(accepts(g, R"({"kids":[{}],"v":1})"));
  const grammar old = schema(R"({"definitions":{"n":{"type":"null"}},"type":"array",
      "items":{"$ref":"#/definitions/n"}})");
  EXPECT_TRUE(accepts(old, "[null]"));
  EXPECT_FALSE(accepts(old, "[1]"));
}

TEST(JsonSchemaGrammar, UnsupportedKeywordsAreErrorsNamingThem) {
  EXPECT_EQ(error_of(R"({"type":"string","pattern":"^a"})"),
            std::make_pair(std::string("pattern"), std::string("")));
  EXPECT_EQ(error_of(R"({"properties":{"age":{"type":"integer","minimum":0}}})"),
            std::make_pair(std::string("minimum"), std::string("/properties/age")));
  EXPECT_EQ(error_of(R"({"type":"string","format":"email"})").first, "format");
  EXPECT_EQ(
      error_of(R"({"type":"object","properties":{"a":{}},"additionalProperties":true})").first,
      "additionalProperties");
  EXPECT_EQ(error_of(R"({"$ref":"#/$defs/missing"})").first, "$ref");
  EXPECT_EQ(error_of(R"({"$ref":"https://example.com/s.json"})").first, "$ref");
  EXPECT_EQ(error_of(R"({"anyOf":[{"$ref":"#"}]})").first, "$ref");  // loops without a byte
  EXPECT_EQ(error_of(R"({"type":"strin"})").first, "type");
  EXPECT_EQ(error_of(R"({"type":"array","minItems":3,"maxItems":2})").first, "minItems");
  EXPECT_EQ(error_of(R"({"allOf":[{"type":"string"},{"maxLength":2}]})").first, "allOf");
  EXPECT_EQ(error_of(R"({"enum":["a"],"maxLength":2})").first, "maxLength");
  EXPECT_EQ(error_of(R"(false)").first, "false");
  EXPECT_EQ(error_of(R"(3)").first, "schema");
  EXPECT_EQ(error_of(R"({"uniqueItems":true})").first, "uniqueItems");
  EXPECT_EQ(error_of(R"({"type":"object","title":"T","description":"d"})").first, "(compiled)");
}

TEST(Matcher, CompleteAndFinished) {
  matcher obj(std::make_shared<const grammar>(json_object_grammar()));
  EXPECT_FALSE(obj.complete());
  ASSERT_TRUE(obj.accept("{}"));
  EXPECT_TRUE(obj.complete());
  EXPECT_TRUE(obj.finished());
  EXPECT_FALSE(obj.accept_byte(' '));

  matcher num(std::make_shared<const grammar>(schema(R"({"type":"integer"})")));
  ASSERT_TRUE(num.accept("12"));
  EXPECT_TRUE(num.complete());
  EXPECT_FALSE(num.finished());  // more digits may follow
  EXPECT_TRUE(num.next_bytes().test('3'));
  EXPECT_FALSE(num.next_bytes().test('a'));

  matcher rejecting(std::make_shared<const grammar>(json_object_grammar()));
  EXPECT_FALSE(rejecting.accept("{\"a\" x"));
  EXPECT_TRUE(rejecting.accept("{\"a\""));  // state unchanged by the refused bytes
}

}  // namespace
}  // namespace rbee::structured
