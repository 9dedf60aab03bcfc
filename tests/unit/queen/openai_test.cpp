#include "queen/openai.h"

#include <gtest/gtest.h>

#include "common/errors.h"

namespace rbee::queen {
namespace {

using nlohmann::json;

std::string field_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const common::http_error& e) {
    EXPECT_EQ(e.status, 400);
    return e.details.value("field", "");
  }
  return "<no error>";
}

TEST(OpenAiRequest, ChatMapsOntoATask) {
  auto r = openai::parse_request(
      openai::endpoint::chat,
      {{"model", "file:/m.gguf"},
       {"messages",
        {{{"role", "system"}, {"content", "Be brief."}}, {{"role", "user"}, {"content", "Hi"}}}},
       {"max_tokens", 12},
       {"temperature", 0},
       {"top_p", 0.5},
       {"seed", 42},
       {"stop", "\n"},
       {"stream", true},
       {"stream_options", {{"include_usage", true}}}});
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_EQ(r.task.model, "file:/m.gguf");
  EXPECT_EQ(r.task.generation.max_tokens, 12);
  EXPECT_EQ(*r.task.generation.sampling.temperature, 0.0);
  EXPECT_EQ(*r.task.generation.sampling.top_p, 0.5);
  EXPECT_EQ(*r.task.generation.sampling.seed, 42);
  EXPECT_EQ(r.task.generation.stop, std::vector<std::string>{"\n"});
  ASSERT_FALSE(r.task.generation.messages.empty());
  EXPECT_EQ(r.task.generation.messages.size(), 2u);
  auto body = r.task.for_worker().to_json();
  EXPECT_EQ(body["messages"][0]["role"], "system");
  EXPECT_EQ(body["messages"][1]["content"], "Hi");
  EXPECT_FALSE(body.contains("prompt"));
  EXPECT_FALSE(body.contains("chat_template"));
}

TEST(OpenAiRequest, ChatTemplateExtensionAndDeveloperRole) {
  auto r = openai::parse_request(openai::endpoint::chat,
                                 {{"model", "m"},
                                  {"chat_template", "llama3"},
                                  {"messages",
                                   {{{"role", "developer"}, {"content", "Be brief."}},
                                    {{"role", "user"}, {"content", "Hi"}}}}});
  auto body = r.task.for_worker().to_json();
  EXPECT_EQ(body["chat_template"], "llama3");
  EXPECT_EQ(body["messages"][0]["role"], "system");
}

TEST(OpenAiRequest, CompletionSendsThePromptAsGiven) {
  auto r = openai::parse_request(openai::endpoint::completion,
                                 {{"model", "m"}, {"prompt", "Once upon a time"}});
  auto body = r.task.for_worker().to_json();
  EXPECT_EQ(body["prompt"], "Once upon a time");
  EXPECT_FALSE(body.contains("messages"));
}

TEST(OpenAiRequest, ContentPartsAndMaxCompletionTokens) {
  auto r = openai::parse_request(
      openai::endpoint::chat,
      {{"model", "m"},
       {"max_completion_tokens", 5},
       {"messages",
        {{{"role", "user"},
          {"content", {{{"type", "text"}, {"text", "a"}}, {{"type", "text"}, {"text", "b"}}}}}}}});
  EXPECT_EQ(r.task.generation.max_tokens, 5);
  EXPECT_EQ(r.task.generation.messages[0].content, "ab");
}

// Found by openai_request_fuzz: a part whose type or text is not a string was a 500 (a JSON
// type_error); a part of another kind was dropped without a word.
TEST(OpenAiRequest, MalformedOrUnsupportedContentPartsAre400) {
  for (const json& parts :
       {json::parse(R"([{"type":1}])"), json::parse(R"([{"type":"text","text":5}])"),
        json::parse(R"([7])"), json::parse(R"([{"type":"image_url","image_url":{"url":"x"}}])")}) {
    EXPECT_EQ(field_of([&] {
                openai::parse_request(
                    openai::endpoint::chat,
                    {{"model", "m"}, {"messages", {{{"role", "user"}, {"content", parts}}}}});
              }),
              "messages")
        << parts.dump();
  }
}

TEST(OpenAiRequest, CompletionTakesAPromptStringOrOneElementArray) {
  auto r = openai::parse_request(openai::endpoint::completion,
                                 {{"model", "m"}, {"prompt", {"Once upon a time"}}});
  EXPECT_EQ(r.task.generation.prompt, "Once upon a time");
  EXPECT_FALSE(r.stream);
}

TEST(OpenAiRequest, InvalidFieldsAreNamed) {
  using openai::endpoint;
  EXPECT_EQ(field_of([] {
              openai::parse_request(endpoint::chat, {{"messages", json::array()}});
            }),
            "model");
  EXPECT_EQ(field_of([] {
              openai::parse_request(endpoint::chat,
                                    {{"model", "m"}, {"n", 2}, {"messages", json::array()}});
            }),
            "n");
  EXPECT_EQ(field_of([] { openai::parse_request(endpoint::chat, {{"model", "m"}}); }), "messages");
  EXPECT_EQ(field_of([] {
              openai::parse_request(
                  endpoint::chat,
                  {{"model", "m"}, {"messages", {{{"role", "tool"}, {"content", "x"}}}}});
            }),
            "messages[0].role");
  EXPECT_EQ(field_of([] {
              openai::parse_request(endpoint::completion,
                                    {{"model", "m"}, {"prompt", "x"}, {"temperature", -1}});
            }),
            "temperature");
  EXPECT_EQ(field_of([] {
              openai::parse_request(endpoint::completion,
                                    {{"model", "m"}, {"prompt", "x"}, {"max_tokens", 0}});
            }),
            "max_tokens");
  EXPECT_EQ(field_of([] {
              openai::parse_request(endpoint::completion, {{"model", "m"}});
            }),
            "prompt");
}

TEST(OpenAiResponse, CollectsTextUsageAndFinishReason) {
  openai::collector c;
  c.on_event({{"type", "narration"}, {"human", "x"}});
  c.on_event({{"type", "token"}, {"t", "Once"}, {"i", 0}});
  c.on_event({{"type", "token"}, {"t", " upon"}, {"i", 1}});
  c.on_event({{"type", "end"}, {"tokens_in", 5}, {"tokens_out", 2}, {"stop_reason", "max_tokens"}});
  auto chat = openai::response(openai::endpoint::chat, "chatcmpl-1", "m", 100, c);
  EXPECT_EQ(chat["object"], "chat.completion");
  EXPECT_EQ(chat["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(chat["choices"][0]["message"]["content"], "Once upon");
  EXPECT_EQ(chat["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(chat["usage"]["prompt_tokens"], 5);
  EXPECT_EQ(chat["usage"]["completion_tokens"], 2);
  EXPECT_EQ(chat["usage"]["total_tokens"], 7);
  auto text = openai::response(openai::endpoint::completion, "cmpl-1", "m", 100, c);
  EXPECT_EQ(text["object"], "text_completion");
  EXPECT_EQ(text["choices"][0]["text"], "Once upon");

  EXPECT_EQ(openai::finish_reason("eos"), "stop");
  EXPECT_EQ(openai::finish_reason("stop_sequence"), "stop");
  EXPECT_EQ(openai::finish_reason("max_tokens"), "length");
}

TEST(OpenAiResponse, ChunksCarryRoleFirstThenContent) {
  auto first = openai::chunk(openai::endpoint::chat, "id", "m", 1, "Once", nullptr, true);
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(first["choices"][0]["delta"]["content"], "Once");
  EXPECT_TRUE(first["choices"][0]["finish_reason"].is_null());
  auto last = openai::chunk(openai::endpoint::chat, "id", "m", 1, "", "stop", false);
  EXPECT_FALSE(last["choices"][0]["delta"].contains("role"));
  EXPECT_FALSE(last["choices"][0]["delta"].contains("content"));
  EXPECT_EQ(last["choices"][0]["finish_reason"], "stop");
}

TEST(OpenAiError, ShapeAndTypes) {
  auto e = openai::error_body(401, "INVALID_API_KEY", "Invalid API key");
  EXPECT_EQ(e["error"]["type"], "authentication_error");
  EXPECT_EQ(e["error"]["code"], "INVALID_API_KEY");
  EXPECT_EQ(e["error"]["message"], "Invalid API key");
  EXPECT_EQ(openai::error_type(400), "invalid_request_error");
  EXPECT_EQ(openai::error_type(503), "rate_limit_error");
  EXPECT_EQ(openai::error_type(500), "server_error");
}

}  // namespace
}  // namespace rbee::queen
