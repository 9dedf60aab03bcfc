// Validation of POST /v1/inference bodies: every rejection is 400 INVALID_REQUEST naming the field.
#include "worker/inference_request.h"

#include <algorithm>

#include <gtest/gtest.h>

#include "api/requests.h"
#include "common/errors.h"

namespace rbee::worker {
namespace {

using common::json;

constexpr int n_ctx = 512;

// The field a rejected body is blamed on.
std::string rejected_field(const json& body) {
  try {
    parse_inference_request(body, n_ctx);
  } catch (const common::http_error& e) {
    EXPECT_EQ(e.status, 400);
    EXPECT_EQ(e.code, "INVALID_REQUEST");
    return e.details.value("field", std::string("<none>"));
  }
  return "<accepted>";
}

TEST(InferenceRequest, FullBodyIsParsed) {
  json body = {{"job_id", "job-1"},    {"prompt", "Once upon a time"},
               {"max_tokens", 32},     {"temperature", 0.0},
               {"top_p", 0.9},         {"top_k", 10},
               {"min_p", 0.1},         {"repeat_penalty", 1.2},
               {"seed", 42},           {"stop", {"\n\n", "The end"}},
               {"unknown_field", true}};
  inference_request r = parse_inference_request(body, n_ctx);
  EXPECT_EQ(r.job_id, "job-1");
  EXPECT_EQ(r.prompt, "Once upon a time");
  ASSERT_TRUE(r.max_tokens.has_value());
  EXPECT_EQ(*r.max_tokens, 32);
  EXPECT_FLOAT_EQ(r.sampling.temperature, 0.0f);
  EXPECT_FLOAT_EQ(r.sampling.top_p, 0.9f);
  EXPECT_EQ(r.sampling.top_k, 10);
  EXPECT_FLOAT_EQ(r.sampling.min_p, 0.1f);
  EXPECT_FLOAT_EQ(r.sampling.repeat_penalty, 1.2f);
  EXPECT_EQ(r.sampling.seed, 42u);
  EXPECT_EQ(r.stop, (std::vector<std::string>{"\n\n", "The end"}));
}

TEST(InferenceRequest, DefaultsAndGeneratedJobId) {
  inference_request a = parse_inference_request({{"prompt", "hi"}}, n_ctx);
  inference_request b = parse_inference_request({{"prompt", "hi"}}, n_ctx);
  EXPECT_EQ(a.job_id.rfind("job-", 0), 0u);
  EXPECT_NE(a.job_id, b.job_id);
  EXPECT_FALSE(a.max_tokens.has_value());
  EXPECT_FLOAT_EQ(a.sampling.repeat_penalty, 1.0f) << "no repetition penalty unless asked";
  EXPECT_FLOAT_EQ(a.sampling.temperature, engine::sampling_default_params().temperature);
  EXPECT_TRUE(a.stop.empty());
}

TEST(InferenceRequest, SingleStopStringIsAccepted) {
  inference_request r = parse_inference_request({{"prompt", "hi"}, {"stop", "END"}}, n_ctx);
  EXPECT_EQ(r.stop, (std::vector<std::string>{"END"}));
}

TEST(InferenceRequest, PromptMustBeNonEmptyString) {
  EXPECT_EQ(rejected_field(json::object()), "prompt");
  EXPECT_EQ(rejected_field({{"prompt", ""}}), "prompt");
  EXPECT_EQ(rejected_field({{"prompt", 5}}), "prompt");
  EXPECT_EQ(rejected_field({{"prompt", {"a", "b"}}}), "prompt");
}

TEST(InferenceRequest, RangesAreChecked) {
  auto with = [](const char* field, json value) {
    json body = {{"prompt", "hi"}};
    body[field] = std::move(value);
    return body;
  };
  EXPECT_EQ(rejected_field(with("max_tokens", 0)), "max_tokens");
  EXPECT_EQ(rejected_field(with("max_tokens", n_ctx + 1)), "max_tokens");
  EXPECT_EQ(rejected_field(with("max_tokens", 1.5)), "max_tokens");
  EXPECT_EQ(rejected_field(with("max_tokens", "10")), "max_tokens");
  EXPECT_EQ(rejected_field(with("temperature", -1)), "temperature");
  EXPECT_EQ(rejected_field(with("temperature", 2.5)), "temperature");
  EXPECT_EQ(rejected_field(with("top_p", 1.1)), "top_p");
  EXPECT_EQ(rejected_field(with("top_k", -1)), "top_k");
  EXPECT_EQ(rejected_field(with("min_p", -0.1)), "min_p");
  EXPECT_EQ(rejected_field(with("repeat_penalty", 0)), "repeat_penalty");
  EXPECT_EQ(rejected_field(with("repeat_penalty", 11)), "repeat_penalty");
  EXPECT_EQ(rejected_field(with("seed", -1)), "seed");
  EXPECT_EQ(rejected_field(with("job_id", "has space")), "job_id");
  EXPECT_EQ(rejected_field(with("job_id", std::string(200, 'a'))), "job_id");
  EXPECT_EQ(rejected_field(with("job_id", 7)), "job_id");
}

TEST(InferenceRequest, StopStringsAreBounded) {
  json five = {{"prompt", "hi"}, {"stop", {"a", "b", "c", "d", "e"}}};
  EXPECT_EQ(rejected_field(five), "stop");
  json too_long = {{"prompt", "hi"}, {"stop", {std::string(101, 'x')}}};
  EXPECT_EQ(rejected_field(too_long), "stop");
  json empty = {{"prompt", "hi"}, {"stop", {""}}};
  EXPECT_EQ(rejected_field(empty), "stop");
  json not_strings = {{"prompt", "hi"}, {"stop", {1, 2}}};
  EXPECT_EQ(rejected_field(not_strings), "stop");
}

json chat(json messages) {
  return {{"messages", std::move(messages)}};
}

TEST(InferenceRequest, MessagesAreParsed) {
  json body = {{"messages",
                {{{"role", "system"}, {"content", "Be brief."}},
                 {{"role", "user"}, {"content", "Hi"}},
                 {{"role", "assistant"}, {"content", ""}},
                 {{"role", "user"}, {"content", "Again"}}}},
               {"chat_template", "chatml"},
               {"max_tokens", 8}};
  inference_request r = parse_inference_request(body, n_ctx);
  EXPECT_TRUE(r.prompt.empty());
  ASSERT_EQ(r.messages.size(), 4u);
  EXPECT_EQ(r.messages[0].role, "system");
  EXPECT_EQ(r.messages[0].content, "Be brief.");
  EXPECT_EQ(r.messages[2].role, "assistant");
  EXPECT_EQ(r.messages[2].content, "");
  EXPECT_EQ(r.messages[3].content, "Again");
  EXPECT_EQ(r.chat_template, "chatml");
  EXPECT_EQ(*r.max_tokens, 8);

  inference_request plain =
      parse_inference_request(chat({{{"role", "user"}, {"content", "x"}}}), n_ctx);
  EXPECT_TRUE(plain.chat_template.empty());
}

TEST(InferenceRequest, InvalidMessagesNameTheItemAndField) {
  json user = {{"role", "user"}, {"content", "Hi"}};
  EXPECT_EQ(rejected_field(chat(json::array())), "messages");
  EXPECT_EQ(rejected_field(chat("Hi")), "messages");
  EXPECT_EQ(rejected_field(chat({user, "Hi"})), "messages[1]");
  EXPECT_EQ(rejected_field(chat({user, {{"role", "robot"}, {"content", "x"}}})),
            "messages[1].role");
  EXPECT_EQ(rejected_field(chat({user, {{"role", "tool"}, {"content", "x"}}})),
            "messages[1].tool_call_id");
  EXPECT_EQ(rejected_field(chat({user, {{"role", 1}, {"content", "x"}}})), "messages[1].role");
  EXPECT_EQ(rejected_field(chat({{{"content", "x"}}})), "messages[0].role");
  EXPECT_EQ(rejected_field(chat({user, {{"role", "user"}}})), "messages[1].content");
  EXPECT_EQ(rejected_field(chat({{{"role", "user"}, {"content", {{"type", "text"}}}}})),
            "messages[0].content");
  json too_many = chat(json::array());
  for (size_t i = 0; i <= api::max_messages; ++i) too_many["messages"].push_back(user);
  EXPECT_EQ(rejected_field(too_many), "messages");
  json too_big =
      chat({user, {{"role", "user"}, {"content", std::string(api::max_prompt_bytes, 'a')}}});
  EXPECT_EQ(rejected_field(too_big), "messages[1].content");
}

TEST(InferenceRequest, PromptAndMessagesExcludeEachOther) {
  json both = chat({{{"role", "user"}, {"content", "Hi"}}});
  both["prompt"] = "Hi";
  EXPECT_EQ(rejected_field(both), "messages");
  EXPECT_EQ(rejected_field({{"prompt", "Hi"}, {"chat_template", "chatml"}}), "chat_template");
  json empty_template = chat({{{"role", "user"}, {"content", "Hi"}}});
  empty_template["chat_template"] = "";
  EXPECT_EQ(rejected_field(empty_template), "chat_template");
  empty_template["chat_template"] = 3;
  EXPECT_EQ(rejected_field(empty_template), "chat_template");
}

// prompt_tokens against a real model: stories260K has a Llama vocabulary (BOS "<s>") and no
// chat template of its own.
class PromptTokens : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = engine::model_load(std::string(RBEE_SHARED_MODELS_DIR) + "/stories260K.gguf",
                                engine::model_default_params())
                 .release();
  }
  static void TearDownTestSuite() { engine::model_deleter{}(model_); }
  static engine::model* model_;
};
engine::model* PromptTokens::model_ = nullptr;

TEST_F(PromptTokens, PromptGetsOneBos) {
  auto tokens = prompt_tokens(*model_, parse_inference_request({{"prompt", "Once"}}, n_ctx));
  ASSERT_FALSE(tokens.empty());
  EXPECT_EQ(tokens.front(), engine::model_get_info(*model_).bos);
  EXPECT_EQ(tokens, engine::tokenize(*model_, "Once", true, true));
}

TEST_F(PromptTokens, ChatmlOverrideRendersTheConversation) {
  json body =
      chat({{{"role", "system"}, {"content", "Be brief."}}, {{"role", "user"}, {"content", "Hi"}}});
  body["chat_template"] = "chatml";
  auto tokens = prompt_tokens(*model_, parse_inference_request(body, n_ctx));
  const std::string expected =
      "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
      "<|im_start|>assistant\n";
  // chatml emits no BOS text, so the vocabulary's BOS is added in front.
  EXPECT_EQ(tokens, engine::tokenize(*model_, expected, true, true));
}

TEST_F(PromptTokens, TemplateThatEmitsBosGetsNoSecondOne) {
  json body = chat({{{"role", "user"}, {"content", "Hi"}}});
  body["chat_template"] = "llama2";
  auto tokens = prompt_tokens(*model_, parse_inference_request(body, n_ctx));
  const engine::token_id bos = engine::model_get_info(*model_).bos;
  ASSERT_GE(tokens.size(), 2u);
  EXPECT_EQ(tokens[0], bos);
  EXPECT_NE(tokens[1], bos);
  EXPECT_EQ(std::count(tokens.begin(), tokens.end(), bos), 1);
}

TEST_F(PromptTokens, ModelWithoutTemplateGetsChatMl) {
  // stories260K has no chat template: ChatML, as llama.cpp's server does.
  json body = chat({{{"role", "user"}, {"content", "Hi"}}});
  auto own = prompt_tokens(*model_, parse_inference_request(body, n_ctx));
  body["chat_template"] = "chatml";
  EXPECT_EQ(own, prompt_tokens(*model_, parse_inference_request(body, n_ctx)));
}

TEST_F(PromptTokens, UnknownTemplateOverrideSaysToPassAKnownOne) {
  json body = chat({{{"role", "user"}, {"content", "Hi"}}});
  body["chat_template"] = "jinja-of-my-own";
  try {
    prompt_tokens(*model_, parse_inference_request(body, n_ctx));
    ADD_FAILURE() << "an unknown chat_template was accepted";
  } catch (const common::http_error& e) {
    EXPECT_EQ(e.status, 400);
    EXPECT_EQ(e.code, "CHAT_TEMPLATE_UNKNOWN");
    EXPECT_EQ(e.details.value("field", ""), "chat_template");
    EXPECT_NE(e.message.find("chat_template"), std::string::npos) << e.message;
  }
}

TEST(ResolveMaxTokens, PromptMustLeaveRoom) {
  inference_request r = parse_inference_request({{"prompt", "hi"}}, n_ctx);
  try {
    resolve_max_tokens(r, n_ctx, n_ctx);
    FAIL() << "a prompt filling the context was accepted";
  } catch (const common::http_error& e) {
    EXPECT_EQ(e.status, 400);
    EXPECT_EQ(e.details.value("field", ""), "prompt");
  }
}

// No max_tokens: until end of generation or the end of the context (no hidden 256 cap).
TEST(ResolveMaxTokens, WithoutMaxTokensTheRestOfTheContext) {
  inference_request r = parse_inference_request({{"prompt", "hi"}}, n_ctx);
  EXPECT_EQ(resolve_max_tokens(r, 10, n_ctx), n_ctx - 10);
  EXPECT_EQ(resolve_max_tokens(r, n_ctx - 5, n_ctx), 5);
}

TEST(InferenceRequest, OpenAIPenaltiesBiasChoicesAndLogprobsReachTheEngineTerms) {
  inference_request r = parse_inference_request({{"prompt", "hi"},
                                                 {"presence_penalty", 0.5},
                                                 {"frequency_penalty", -0.25},
                                                 {"logit_bias", {{"7", -100}, {"9", 1.5}}},
                                                 {"n", 2},
                                                 {"logprobs", 5}},
                                                n_ctx);
  EXPECT_EQ(r.sampling.presence_penalty, 0.5f);
  EXPECT_EQ(r.sampling.frequency_penalty, -0.25f);
  ASSERT_EQ(r.sampling.logit_bias.size(), 2u);
  EXPECT_EQ(r.sampling.logit_bias[0], (std::pair<engine::token_id, float>{7, -100.0f}));
  EXPECT_EQ(r.n_choices, 2);
  EXPECT_EQ(r.n_logprobs, 5);
  EXPECT_NO_THROW(check_against_worker(r, 512, 2));
  // Defaults: no penalties, one choice, no log-probabilities.
  inference_request plain = parse_inference_request({{"prompt", "hi"}}, n_ctx);
  EXPECT_EQ(plain.sampling.presence_penalty, 0.0f);
  EXPECT_TRUE(plain.sampling.logit_bias.empty());
  EXPECT_EQ(plain.n_choices, 1);
  EXPECT_FALSE(plain.n_logprobs);
}

TEST(InferenceRequest, WhatTheWorkerCannotServeNamesItsField) {
  auto field_of = [](const inference_request& r, int n_vocab, int n_slots) -> std::string {
    try {
      check_against_worker(r, n_vocab, n_slots);
    } catch (const common::http_error& e) {
      EXPECT_EQ(e.status, 400);
      return e.details.value("field", "");
    }
    return "<accepted>";
  };
  EXPECT_EQ(
      field_of(parse_inference_request({{"prompt", "hi"}, {"logit_bias", {{"512", 1}}}}, n_ctx),
               512, 1),
      "logit_bias");
  EXPECT_EQ(field_of(parse_inference_request({{"prompt", "hi"}, {"n", 3}}, n_ctx), 512, 2), "n");
  EXPECT_EQ(field_of(parse_inference_request({{"prompt", "hi"}, {"n", 2}}, n_ctx), 512, 2),
            "<accepted>");
}

TEST(ResolveMaxTokens, ExplicitMaxTokensMustFit) {
  inference_request r = parse_inference_request({{"prompt", "hi"}, {"max_tokens", 100}}, n_ctx);
  EXPECT_EQ(resolve_max_tokens(r, n_ctx - 100, n_ctx), 100);
  try {
    resolve_max_tokens(r, n_ctx - 99, n_ctx);
    FAIL() << "prompt + max_tokens over the context was accepted";
  } catch (const common::http_error& e) {
    EXPECT_EQ(e.details.value("field", ""), "max_tokens");
  }
}

}  // namespace
}  // namespace rbee::worker
