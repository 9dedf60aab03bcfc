// Sampling semantics on small hand-built logit vectors, and the stop-string matcher.
#include <cmath>
#include <map>
#include <set>

#include <gtest/gtest.h>

#include "engine/engine.h"
#include "engine/sampling.h"
#include "engine/token_choice.h"

namespace rbee::engine {
namespace {

sampling_params plain() {
  sampling_params p = sampling_default_params();
  p.temperature = 1.0f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.repeat_penalty = 1.0f;
  p.seed = 1;
  return p;
}

// Logits whose softmax is exactly `probs`.
std::vector<float> logits_of(std::vector<double> probs) {
  std::vector<float> out;
  for (double p : probs) out.push_back(static_cast<float>(std::log(p)));
  return out;
}

std::map<token_id, int> histogram(const sampling_params& p, const std::vector<float>& logits,
                                  int n) {
  sampler s(p, static_cast<int>(logits.size()));
  std::map<token_id, int> counts;
  for (int i = 0; i < n; ++i) ++counts[s.sample(logits, {})];
  return counts;
}

TEST(sampler, temperature_zero_is_argmax) {
  sampling_params p = plain();
  p.temperature = 0;
  sampler s(p, 5);
  const std::vector<float> logits{0.1f, 3.0f, -2.0f, 2.9f, 3.0f};
  EXPECT_EQ(s.sample(logits, {}), 1);  // first of equal maxima
}

// Failover: a sampler restored from another's state, given the same history, draws the same
// continuation as the saved one (random draws and the penalties' windows alike).
TEST(sampler, restored_state_continues_the_saved_sampler) {
  sampling_params p = plain();
  p.repeat_penalty = 1.3f;
  p.repeat_last_n = 8;
  p.frequency_penalty = 0.5f;
  p.seed = 1234;
  const std::vector<float> logits = logits_of({0.2, 0.2, 0.2, 0.15, 0.15, 0.1});
  const int n_vocab = static_cast<int>(logits.size());
  const std::vector<token_id> prompt{1, 2};
  auto continue_run = [&](sampler& s, std::vector<token_id> history, int n) {
    for (int i = 0; i < n; ++i) history.push_back(s.sample(logits, history, prompt.size()));
    return history;
  };
  sampler whole(p, n_vocab);
  const auto uninterrupted = continue_run(whole, prompt, 60);

  sampler first(p, n_vocab);
  const auto half = continue_run(first, prompt, 25);
  sampler second(p, n_vocab);
  second.restore(first.state());
  EXPECT_EQ(continue_run(second, half, 35), uninterrupted);

  sampler unrestored(p, n_vocab);  // the seed's start, not the saved position
  EXPECT_NE(continue_run(unrestored, half, 35), uninterrupted);
}

TEST(sampler, repeat_penalty_divides_positive_and_multiplies_negative_logits) {
  sampling_params p = plain();
  p.temperature = 0;
  p.repeat_penalty = 1.1f;
  p.repeat_last_n = 64;
  sampler s(p, 2);
  const std::vector<token_id> history{0};
  // 2.0 / 1.1 = 1.82 < 1.9
  EXPECT_EQ(s.sample(std::vector<float>{2.0f, 1.9f}, history), 1);
  // -1.0 * 1.1 = -1.1 < -1.05
  EXPECT_EQ(s.sample(std::vector<float>{-1.0f, -1.05f}, history), 1);
  // Without the token in the window, no penalty.
  EXPECT_EQ(s.sample(std::vector<float>{2.0f, 1.9f}, std::vector<token_id>{1}), 0);
}

TEST(sampler, repeat_penalty_applies_once_per_distinct_token_in_the_last_n) {
  sampling_params p = plain();
  p.temperature = 0;
  p.repeat_penalty = 1.5f;
  p.repeat_last_n = 2;
  sampler s(p, 3);
  // Token 0 repeated: penalised once (3.0 / 1.5 = 2.0 > 1.9), not twice (1.33).
  EXPECT_EQ(s.sample(std::vector<float>{3.0f, 1.9f, 0.0f}, std::vector<token_id>{0, 0}), 0);
  // Token 0 outside the last 2: no penalty at all.
  EXPECT_EQ(s.sample(std::vector<float>{2.0f, 1.9f, 0.0f}, std::vector<token_id>{0, 2, 2}), 0);
}

TEST(sampler, presence_penalty_subtracts_once_per_generated_token_not_the_prompt) {
  sampling_params p = plain();
  p.temperature = 0;
  p.presence_penalty = 1.0f;
  sampler s(p, 3);
  const std::vector<float> logits{2.0f, 1.5f, 0.0f};
  // Token 0 only in the prompt (the first token of history): no penalty.
  EXPECT_EQ(s.sample(logits, std::vector<token_id>{0}, 1), 0);
  // Generated once or three times: 2.0 - 1.0 = 1.0 < 1.5 either way.
  EXPECT_EQ(s.sample(logits, std::vector<token_id>{0, 0}, 1), 1);
  EXPECT_EQ(s.sample(logits, std::vector<token_id>{2, 0, 0, 0}, 1), 1);
  // A negative penalty favours what was generated: 0.0 + 2.5 > 2.0.
  p.presence_penalty = -2.5f;
  sampler favour(p, 3);
  EXPECT_EQ(favour.sample(logits, std::vector<token_id>{2}, 0), 2);
}

TEST(sampler, frequency_penalty_scales_with_the_count_of_generated_tokens) {
  sampling_params p = plain();
  p.temperature = 0;
  p.frequency_penalty = 0.4f;
  sampler s(p, 2);
  const std::vector<float> logits{3.0f, 2.0f};
  // 3.0 - 2 * 0.4 = 2.2 > 2.0; 3.0 - 3 * 0.4 = 1.8 < 2.0. The prompt's token 0s never count.
  EXPECT_EQ(s.sample(logits, std::vector<token_id>{0, 0, 0, 0, 0}, 3), 0);
  EXPECT_EQ(s.sample(logits, std::vector<token_id>{0, 0, 0, 0, 0}, 2), 1);
}

TEST(sampler, presence_and_frequency_add_up_with_the_repeat_penalty_first) {
  sampling_params p = plain();
  p.temperature = 0;
  p.repeat_penalty = 2.0f;
  p.repeat_last_n = -1;
  p.presence_penalty = 0.5f;
  p.frequency_penalty = 0.25f;
  sampler s(p, 2);
  // Token 0 generated twice: 4.0 / 2 - 0.5 - 2 * 0.25 = 1.0, just below 1.01.
  EXPECT_EQ(s.sample(std::vector<float>{4.0f, 1.01f}, std::vector<token_id>{0, 0}), 1);
  EXPECT_EQ(s.sample(std::vector<float>{4.0f, 0.99f}, std::vector<token_id>{0, 0}), 0);
}

TEST(sampler, logit_bias_is_added_before_the_choice) {
  sampling_params p = plain();
  p.temperature = 0;
  p.logit_bias = {{0, -100.0f}, {2, 1.5f}};
  sampler s(p, 3);
  // 5.0 - 100 is out; 1.0 + 1.5 = 2.5 beats 2.0.
  EXPECT_EQ(s.sample(std::vector<float>{5.0f, 2.0f, 1.0f}, {}), 2);
  // A bias adds to the penalties of a generated token: 1.0 + 1.5 - 1.0 = 1.5 < 2.0.
  p.presence_penalty = 1.0f;
  sampler both(p, 3);
  EXPECT_EQ(both.sample(std::vector<float>{5.0f, 2.0f, 1.0f}, std::vector<token_id>{2}), 1);
  // The last bias given for a token wins.
  p.presence_penalty = 0.0f;
  p.logit_bias = {{1, 10.0f}, {1, 0.0f}};
  sampler last(p, 3);
  EXPECT_EQ(last.sample(std::vector<float>{5.0f, 2.0f, 1.0f}, {}), 0);
}

TEST(sampler, a_banned_token_is_never_drawn) {
  sampling_params p = plain();
  p.logit_bias = {{1, -100.0f}};
  const auto counts = histogram(p, logits_of({0.2, 0.6, 0.2}), 2000);
  EXPECT_FALSE(counts.contains(1));
  EXPECT_TRUE(counts.contains(0) && counts.contains(2));
}

TEST(logprobs, log_softmax_of_the_raw_logits_with_the_top_in_order) {
  const std::vector<float> logits = logits_of({0.1, 0.4, 0.2, 0.2, 0.1});
  sampling_candidates scratch;
  scratch.reserve(logits.size());
  token_logprobs out;
  compute_logprobs(logits, 4, 3, scratch, out);
  EXPECT_NEAR(out.logprob, std::log(0.1), 1e-6);
  ASSERT_EQ(out.n_top, 3);
  // Most likely first; equal logits by lower id.
  EXPECT_EQ(out.top[0].token, 1);
  EXPECT_EQ(out.top[1].token, 2);
  EXPECT_EQ(out.top[2].token, 3);
  EXPECT_NEAR(out.top[0].logprob, std::log(0.4), 1e-6);
  EXPECT_NEAR(out.top[1].logprob, std::log(0.2), 1e-6);
  // Shifting every logit changes nothing; n_top is capped by the vocabulary.
  std::vector<float> shifted = logits;
  for (float& l : shifted) l += 30.0f;
  token_logprobs again;
  compute_logprobs(shifted, 4, max_top_logprobs, scratch, again);
  EXPECT_NEAR(again.logprob, out.logprob, 1e-5);
  EXPECT_EQ(again.n_top, 5);
  // Zero alternatives: only the token's own.
  compute_logprobs(logits, 0, 0, scratch, out);
  EXPECT_EQ(out.n_top, 0);
  EXPECT_NEAR(out.logprob, std::log(0.1), 1e-6);
}

TEST(sampler, top_k_keeps_only_the_k_most_likely) {
  sampling_params p = plain();
  p.top_k = 2;
  const auto counts = histogram(p, logits_of({0.1, 0.4, 0.3, 0.2}), 2000);
  EXPECT_EQ(counts.size(), 2u);
  EXPECT_TRUE(counts.contains(1) && counts.contains(2));
  // Renormalised 0.4 : 0.3.
  EXPECT_NEAR(counts.at(1) / 2000.0, 4.0 / 7.0, 0.04);
}

TEST(sampler, top_p_keeps_the_smallest_prefix_reaching_p) {
  sampling_params p = plain();
  p.top_p = 0.7f;  // 0.5 + 0.3 reaches 0.7: tokens 0 and 1
  const auto counts = histogram(p, logits_of({0.5, 0.3, 0.15, 0.05}), 2000);
  EXPECT_EQ(counts.size(), 2u);
  EXPECT_TRUE(counts.contains(0) && counts.contains(1));
  EXPECT_NEAR(counts.at(0) / 2000.0, 0.5 / 0.8, 0.04);
}

TEST(sampler, min_p_drops_tokens_below_a_fraction_of_the_best) {
  sampling_params p = plain();
  p.min_p = 0.5f;  // threshold 0.25: keeps 0.5 and 0.3
  const auto counts = histogram(p, logits_of({0.5, 0.3, 0.15, 0.05}), 2000);
  EXPECT_EQ(counts.size(), 2u);
  EXPECT_TRUE(counts.contains(0) && counts.contains(1));
}

TEST(sampler, unfiltered_draws_follow_the_softmax) {
  const auto counts = histogram(plain(), logits_of({0.5, 0.25, 0.125, 0.125}), 8000);
  EXPECT_NEAR(counts.at(0) / 8000.0, 0.5, 0.03);
  EXPECT_NEAR(counts.at(1) / 8000.0, 0.25, 0.03);
  EXPECT_NEAR(counts.at(3) / 8000.0, 0.125, 0.03);
}

TEST(sampler, low_temperature_sharpens_high_flattens) {
  const auto logits = logits_of({0.6, 0.4});
  sampling_params p = plain();
  p.temperature = 0.25f;  // 0.6^4 : 0.4^4 = 0.835 : 0.165
  EXPECT_NEAR(histogram(p, logits, 4000).at(0) / 4000.0, 0.835, 0.03);
  p.temperature = 4.0f;  // 0.6^0.25 : 0.4^0.25 = 0.525 : 0.475
  EXPECT_NEAR(histogram(p, logits, 4000).at(0) / 4000.0, 0.525, 0.03);
}

TEST(sampler, same_seed_same_tokens_other_seed_other_tokens) {
  const auto logits = logits_of({0.2, 0.2, 0.2, 0.2, 0.2});
  const auto draw = [&](uint64_t seed) {
    sampling_params p = plain();
    p.seed = seed;
    sampler s(p, 5);
    std::vector<token_id> out;
    for (int i = 0; i < 64; ++i) out.push_back(s.sample(logits, {}));
    return out;
  };
  EXPECT_EQ(draw(42), draw(42));
  EXPECT_NE(draw(42), draw(43));
}

// One bit per allowed token, as constrained decoding passes it.
std::vector<uint64_t> mask_of(int n_vocab, std::set<token_id> allowed) {
  std::vector<uint64_t> mask(static_cast<size_t>(n_vocab + 63) / 64);
  for (const token_id t : allowed) mask[static_cast<size_t>(t) / 64] |= uint64_t{1} << (t % 64);
  return mask;
}

TEST(sampler, constrained_greedy_picks_the_best_allowed_token) {
  sampling_params p = plain();
  p.temperature = 0;
  sampler s(p, 70);
  std::vector<float> logits(70, 0.0f);
  logits[3] = 5.0f;
  logits[65] = 1.0f;
  logits[66] = 1.0f;
  EXPECT_EQ(s.sample(logits, {}), 3);
  EXPECT_EQ(s.sample(logits, {}, 0, mask_of(70, {0, 65, 66})), 65);  // first of equal maxima
  EXPECT_EQ(s.sample(logits, {}, 0, mask_of(70, {69})), 69);
}

TEST(sampler, constrained_draws_never_leave_the_allowed_tokens) {
  sampling_params p = plain();
  p.top_k = 40;
  p.min_p = 0.0f;
  p.repeat_penalty = 1.5f;
  p.repeat_last_n = -1;
  const std::vector<float> logits = logits_of({0.5, 0.2, 0.1, 0.1, 0.05, 0.05});
  const auto mask = mask_of(6, {1, 4, 5});
  sampler s(p, 6);
  std::map<token_id, int> counts;
  const std::vector<token_id> history{1, 0};  // 1 is penalized, 0 is not allowed anyway
  for (int i = 0; i < 3000; ++i) ++counts[s.sample(logits, history, 0, mask)];
  EXPECT_EQ(counts.size(), 3u);
  EXPECT_EQ(counts.count(0) + counts.count(2) + counts.count(3), 0u);
  EXPECT_GT(counts[1], counts[4]);
}

TEST(stop_matcher, holds_back_a_possible_prefix_and_drops_the_stop_text) {
  stop_matcher m({"\nUser:"});
  EXPECT_EQ(m.push("Hello"), "Hello");
  EXPECT_EQ(m.push(" there\nUs"), " there");  // "\nUs" could start the stop string
  EXPECT_FALSE(m.matched());
  EXPECT_EQ(m.push("er: hi"), "");
  EXPECT_TRUE(m.matched());
  EXPECT_EQ(m.matched_stop(), "\nUser:");
  EXPECT_EQ(m.push("more"), "");
}

TEST(stop_matcher, releases_held_text_when_it_stops_matching) {
  stop_matcher m({"STOP"});
  EXPECT_EQ(m.push("a ST"), "a ");
  EXPECT_EQ(m.push("ART"), "START");
  EXPECT_EQ(m.push("ST"), "");
  EXPECT_EQ(m.flush(), "ST");
  EXPECT_FALSE(m.matched());
}

TEST(stop_matcher, earliest_of_several_stops_wins) {
  stop_matcher m({"world", "lo w"});
  EXPECT_EQ(m.push("hello world"), "hel");
  EXPECT_EQ(m.matched_stop(), "lo w");
}

TEST(stop_matcher, no_stops_passes_everything) {
  stop_matcher m({});
  EXPECT_EQ(m.push("anything"), "anything");
  EXPECT_EQ(m.flush(), "");
}

}  // namespace
}  // namespace rbee::engine
