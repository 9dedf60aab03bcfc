#pragma once
// engine::sample of many rows at once makes the choices the host sampler makes row by row,
// for the CPU and CUDA backends alike: greedy and seeded draws, repeat penalties over long
// windows, OpenAI penalties and logit_bias, constrained masks. The rows' penalty lists and
// masks together exceed one row's staging, so a CUDA call brings tokens back more than once.
#include <gtest/gtest.h>

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

  std::vector<sampling_params> params(n_rows, sampling_default_params());
  std::vector<std::vector<token_id>> histories(n_rows, short_history);
  std::vector<std::span<const uint64_t>> masks(n_rows);
  params[0].temperature = 0.0f;
  params[1].seed = 3;  // the defaults: top-k 40, top-p 0.95, min-p 0.05
  params[2].temperature = 0.0f;
  params[2].repeat_penalty = 1.5f;
  params[2].repeat_last_n = -1;
  histories[2] = wide;
  params[3].repeat_penalty = 1.3f;
  params[3].repeat_last_n = -1;
  params[3].seed = 4;
  histories[3] = wide;
  params[4].temperature = 0.0f;
  masks[4] = evens;
  params[5].temperature = 0.9f;
  params[5].seed = 5;
  masks[5] = few;
  params[6].temperature = 0.0f;
  params[6].presence_penalty = 1.5f;
  params[6].frequency_penalty = 0.5f;
  params[6].logit_bias = {{3, -100.0f}, {17, 3.0f}};
  histories[6] = wide;
  params[7].temperature = 1.2f;
  params[7].top_k = 0;
  params[7].seed = 6;
  params[7].frequency_penalty = 1.0f;
  histories[7] = wide;
  params[8].temperature = 0.0f;
  params[9].temperature = 1.0f;
  params[9].seed = 9;
  params[9].logit_bias = {{100, 5.0f}, {200, -100.0f}};

  std::vector<sampler> batched, one_by_one;
  for (const sampling_params& p : params) {
    batched.emplace_back(p, n_vocab);
    one_by_one.emplace_back(p, n_vocab);
  }
  // Two steps: the seeded samplers' draws advance, and the second step must follow them.
  for (int step = 0; step < 2; ++step) {
    std::vector<sample_request> requests;
    for (int s = 0; s < n_rows; ++s)
      requests.push_back({.batch_index = 3 * s + 2,
                          .s = &batched[static_cast<size_t>(s)],
                          .history = histories[static_cast<size_t>(s)],
                          .n_prompt = 2,
                          .allowed = masks[static_cast<size_t>(s)]});
    std::vector<token_id> got(n_rows, -1);
    sample(*ctx, requests, got);
    for (int s = 0; s < n_rows; ++s) {
      const size_t i = static_cast<size_t>(s);
      const token_id want =
          one_by_one[i].sample(logits(*ctx, 3 * s + 2), histories[i], 2, masks[i]);
      EXPECT_EQ(got[i], want) << "row " << s << " step " << step;
    }
  }
}

}  // namespace rbee::engine
