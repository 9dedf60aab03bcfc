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

// Failover: a token event's SSE id says where the generation could resume.
TEST(StreamEvents, ResumeMarksRoundTripAndRefuseAnythingElse) {
  const resume_mark mark{.tokens = {1934, 0, 29892}, .rng_state = 0x3f1c9a0d5e7b2468};
  EXPECT_EQ(resume_mark_id(mark), "1934,0,29892;3f1c9a0d5e7b2468");
  auto back = parse_resume_mark(resume_mark_id(mark));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->tokens, mark.tokens);
  EXPECT_EQ(back->rng_state, mark.rng_state);
  for (const char* bad : {"", "12", "12;", ";zz", "1,,2;00", "1,2,;00", "-1;00",
                          "1;00000000000000000", "4294967296;00", "1 ;00"}) {
    EXPECT_FALSE(parse_resume_mark(bad)) << bad;
  }
  EXPECT_EQ(started_event("job-1", "m", 5, nullptr).count("prompt_tokens"), 0u);
  const std::vector<int32_t> prompt{1, 2};
  EXPECT_EQ(started_event("job-1", "m", 5, &prompt)["prompt_tokens"], json::array({1, 2}));
}

}  // namespace
}  // namespace rbee::api
