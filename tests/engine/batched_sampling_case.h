#pragma once
// engine::sample of many rows at once makes the choices the host sampler makes row by row,
// for the CPU and CUDA backends alike: greedy and seeded draws, repeat penalties over long
// windows, OpenAI penalties and logit_bias, constrained masks. The rows' penalty lists and
// masks together exceed one row's staging, so a CUDA call brings tokens back more than once.
#include <gtest/gtest.h>

#include <span>
#include <vector>

#include "engine/engine.h"

namespace rbee::engine {

inline void expect_batched_choices_match_the_host(model& m) {
  const int n_vocab = model_get_info(m).n_vocab;
  constexpr int n_rows = 10;
  context_params cp = context_default_params();
  cp.n_ctx = 32;
  cp.n_seq = n_rows;
  auto ctx = context_create(m, cp);
  std::vector<batch_entry> batch;
  for (int s = 0; s < n_rows; ++s)
    for (int i = 0; i < 3; ++i) batch.push_back({(7 * s + 13 * i + 1) % n_vocab, i, s, i == 2});
  decode(*ctx, batch);

  // Histories over most of the vocabulary: two rows' repeat-penalty windows or offsets do
  // not fit one row's staging together.
  std::vector<token_id> wide;
  for (int t = 0; t < n_vocab * 3 / 4; ++t) wide.push_back((t * 7919) % n_vocab);
  const std::vector<token_id> short_history{1, 45, 300, 45, 2};
  std::vector<uint64_t> evens((static_cast<size_t>(n_vocab) + 63) / 64, 0x5555555555555555ull);
  std::vector<uint64_t> few((static_cast<size_t>(n_vocab) + 63) / 64, 0);
  few[0] = 0b1011000;  // tokens 3, 4 and 6

  // One row per sequence: what it exercises, its knobs (from the defaults: top-k 40, top-p
  // 0.95, min-p 0.05), its history and its mask.
  struct row_case {
    const char* what;
    void (*knobs)(sampling_params&);
    const std::vector<token_id>& history;
    std::span<const uint64_t> mask;
  };
  const row_case rows[n_rows] = {
      {"greedy", [](sampling_params& p) { p.temperature = 0.0f; }, short_history, {}},
      {"seeded draw", [](sampling_params& p) { p.seed = 3; }, short_history, {}},
      {"greedy, repeat penalty over a wide window",
       [](sampling_params& p) {
         p.temperature = 0.0f, p.repeat_penalty = 1.5f, p.repeat_last_n = -1;
       },
       wide,
       {}},
      {"draw, repeat penalty over a wide window",
       [](sampling_params& p) { p.repeat_penalty = 1.3f, p.repeat_last_n = -1, p.seed = 4; },
       wide,
       {}},
      {"greedy, masked", [](sampling_params& p) { p.temperature = 0.0f; }, short_history, evens},
      {"draw among three tokens", [](sampling_params& p) { p.temperature = 0.9f, p.seed = 5; },
       short_history, few},
      {"greedy, OpenAI penalties and bias",
       [](sampling_params& p) {
         p.temperature = 0.0f, p.presence_penalty = 1.5f, p.frequency_penalty = 0.5f;
         p.logit_bias = {{3, -100.0f}, {17, 3.0f}};
       },
       wide,
       {}},
      {"draw, no top-k, frequency penalty",
       [](sampling_params& p) {
         p.temperature = 1.2f, p.top_k = 0, p.seed = 6, p.frequency_penalty = 1.0f;
       },
       wide,
       {}},
      {"greedy again", [](sampling_params& p) { p.temperature = 0.0f; }, short_history, {}},
      {"draw with bias",
       [](sampling_params& p) {
         p.temperature = 1.0f, p.seed = 9, p.logit_bias = {{100, 5.0f}, {200, -100.0f}};
       },
       short_history,
       {}}};

  std::vector<sampler> batched, one_by_one;
  for (const row_case& r : rows) {
    sampling_params p = sampling_default_params();
    r.knobs(p);
    batched.emplace_back(p, n_vocab);
    one_by_one.emplace_back(p, n_vocab);
  }
  // Two steps: the seeded samplers' draws advance, and the second step must follow them.
  for (int step = 0; step < 2; ++step) {
    std::vector<sample_request> requests;
    for (int s = 0; s < n_rows; ++s)
      requests.push_back({.batch_index = 3 * s + 2,
                          .s = &batched[static_cast<size_t>(s)],
                          .history = rows[s].history,
                          .n_prompt = 2,
                          .allowed = rows[s].mask});
    std::vector<token_id> got(n_rows, -1);
    sample(*ctx, requests, got);
    for (int s = 0; s < n_rows; ++s) {
      const size_t i = static_cast<size_t>(s);
      const token_id want =
          one_by_one[i].sample(logits(*ctx, 3 * s + 2), rows[s].history, 2, rows[s].mask);
      EXPECT_EQ(got[i], want) << "row " << s << " (" << rows[s].what << ") step " << step;
    }
  }
}

}  // namespace rbee::engine
