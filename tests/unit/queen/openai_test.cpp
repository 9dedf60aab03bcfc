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

TEST(OpenAiRequest, NodeExtensionPlacesTheTask) {
  json messages = {{{"role", "user"}, {"content", "Hi"}}};
  auto r = openai::parse_request(openai::endpoint::chat,
                                 {{"model", "m"}, {"node", "gpu1"}, {"messages", messages}});
  EXPECT_EQ(r.task.node, "gpu1");
  r = openai::parse_request(openai::endpoint::chat, {{"model", "m"}, {"messages", messages}});
  EXPECT_FALSE(r.task.node);
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
              "messages[0].content")
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
                                    {{"model", "m"}, {"n", 17}, {"messages", json::array()}});
            }),
            "n");
  EXPECT_EQ(field_of([] { openai::parse_request(endpoint::chat, {{"model", "m"}}); }), "messages");
  EXPECT_EQ(field_of([] {
              openai::parse_request(
                  endpoint::chat,
                  {{"model", "m"}, {"messages", {{{"role", "tool"}, {"content", "x"}}}}});
            }),
            "messages[0].tool_call_id");
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

openai::response_meta meta_of(openai::endpoint kind) {
  return {.kind = kind, .id = "id-1", .model = "m", .created = 100};
}

TEST(OpenAiResponse, CollectsTextUsageAndFinishReason) {
  openai::collector c;
  c.on_event({{"type", "narration"}, {"human", "x"}});
  c.on_event({{"type", "token"}, {"t", "Once"}, {"i", 0}});
  c.on_event({{"type", "token"}, {"t", " upon"}, {"i", 1}});
  c.on_event({{"type", "end"},
              {"tokens_in", 5},
              {"tokens_cached", 3},
              {"tokens_out", 2},
              {"stop_reason", "max_tokens"}});
  openai::request r;
  auto chat = openai::response(meta_of(openai::endpoint::chat), r, c);
  EXPECT_EQ(chat["object"], "chat.completion");
  EXPECT_EQ(chat["created"], 100);
  EXPECT_EQ(chat["system_fingerprint"], openai::system_fingerprint());
  EXPECT_EQ(chat["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(chat["choices"][0]["message"]["content"], "Once upon");
  EXPECT_EQ(chat["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(chat["usage"]["prompt_tokens"], 5);
  EXPECT_EQ(chat["usage"]["completion_tokens"], 2);
  EXPECT_EQ(chat["usage"]["total_tokens"], 7);
  EXPECT_EQ(chat["usage"]["prompt_tokens_details"]["cached_tokens"], 3);
  auto text = openai::response(meta_of(openai::endpoint::completion), r, c);
  EXPECT_EQ(text["object"], "text_completion");
  EXPECT_EQ(text["choices"][0]["text"], "Once upon");

  EXPECT_EQ(openai::finish_reason("eos"), "stop");
  EXPECT_EQ(openai::finish_reason("stop_sequence"), "stop");
  EXPECT_EQ(openai::finish_reason("max_tokens"), "length");
}

TEST(OpenAiResponse, UsageIsItsOwnChunkWithNoChoices) {
  auto u = openai::usage_chunk(meta_of(openai::endpoint::chat), 5, 3, 4);
  EXPECT_EQ(u["object"], "chat.completion.chunk");
  EXPECT_TRUE(u["choices"].is_array());
  EXPECT_TRUE(u["choices"].empty());
  EXPECT_EQ(u["usage"]["total_tokens"], 8);
  EXPECT_EQ(u["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
  auto c = openai::chunk(meta_of(openai::endpoint::chat), 1, {{"content", "x"}}, nullptr);
  EXPECT_EQ(c["choices"][0]["index"], 1);
  EXPECT_EQ(c["system_fingerprint"], openai::system_fingerprint());
}

TEST(OpenAiResponse, ChoicesAreCollectedByIndex) {
  openai::collector c;
  c.n = 2;
  c.on_event({{"type", "token"}, {"t", "a"}, {"index", 0}});
  c.on_event({{"type", "token"}, {"t", "b"}, {"index", 1}});
  // One end event ends every choice (docs/sampling.md).
  c.on_event(json::parse(R"({"type": "end", "tokens_in": 4, "tokens_out": 2,
      "stop_reason": "max_tokens", "choices": [
        {"index": 0, "tokens_out": 1, "stop_reason": "max_tokens"},
        {"index": 1, "tokens_out": 1, "stop_reason": "eos"}]})"));
  // An index outside the request's choices is a broken worker, not a new choice.
  EXPECT_THROW(c.on_event({{"type", "token"}, {"t", "x"}, {"index", 7}}), std::runtime_error);
  EXPECT_THROW(c.on_event({{"type", "token"}, {"t", "x"}, {"index", "0"}}), std::runtime_error);
  openai::request r;
  r.n = 2;
  auto out = openai::response(meta_of(openai::endpoint::completion), r, c);
  ASSERT_EQ(out["choices"].size(), 2u);
  EXPECT_EQ(out["choices"][0]["text"], "a");
  EXPECT_EQ(out["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(out["choices"][1]["text"], "b");
  EXPECT_EQ(out["choices"][1]["finish_reason"], "stop");
  EXPECT_EQ(out["usage"]["completion_tokens"], 2);
}

json weather_tool() {
  return json::parse(R"({"type":"function","function":{"name":"get_weather",
    "parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}})");
}

json chat_with_tools(json extra = json::object()) {
  json body = {{"model", "m"},
               {"messages", {{{"role", "user"}, {"content", "Weather in Paris?"}}}},
               {"tools", {weather_tool()}}};
  body.update(extra);
  return body;
}

TEST(OpenAiTools, ToolChoiceDecidesHowTheReplyIsRead) {
  auto r = openai::parse_request(openai::endpoint::chat, chat_with_tools());
  EXPECT_EQ(r.reply, openai::reply_kind::tool_calls);
  ASSERT_EQ(r.tools.size(), 1u);
  r = openai::parse_request(openai::endpoint::chat, chat_with_tools({{"tool_choice", "none"}}));
  EXPECT_EQ(r.reply, openai::reply_kind::text);
  r = openai::parse_request(
      openai::endpoint::chat,
      chat_with_tools(
          {{"tool_choice", {{"type", "function"}, {"function", {{"name", "get_weather"}}}}}}));
  EXPECT_EQ(r.reply, openai::reply_kind::forced_call);
  EXPECT_EQ(r.forced_tool, "get_weather");
  EXPECT_EQ(field_of([] {
              openai::parse_request(
                  openai::endpoint::chat,
                  chat_with_tools(
                      {{"tool_choice", {{"type", "function"}, {"function", {{"name", "nope"}}}}}}));
            }),
            "tool_choice");
}

TEST(OpenAiTools, ForcedCallsAndResponseFormatsBecomeTheTasksConstraint) {
  auto required =
      openai::parse_request(openai::endpoint::chat, chat_with_tools({{"tool_choice", "required"}}));
  ASSERT_TRUE(required.task.generation.constraint);
  EXPECT_EQ(required.task.generation.constraint->schema["type"], "array");
  auto format = openai::parse_request(
      openai::endpoint::chat,
      chat_with_tools({{"response_format",
                        {{"type", "json_schema"},
                         {"json_schema", {{"name", "x"}, {"schema", {{"type", "object"}}}}}}}}));
  ASSERT_TRUE(format.task.generation.constraint);
  EXPECT_EQ(format.task.generation.constraint->schema["type"], "object");
  EXPECT_FALSE(
      openai::parse_request(openai::endpoint::chat, chat_with_tools()).task.generation.constraint);
  // A schema the compiler refuses is the parameter's fault, named as such.
  EXPECT_EQ(
      field_of([] {
        openai::parse_request(
            openai::endpoint::chat,
            chat_with_tools(
                {{"response_format",
                  {{"type", "json_schema"},
                   {"json_schema", {{"schema", {{"type", "string"}, {"pattern", "a+"}}}}}}}}));
      }),
      "response_format");
  EXPECT_EQ(field_of([] {
              openai::parse_request(
                  openai::endpoint::chat,
                  chat_with_tools({{"tool_choice", "required"},
                                   {"response_format", {{"type", "json_object"}}}}));
            }),
            "response_format");
}

TEST(OpenAiTools, UnsupportedParametersAreNamed) {
  for (const char* p : {"audio", "functions", "prediction", "web_search_options", "frobnicate"}) {
    EXPECT_EQ(field_of([&] {
                openai::parse_request(openai::endpoint::chat, chat_with_tools({{p, 1}}));
              }),
              p);
  }
  EXPECT_EQ(field_of([] {
              openai::parse_request(openai::endpoint::completion,
                                    {{"model", "m"}, {"prompt", "x"}, {"echo", true}});
            }),
            "echo");
  EXPECT_EQ(field_of([] {
              openai::parse_request(openai::endpoint::chat,
                                    chat_with_tools({{"modalities", {"text", "audio"}}}));
            }),
            "modalities");
  EXPECT_EQ(field_of([] {
              openai::parse_request(openai::endpoint::chat,
                                    chat_with_tools({{"response_format", {{"type", "yaml"}}}}));
            }),
            "response_format");
}

TEST(OpenAiTools, ToolMessagesReachTheTask) {
  json body = chat_with_tools();
  body["messages"].push_back(json::parse(R"({"role":"assistant","content":null,"tool_calls":[
      {"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]})"));
  body["messages"].push_back(
      json::parse(R"({"role":"tool","tool_call_id":"call_1","content":"22 C"})"));
  auto r = openai::parse_request(openai::endpoint::chat, body);
  const auto& m = r.task.generation.messages;
  ASSERT_EQ(m.size(), 3u);
  ASSERT_EQ(m[1].tool_calls.size(), 1u);
  EXPECT_EQ(m[1].tool_calls[0].name, "get_weather");
  EXPECT_EQ(m[1].tool_calls[0].arguments, R"({"city":"Paris"})");
  EXPECT_EQ(m[2].tool_call_id, "call_1");
}

std::vector<api::tool_definition> weather_tools() {
  return {{.name = "get_weather", .description = "", .parameters = json::object()}};
}

TEST(OpenAiTools, CallsAreReadInEachFamilysFormat) {
  auto tools = weather_tools();
  for (const char* reply :
       {R"(<tool_call>
{"name": "get_weather", "arguments": {"city": "Paris"}}
</tool_call>)",
        R"([TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}}])",
        R"(<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}})",
        R"({"name": "get_weather", "parameters": {"city": "Paris"}})",
        R"([{"name": "get_weather", "arguments": {"city": "Paris"}}])"}) {
    auto parsed = openai::parse_tool_calls(reply, tools);
    ASSERT_EQ(parsed.calls.size(), 1u) << reply;
    EXPECT_EQ(parsed.calls[0].name, "get_weather");
    EXPECT_EQ(json::parse(parsed.calls[0].arguments), json({{"city", "Paris"}})) << reply;
    EXPECT_EQ(parsed.content, "") << reply;
    EXPECT_TRUE(parsed.calls[0].id.starts_with("call_"));
  }
  auto two = openai::parse_tool_calls(
      "Checking.<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": "
      "\"A\"}}</tool_call>"
      "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"B\"}}</tool_call>",
      tools);
  EXPECT_EQ(two.calls.size(), 2u);
  EXPECT_EQ(two.content, "Checking.");
  // Not a call: an unknown function, or plain text.
  EXPECT_TRUE(
      openai::parse_tool_calls(R"({"name": "rm_rf", "arguments": {}})", tools).calls.empty());
  EXPECT_EQ(openai::parse_tool_calls("It is sunny.", tools).content, "It is sunny.");
}

TEST(OpenAiTools, StreamedTextIsHeldOnlyWhereACallMayBegin) {
  auto tools = weather_tools();
  // Pushes in order (the operands of + are evaluated in no fixed order).
  auto push_all = [](openai::reply_stream& s, std::initializer_list<std::string_view> pieces) {
    std::string sent;
    for (auto p : pieces) sent += s.push(p);
    return sent;
  };
  openai::reply_stream plain(tools);
  std::string sent = push_all(plain, {"It is", " sunny <b>", "ok"});
  auto rest = plain.finish();
  EXPECT_EQ(sent + rest.content, "It is sunny <b>ok");
  EXPECT_TRUE(rest.calls.empty());

  openai::reply_stream call(tools);
  std::string early = push_all(call, {"Sure. <tool", "_call>{\"name\": \"get_weather\", ",
                                      "\"arguments\": {}}</tool_call>"});
  EXPECT_EQ(early, "Sure. ");
  auto end = call.finish();
  ASSERT_EQ(end.calls.size(), 1u);
  EXPECT_EQ(end.calls[0].name, "get_weather");
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
