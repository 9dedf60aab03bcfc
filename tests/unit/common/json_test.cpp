#include "common/json.h"

#include <gtest/gtest.h>

namespace rbee::common {
namespace {

// Runs fn, which must throw http_error 400 INVALID_REQUEST naming `field`; returns the error.
template <class F>
http_error expect_invalid(F&& fn, std::string_view field) {
  try {
    fn();
  } catch (const http_error& e) {
    EXPECT_EQ(e.status, 400);
    EXPECT_EQ(e.code, "INVALID_REQUEST");
    EXPECT_EQ(e.details.value("field", ""), field) << e.details.dump();
    return e;
  }
  ADD_FAILURE() << "expected INVALID_REQUEST for field " << field;
  return http_error(0, "", "");
}

TEST(JsonValidation, RequireString) {
  json body = {{"model", "hf:a/b"}, {"n", 3}, {"nothing", nullptr}};
  EXPECT_EQ(require_string(body, "model"), "hf:a/b");
  auto missing = expect_invalid([&] { require_string(body, "prompt"); }, "prompt");
  EXPECT_NE(missing.message.find("missing"), std::string::npos);
  auto wrong = expect_invalid([&] { require_string(body, "n"); }, "n");
  EXPECT_EQ(wrong.details["expected"], "string");
  EXPECT_EQ(wrong.details["got"], "integer");
  expect_invalid([&] { require_string(body, "nothing"); }, "nothing");
  expect_invalid([&] { require_string(body, "model", 3); }, "model");
}

TEST(JsonValidation, OptionalStringAndDefaults) {
  json body = {{"node", "gpu-1"}, {"flag", true}};
  EXPECT_EQ(optional_string(body, "node"), "gpu-1");
  EXPECT_EQ(optional_string(body, "backend"), std::nullopt);
  EXPECT_EQ(string_or(body, "backend", "cpu"), "cpu");
  expect_invalid([&] { optional_string(body, "flag"); }, "flag");
}

TEST(JsonValidation, NumberInRange) {
  json body = {{"temperature", 0.7}, {"top_p", 1}, {"bad", "hot"}, {"big", 3.5}};
  EXPECT_DOUBLE_EQ(number_in_range(body, "temperature", 1.0, 0.0, 2.0), 0.7);
  EXPECT_DOUBLE_EQ(number_in_range(body, "top_p", 0.9, 0.0, 1.0), 1.0);
  EXPECT_DOUBLE_EQ(number_in_range(body, "min_p", 0.05, 0.0, 1.0), 0.05);
  auto e = expect_invalid([&] { number_in_range(body, "bad", 1, 0, 2); }, "bad");
  EXPECT_EQ(e.details["expected"], "number");
  auto r = expect_invalid([&] { number_in_range(body, "big", 1, 0, 2); }, "big");
  EXPECT_EQ(r.details["max"], 2.0);
}

TEST(JsonValidation, IntInRange) {
  json body = {{"max_tokens", 32},
               {"whole", 8.0},
               {"frac", 8.5},
               {"neg", -1},
               {"huge", 18446744073709551615ull},
               {"s", "12"}};
  EXPECT_EQ(int_in_range(body, "max_tokens", 16, 1, 4096), 32);
  EXPECT_EQ(int_in_range(body, "seed", 42, 0, 100), 42);
  EXPECT_EQ(int_in_range(body, "whole", 1, 0, 10), 8);
  expect_invalid([&] { int_in_range(body, "frac", 1, 0, 10); }, "frac");
  expect_invalid([&] { int_in_range(body, "neg", 1, 0, 10); }, "neg");
  expect_invalid([&] { int_in_range(body, "huge", 1, 0, INT64_MAX); }, "huge");
  expect_invalid([&] { int_in_range(body, "s", 1, 0, 100); }, "s");
  EXPECT_EQ(require_int(body, "max_tokens", 0, 100), 32);
  expect_invalid([&] { require_int(body, "absent", 0, 100); }, "absent");
}

TEST(JsonValidation, StringArray) {
  json body = {
      {"stop", {"\n\n", "User:"}}, {"one", "END"}, {"mixed", {"a", 1}}, {"obj", {{"a", 1}}}};
  EXPECT_EQ(string_array(body, "stop", 4, 32), (std::vector<std::string>{"\n\n", "User:"}));
  EXPECT_EQ(string_array(body, "one", 4, 32), (std::vector<std::string>{"END"}));
  EXPECT_TRUE(string_array(body, "absent", 4, 32).empty());
  auto e = expect_invalid([&] { string_array(body, "mixed", 4, 32); }, "mixed");
  EXPECT_EQ(e.details["index"], 1);
  expect_invalid([&] { string_array(body, "stop", 1, 32); }, "stop");
  expect_invalid([&] { string_array(body, "stop", 4, 3); }, "stop");
  expect_invalid([&] { string_array(body, "obj", 4, 32); }, "obj");
}

TEST(JsonValidation, BoolObjectArray) {
  json body = {{"stream", false}, {"s", "true"}, {"o", {{"a", 1}}}, {"a", {1, 2}}};
  EXPECT_FALSE(optional_bool(body, "stream", true));
  EXPECT_TRUE(optional_bool(body, "absent", true));
  expect_invalid([&] { optional_bool(body, "s", false); }, "s");
  EXPECT_EQ(require_object(body, "o")["a"], 1);
  expect_invalid([&] { require_object(body, "a"); }, "a");
  EXPECT_EQ(require_array(body, "a").size(), 2u);
  expect_invalid([&] { require_array(body, "o"); }, "o");
}

TEST(JsonValidation, ParseBody) {
  EXPECT_EQ(parse_body("{\"a\":1}")["a"], 1);
  EXPECT_TRUE(parse_body("", true).empty());
  try {
    parse_body("{\"a\":}");
    FAIL();
  } catch (const http_error& e) {
    EXPECT_EQ(e.status, 400);
    EXPECT_EQ(e.details["position"], 6);
  }
  try {
    parse_body("[1,2]");
    FAIL();
  } catch (const http_error& e) {
    EXPECT_EQ(e.details["got"], "array");
  }
  EXPECT_THROW(parse_body(""), http_error);
}

// Finding 8: a number beyond double's range was a 500 INTERNAL.
TEST(JsonValidation, NumberOutOfRangeIs400) {
  for (const char* body : {R"({"max_tokens":1e400})", R"({"temperature":-1e999})"}) {
    try {
      parse_body(body);
      FAIL() << body;
    } catch (const http_error& e) {
      EXPECT_EQ(e.status, 400) << body;
      EXPECT_EQ(e.code, codes::INVALID_REQUEST);
    }
  }
}

}  // namespace
}  // namespace rbee::common
