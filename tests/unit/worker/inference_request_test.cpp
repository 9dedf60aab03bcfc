// Validation of POST /v1/inference bodies: every rejection is 400 INVALID_REQUEST naming the field.
#include "worker/inference_request.h"

#include <gtest/gtest.h>

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

TEST(ResolveMaxTokens, DefaultIsCappedByTheContext) {
  inference_request r = parse_inference_request({{"prompt", "hi"}}, n_ctx);
  EXPECT_EQ(resolve_max_tokens(r, 10, n_ctx), default_max_tokens);
  EXPECT_EQ(resolve_max_tokens(r, n_ctx - 5, n_ctx), 5);
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
