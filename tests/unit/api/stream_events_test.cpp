#include "api/stream_events.h"

#include <gtest/gtest.h>

namespace rbee::api {
namespace {

using nlohmann::json;

TEST(StreamEvents, TokenEventsNameTheirChoice) {
  EXPECT_EQ(token_event("Once", 0),
            (json{{"type", "token"}, {"t", "Once"}, {"i", 0}, {"index", 0}}));
  EXPECT_EQ(token_event(" upon", 1, 2)["index"], 2);
}

TEST(StreamEvents, LogprobsCarryTextAndExactBytes) {
  // "é" split across two tokens: each piece alone is not UTF-8, its bytes are exact.
  token_logprobs_fields lp;
  lp.sampled = token_logprob_entry{"\xC3", -0.5};
  lp.top = {lp.sampled, token_logprob_entry{" a", -1.25}};
  const json e = token_event("", 3, 1, &lp);
  EXPECT_EQ(e["t"], "");
  EXPECT_EQ(e["token"], "\xEF\xBF\xBD");
  EXPECT_EQ(e["bytes"], json::array({0xC3}));
  EXPECT_EQ(e["logprob"], -0.5);
  ASSERT_EQ(e["top_logprobs"].size(), 2u);
  EXPECT_EQ(e["top_logprobs"][1], (json{{"token", " a"}, {"bytes", {32, 97}}, {"logprob", -1.25}}));
  EXPECT_NO_THROW((void)e.dump());
  // Complete characters pass as they are; stray continuation bytes do not.
  token_logprobs_fields mixed;
  mixed.sampled.bytes = "h\xC3\xA9\x80!";
  EXPECT_EQ(token_event("", 0, 0, &mixed)["token"], "h\xC3\xA9\xEF\xBF\xBD!");
}

TEST(StreamEvents, TheEndEventListsEveryChoice) {
  end_stats stats;
  stats.tokens_in = 4;
  stats.tokens_cached = 3;
  stats.tokens_out = 7;
  stats.reason = stop_reason::max_tokens;
  stats.choices = {{.index = 0, .tokens_out = 5, .reason = stop_reason::max_tokens},
                   {.index = 1, .tokens_out = 2, .reason = stop_reason::eos}};
  const json e = end_event(stats);
  EXPECT_EQ(e["stop_reason"], "max_tokens");
  EXPECT_EQ(e["tokens_out"], 7);
  EXPECT_EQ(e["tokens_cached"], 3);
  EXPECT_EQ(e["choices"][1], (json{{"index", 1}, {"tokens_out", 2}, {"stop_reason", "eos"}}));
}

}  // namespace
}  // namespace rbee::api
