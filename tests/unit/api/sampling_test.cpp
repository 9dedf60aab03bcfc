#include "api/sampling.h"

#include <gtest/gtest.h>

#include "common/errors.h"

namespace rbee::api {
namespace {

using nlohmann::json;

std::string rejected_field(const json& body) {
  try {
    sampling_options::from_json(body);
  } catch (const common::http_error& e) {
    EXPECT_EQ(e.status, 400);
    return e.details.value("field", "");
  }
  return "";
}

TEST(SamplingOptions, ReadsEverySetFieldAndLeavesTheRestUnset) {
  auto s = sampling_options::from_json(
      {{"temperature", 0}, {"top_k", 40}, {"seed", 7}, {"repeat_penalty", nullptr}});
  EXPECT_EQ(s.temperature, 0.0);
  EXPECT_EQ(s.top_k, 40);
  EXPECT_EQ(s.seed, 7);
  EXPECT_FALSE(s.repeat_penalty);
  EXPECT_FALSE(s.top_p);
  json out = json::object();
  s.to_json(out);
  EXPECT_EQ(out, (json{{"temperature", 0.0}, {"top_k", 40}, {"seed", 7}}));
}

// Finding 12: the CLI and queen took values the worker refused after a cold start; now there is
// one set of limits, and these values fail at the first process that sees them.
TEST(SamplingOptions, ValuesOutsideTheContractNameTheirField) {
  EXPECT_EQ(rejected_field({{"seed", -1}}), "seed");
  EXPECT_EQ(rejected_field({{"repeat_penalty", 0.05}}), "repeat_penalty");
  EXPECT_EQ(rejected_field({{"temperature", 2.5}}), "temperature");
  EXPECT_EQ(rejected_field({{"top_p", -0.1}}), "top_p");
  EXPECT_EQ(rejected_field({{"min_p", 1.5}}), "min_p");
  EXPECT_EQ(rejected_field({{"top_k", 2'000'000}}), "top_k");
  EXPECT_EQ(rejected_field({{"top_k", 4.5}}), "top_k");
  EXPECT_EQ(rejected_field({{"temperature", "hot"}}), "temperature");
  EXPECT_EQ(rejected_field({{"seed", 0}, {"repeat_penalty", 1.0}}), "");
}

TEST(SamplingOptions, OpenAIPenaltiesAndLogitBiasRoundTrip) {
  auto s = sampling_options::from_json({{"presence_penalty", 0.5},
                                        {"frequency_penalty", -1.0},
                                        {"logit_bias", {{"50256", -100}, {"7", 2.5}}}});
  EXPECT_EQ(s.presence_penalty, 0.5);
  EXPECT_EQ(s.frequency_penalty, -1.0);
  ASSERT_EQ(s.logit_bias.size(), 2u);
  json out = json::object();
  s.to_json(out);
  EXPECT_EQ(sampling_options::from_json(out).logit_bias.size(), 2u);
  EXPECT_EQ(out["logit_bias"]["50256"], -100.0);
  EXPECT_EQ(out["presence_penalty"], 0.5);
}

TEST(SamplingOptions, BadPenaltiesAndBiasesNameTheirField) {
  EXPECT_EQ(rejected_field({{"presence_penalty", 2.5}}), "presence_penalty");
  EXPECT_EQ(rejected_field({{"frequency_penalty", -2.1}}), "frequency_penalty");
  EXPECT_EQ(rejected_field({{"frequency_penalty", "high"}}), "frequency_penalty");
  EXPECT_EQ(rejected_field({{"logit_bias", json::array({1})}}), "logit_bias");
  EXPECT_EQ(rejected_field({{"logit_bias", {{"abc", 1}}}}), "logit_bias");
  EXPECT_EQ(rejected_field({{"logit_bias", {{"-5", 1}}}}), "logit_bias");
  EXPECT_EQ(rejected_field({{"logit_bias", {{"007", 1}}}}), "logit_bias");
  EXPECT_EQ(rejected_field({{"logit_bias", {{"99999999999", 1}}}}), "logit_bias");
  EXPECT_EQ(rejected_field({{"logit_bias", {{"5", 101}}}}), "logit_bias");
  EXPECT_EQ(rejected_field({{"logit_bias", {{"5", "1"}}}}), "logit_bias");
  json many = json::object();
  for (int i = 0; i <= 300; ++i) many[std::to_string(i)] = 1;
  EXPECT_EQ(rejected_field({{"logit_bias", many}}), "logit_bias");
  many.erase("0");
  EXPECT_EQ(rejected_field({{"logit_bias", many}}), "");
}

}  // namespace
}  // namespace rbee::api
