#include <gtest/gtest.h>

#include "cli/chat_session.h"

namespace rbee::cli {
namespace {

using nlohmann::json;

chat_settings settings(std::string model, std::string node = "", std::string system = "") {
  chat_settings s;
  s.model = std::move(model);
  s.node = std::move(node);
  s.system = std::move(system);
  return s;
}

TEST(ChatSession, EachRequestCarriesTheSystemPromptAndTheWholeHistory) {
  chat_session s(settings("file:/m.gguf", "gpu1", "Be brief."));
  s.add_turn("Hi", "Hello!");
  json body = s.request_body("And now?");
  EXPECT_EQ(body["model"], "file:/m.gguf");
  EXPECT_EQ(body["node"], "gpu1");
  EXPECT_EQ(body["stream"], true);
  EXPECT_EQ(body["stream_options"]["include_usage"], true);
  ASSERT_EQ(body["messages"].size(), 4u);
  EXPECT_EQ(body["messages"][0], (json{{"role", "system"}, {"content", "Be brief."}}));
  EXPECT_EQ(body["messages"][1]["content"], "Hi");
  EXPECT_EQ(body["messages"][2], (json{{"role", "assistant"}, {"content", "Hello!"}}));
  EXPECT_EQ(body["messages"][3], (json{{"role", "user"}, {"content", "And now?"}}));
  s.clear();
  EXPECT_EQ(s.request_body("x")["messages"].size(), 2u);  // the system prompt stays
}

TEST(ChatSession, SetChecksValuesAgainstTheContractsLimits) {
  chat_session s(settings("m"));
  EXPECT_EQ(s.set("temperature", "0.7"), "");
  EXPECT_EQ(s.set("seed", "42"), "");
  EXPECT_EQ(s.set("max_tokens", "64"), "");
  EXPECT_EQ(s.set("stop", "###"), "");
  json body = s.request_body("x");
  EXPECT_DOUBLE_EQ(body["temperature"].get<double>(), 0.7);
  EXPECT_EQ(body["seed"], 42);
  EXPECT_EQ(body["max_tokens"], 64);
  EXPECT_EQ(body["stop"], json::array({"###"}));
  EXPECT_NE(s.set("temperature", "9").find("between"), std::string::npos);
  EXPECT_NE(s.set("temperature", "warm"), "");
  EXPECT_NE(s.set("max_tokens", "0"), "");
  EXPECT_NE(s.set("max_tokens", "1.5"), "");
  EXPECT_NE(s.set("top_k", "-1"), "");
  EXPECT_NE(s.set("warmth", "1").find("unknown parameter"), std::string::npos);
  EXPECT_NE(s.set("temperature", ""), "");
  EXPECT_DOUBLE_EQ(s.request_body("x")["temperature"].get<double>(), 0.7);  // refusals kept it
  EXPECT_EQ(s.unset("temperature"), "");
  EXPECT_FALSE(s.request_body("x").contains("temperature"));
  EXPECT_NE(s.unset("temperature"), "");
  EXPECT_EQ(s.set("system", "You are terse."), "");
  EXPECT_EQ(s.request_body("x")["messages"][0]["content"], "You are terse.");
}

TEST(ChatSession, SavedSessionsLoadBackAndBadOnesAreRefused) {
  chat_session s(settings("m", "", "sys"));
  s.set("temperature", "0.5");
  s.add_turn("a", "b");
  chat_session other(settings("n"));
  EXPECT_EQ(other.load(s.to_json()), "");
  EXPECT_EQ(other.request_body("c"), s.request_body("c"));
  EXPECT_NE(other.load(json{{"model", "x"}}), "");
  EXPECT_NE(other.load(json{{"messages", json::array({{{"role", "user"}}})}}), "");
  json bad_param = s.to_json();
  bad_param["params"]["temperature"] = 7;
  EXPECT_NE(other.load(bad_param), "");
  EXPECT_EQ(other.request_body("c"), s.request_body("c"));  // a refused load changes nothing
}

TEST(ChatCommands, ParseNamesAndArguments) {
  auto c = parse_chat_command("/set temperature 0.7 ");
  EXPECT_EQ(c.what, chat_command::kind::set);
  EXPECT_EQ(c.argument, "temperature 0.7");
  EXPECT_EQ(parse_chat_command("/?").what, chat_command::kind::help);
  EXPECT_EQ(parse_chat_command("/exit").what, chat_command::kind::bye);
  EXPECT_EQ(parse_chat_command("/model hf:a/b").argument, "hf:a/b");
  auto unknown = parse_chat_command("/frob x");
  EXPECT_EQ(unknown.what, chat_command::kind::unknown);
  EXPECT_EQ(unknown.name, "/frob");
}

TEST(ChatInput, TripleQuotesAndBackslashesMakeOneMessage) {
  chat_input in;
  EXPECT_EQ(in.feed("hello"), "hello");
  EXPECT_FALSE(in.feed("\"\"\"first line"));
  EXPECT_TRUE(in.in_block());
  EXPECT_FALSE(in.feed("second line"));
  EXPECT_EQ(in.feed("\"\"\""), "first line\nsecond line\n");
  EXPECT_FALSE(in.in_block());
  EXPECT_FALSE(in.feed("one \\"));
  EXPECT_EQ(in.feed("two"), "one \ntwo");
  EXPECT_FALSE(in.feed("\"\"\""));
  in.reset();
  EXPECT_EQ(in.feed("after reset"), "after reset");
}

}  // namespace
}  // namespace rbee::cli
