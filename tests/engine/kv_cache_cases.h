#pragma once
// The paged KV cache and the prefix cache through the engine's API, for one backend per test
// binary (kv_cache_test: the CPU, kv_cache_gpu_test: CUDA): a sequence whose positions lie in
// scattered, reused blocks decodes like one in a fresh pool, a prompt started from cached
// blocks like one prefilled from scratch; live sequences share blocks; a full pool is an
// error before any work; cached blocks are reclaimed least recently used first.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "engine/cpu/kernels.h"
#include "engine/engine.h"

namespace rbee::engine::kv_cache_cases {

inline std::string models_dir() {
  const char* env = std::getenv("RBEE_SHARED_MODELS_DIR");
  return env && *env ? env : RBEE_SHARED_MODELS_DIR;
}

// The cases run on the backend of the test's parameter; a backend this machine lacks skips.
class on_backend : public testing::TestWithParam<backend_kind> {
 protected:
  model_ptr load(const std::string& file) {
    model_params mp = model_default_params();
    mp.n_threads = 2;
    mp.backend = GetParam();
    try {
      return model_load(models_dir() + "/" + file, mp);
    } catch (const engine_error& e) {
      if (e.code != error_code::backend_unavailable) throw;
      return nullptr;
    }
  }
  // The CPU computes a position the same whatever block holds it: equal bit for bit. The
  // CUDA backend too, but a relative bound keeps the GPU test about the cache, not about
  // which cuBLAS algorithm a run picks.
  void expect_same(const std::vector<std::vector<float>>& got,
                   const std::vector<std::vector<float>>& want) const {
    if (GetParam() == backend_kind::cpu) {
      EXPECT_EQ(got, want);
      return;
    }
    ASSERT_EQ(got.size(), want.size());
    for (size_t r = 0; r < want.size(); ++r) {
      double err = 0, mag = 0;
      for (size_t i = 0; i < want[r].size(); ++i) {
        err = std::max(err, std::abs(static_cast<double>(got[r][i]) - want[r][i]));
        mag = std::max(mag, std::abs(static_cast<double>(want[r][i])));
      }
      EXPECT_LE(err, 1e-5 * mag) << "logits row " << r;
    }
  }
};
inline std::string backend_name(const testing::TestParamInfo<backend_kind>& info) {
  return info.param == backend_kind::cpu ? "cpu" : "cuda";
}
class paged_kv_cache : public on_backend {};
class prefix_cache : public on_backend {};

// The CPU's AVX2 kernels compute a row of a batch exactly as a batch of one (batch_test).
class isa_guard {
 public:
  isa_guard() : saved_(cpu::set_active_isa(cpu::isa::avx2)) {}
  ~isa_guard() { cpu::set_active_isa(saved_); }

 private:
  cpu::isa saved_;
};

#define RBEE_LOAD_OR_SKIP(m, file) \
  auto m = load(file);             \
  if (!m) GTEST_SKIP() << "no such backend here"

// A prompt of n tokens of stories260K's vocabulary (BOS, then text).
inline std::vector<token_id> prompt_of(const model& m, size_t n) {
  std::string text;
  std::vector<token_id> tokens;
  while (tokens.size() < n) {
    text += "Once upon a time, there was a little girl named Lily who loved to play outside. ";
    tokens = tokenize(m, text, true);
  }
  tokens.resize(n);
  return tokens;
}

// Decodes tokens[from, to) of sequence seq in batches of `chunk`, then n_steps greedy tokens;
// returns the logits of every decoded position that asked for them (the last of each batch).
inline std::vector<std::vector<float>> run(context& ctx, int seq,
                                           const std::vector<token_id>& tokens, int from, int chunk,
                                           int n_steps) {
  std::vector<std::vector<float>> out;
  std::vector<batch_entry> batch;
  const int n = static_cast<int>(tokens.size());
  for (int start = from; start < n; start += chunk) {
    batch.clear();
    for (int pos = start; pos < std::min(n, start + chunk); ++pos)
      batch.push_back(
          {tokens[static_cast<size_t>(pos)], pos, seq, pos + 1 == std::min(n, start + chunk)});
    decode(ctx, batch);
    const auto l = logits(ctx, static_cast<int>(batch.size()) - 1);
    out.emplace_back(l.begin(), l.end());
  }
  for (int step = 0; step < n_steps; ++step) {
    const std::vector<float>& last = out.back();
    const auto next =
        static_cast<token_id>(std::max_element(last.begin(), last.end()) - last.begin());
    const batch_entry e{next, n + step, seq, true};
    decode(ctx, std::span(&e, 1));
    const auto l = logits(ctx, 0);
    out.emplace_back(l.begin(), l.end());
  }
  return out;
}

inline context_ptr make_context(model& m, int n_seq, int n_kv_tokens = 0) {
  context_params cp = context_default_params();
  cp.n_ctx = 128;
  cp.n_seq = n_seq;
  cp.n_kv_tokens = n_kv_tokens;
  return context_create(m, cp);
}

// Fills sequences 1 and 2 a block at a time in turn, so that their blocks interleave, then
// clears both: the pool's blocks are then cached in a scattered order.
inline void scatter_pool(context& ctx, const model& m) {
  const auto other = prompt_of(m, 80);
  const int n_vocab = model_get_info(m).n_vocab;
  for (int block = 0; block < 5; ++block)
    for (int seq = 1; seq <= 2; ++seq) {
      std::vector<batch_entry> batch;
      for (int pos = block * kv_block_size; pos < (block + 1) * kv_block_size; ++pos)
        batch.push_back({(other[static_cast<size_t>(pos)] + seq) % n_vocab, pos, seq, false});
      decode(ctx, batch);
    }
  sequence_clear(ctx, 1);
  sequence_clear(ctx, 2);
}

TEST_P(paged_kv_cache, scattered_blocks_decode_exactly_like_a_fresh_pool) {
  RBEE_LOAD_OR_SKIP(m, "stories260K.gguf");
  const auto prompt = prompt_of(*m, 70);
  auto fresh = make_context(*m, 1);
  const auto want = run(*fresh, 0, prompt, 0, 24, 12);
  // A pool of exactly the blocks the others filled: sequence 0 takes them back from the
  // cache, least recently used first, in an order unlike its positions.
  auto ctx = make_context(*m, 3, 10 * kv_block_size);
  scatter_pool(*ctx, *m);
  EXPECT_EQ(context_kv_stats(*ctx).n_cached, 10);
  expect_same(run(*ctx, 0, prompt, 0, 24, 12), want);
  // 82 positions: five full blocks and a partial one.
  EXPECT_EQ(context_kv_stats(*ctx).n_used, 6);
  EXPECT_EQ(context_kv_stats(*ctx).n_cached, 4);
}

inline double relative_error(std::span<const float> a, std::span<const float> b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    den += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}

// Several sequences of different lengths in one batch, one of them cleared and started again
// in the middle, on a pool shared by all: each gives the logits it gives alone (to float
// rounding: rows of a bigger batch may take other kernel paths, as in batch_test).
TEST_P(paged_kv_cache, mixed_batches_of_several_sequences_equal_each_alone) {
  const isa_guard same_kernels;
  RBEE_LOAD_OR_SKIP(m, "stories260K.gguf");
  const std::vector<std::vector<token_id>> prompts = {prompt_of(*m, 40), prompt_of(*m, 17),
                                                      prompt_of(*m, 33)};
  std::vector<std::vector<std::vector<float>>> alone;
  for (const auto& p : prompts) {
    auto ctx = make_context(*m, 1);
    std::vector<std::vector<float>> rows;
    for (int pos = 0; pos < static_cast<int>(p.size()); ++pos) {
      const batch_entry e{p[static_cast<size_t>(pos)], pos, 0, true};
      decode(*ctx, std::span(&e, 1));
      const auto l = logits(*ctx, 0);
      rows.emplace_back(l.begin(), l.end());
    }
    alone.push_back(std::move(rows));
  }
  auto ctx = make_context(*m, 3, 8 * kv_block_size);
  std::vector<int> done(3, 0);
  bool restarted = false;
  while (done[0] < 40 || done[1] < 17 || done[2] < 33) {
    // One token of each unfinished sequence per batch (the same rows as alone).
    std::vector<batch_entry> batch;
    std::vector<int> who;
    for (int s = 0; s < 3; ++s) {
      const auto& p = prompts[static_cast<size_t>(s)];
      int& pos = done[static_cast<size_t>(s)];
      if (pos >= static_cast<int>(p.size())) continue;
      batch.push_back({p[static_cast<size_t>(pos)], pos, s, true});
      who.push_back(s);
      ++pos;
    }
    decode(*ctx, batch);
    for (size_t i = 0; i < who.size(); ++i) {
      const int s = who[i], pos = batch[i].pos;
      ASSERT_LT(relative_error(logits(*ctx, static_cast<int>(i)),
                               alone[static_cast<size_t>(s)][static_cast<size_t>(pos)]),
                1e-4)
          << "sequence " << s << " position " << pos;
    }
    if (!restarted && done[1] == 17) {
      // Sequence 1 ends and starts over: its blocks return to the pool and come back.
      sequence_clear(*ctx, 1);
      done[1] = 0;
      restarted = true;
    }
  }
  EXPECT_TRUE(restarted);
}

TEST_P(prefix_cache, a_cached_prefix_decodes_exactly_like_a_fresh_prefill) {
  RBEE_LOAD_OR_SKIP(m, "stories260K.gguf");
  const auto prompt = prompt_of(*m, 75);
  // The fresh run prefills the first 64 positions in one batch, as the cached run's first
  // request did, so that both compute every position in a batch of the same shape.
  auto fresh = make_context(*m, 1);
  auto want = run(*fresh, 0, prompt, 0, 64, 10);
  auto ctx = make_context(*m, 2);
  run(*ctx, 0, prompt, 0, 64, 10);
  sequence_clear(*ctx, 0);
  EXPECT_EQ(context_kv_stats(*ctx).n_cached, 5);  // 85 positions: five full blocks
  EXPECT_EQ(sequence_reuse_prefix(*ctx, 1, prompt), 64);
  // The cached run decodes from position 64: its first batch is the fresh run's second.
  want.erase(want.begin());
  expect_same(run(*ctx, 1, prompt, 64, 64, 10), want);
}

TEST_P(prefix_cache, reuse_stops_where_the_tokens_differ_and_before_the_last_token) {
  RBEE_LOAD_OR_SKIP(m, "stories260K.gguf");
  const auto prompt = prompt_of(*m, 64);
  auto ctx = make_context(*m, 2);
  run(*ctx, 0, prompt, 0, 64, 0);
  // Sequence 0 is still live: a second sequence shares its full blocks.
  auto other = prompt;
  other[40] = (other[40] + 1) % model_get_info(*m).n_vocab;
  EXPECT_EQ(sequence_reuse_prefix(*ctx, 1, other), 32);
  sequence_clear(*ctx, 1);
  // The whole prompt is cached, but its last token must be decoded for its logits.
  EXPECT_EQ(sequence_reuse_prefix(*ctx, 1, prompt), 48);
  sequence_clear(*ctx, 1);
  EXPECT_EQ(
      sequence_reuse_prefix(*ctx, 1, std::vector<token_id>(prompt.begin(), prompt.begin() + 16)),
      0);
  const std::vector<token_id> unrelated(40, 7);
  EXPECT_EQ(sequence_reuse_prefix(*ctx, 1, unrelated), 0);
}

// Two live sequences share the prefix blocks and then diverge: each writes only its own
// blocks, so each continues as it would alone.
TEST_P(prefix_cache, live_sequences_share_blocks_and_diverge) {
  RBEE_LOAD_OR_SKIP(m, "stories260K.gguf");
  const auto prompt = prompt_of(*m, 50);
  auto a = prompt, b = prompt;
  a.push_back(100);
  b.push_back(200);
  auto alone = make_context(*m, 1);
  const auto want_b = run(*alone, 0, b, 0, 48, 0);
  auto ctx = make_context(*m, 2);
  run(*ctx, 0, a, 0, 48, 0);
  EXPECT_EQ(sequence_reuse_prefix(*ctx, 1, b), 48);
  const kv_cache_stats st = context_kv_stats(*ctx);
  EXPECT_EQ(st.n_used, 4);  // sequence 0's four blocks, three of them shared
  const auto got_b = run(*ctx, 1, b, 48, 48, 0);
  expect_same({got_b.back()}, {want_b.back()});
  EXPECT_EQ(context_kv_stats(*ctx).n_used, 5);
}

TEST_P(paged_kv_cache, a_full_pool_refuses_the_batch_before_any_work) {
  RBEE_LOAD_OR_SKIP(m, "stories260K.gguf");
  const auto prompt = prompt_of(*m, 40);
  auto ctx = make_context(*m, 2, 3 * kv_block_size);
  run(*ctx, 0, std::vector<token_id>(prompt.begin(), prompt.begin() + 40), 0, 40, 0);
  const std::vector<batch_entry> both{{5, 40, 0, true}, {5, 0, 1, true}};
  try {
    decode(*ctx, both);
    FAIL() << "a batch past the pool was decoded";
  } catch (const engine_error& e) {
    EXPECT_EQ(e.code, error_code::kv_cache_full);
    EXPECT_NE(std::string(e.what()).find("n_kv_tokens"), std::string::npos) << e.what();
  }
  // Nothing moved: sequence 0 continues at 40 in its last block, and once it is cleared the
  // other sequence finds room.
  const batch_entry next{5, 40, 0, true};
  EXPECT_NO_THROW(decode(*ctx, std::span(&next, 1)));
  sequence_clear(*ctx, 0);
  const batch_entry first{5, 0, 1, true};
  EXPECT_NO_THROW(decode(*ctx, std::span(&first, 1)));
  // A copy needs a block of its own for a partial last block.
  auto full = make_context(*m, 2, 2 * kv_block_size);
  run(*full, 0, std::vector<token_id>(prompt.begin(), prompt.begin() + 20), 0, 20, 0);
  try {
    sequence_copy(*full, 0, 1);
    FAIL() << "a copy past the pool was made";
  } catch (const engine_error& e) {
    EXPECT_EQ(e.code, error_code::kv_cache_full);
  }
}

TEST_P(prefix_cache, the_least_recently_used_blocks_are_reclaimed_first) {
  RBEE_LOAD_OR_SKIP(m, "stories260K.gguf");
  const auto a = prompt_of(*m, 49);
  std::vector<token_id> b(49);
  for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<token_id>(3 + i);
  auto ctx = make_context(*m, 1, 5 * kv_block_size);
  run(*ctx, 0, a, 0, 49, 0);  // four blocks: three full, cached when cleared
  sequence_clear(*ctx, 0);
  EXPECT_EQ(context_kv_stats(*ctx).n_cached, 3);
  // b needs four blocks: the two free ones, then two cached ones, a's last blocks first, so
  // the start of a (its first block) stays.
  run(*ctx, 0, b, 0, 49, 0);
  sequence_clear(*ctx, 0);
  EXPECT_EQ(sequence_reuse_prefix(*ctx, 0, a), kv_block_size);
  sequence_clear(*ctx, 0);
  EXPECT_EQ(sequence_reuse_prefix(*ctx, 0, b), 3 * kv_block_size);
}

// n > 1 choices: a copy shares the source's full blocks and copies only its partial one.
TEST_P(paged_kv_cache, a_copy_shares_full_blocks_and_continues_like_its_source) {
  RBEE_LOAD_OR_SKIP(m, "stories260K.gguf");
  const auto prompt = prompt_of(*m, 40);
  auto ctx = make_context(*m, 2);
  run(*ctx, 0, prompt, 0, 40, 0);
  sequence_copy(*ctx, 0, 1);
  EXPECT_EQ(context_kv_stats(*ctx).n_used, 4);  // two shared full blocks, two partial ones
  const batch_entry next0{77, 40, 0, true};
  decode(*ctx, std::span(&next0, 1));
  const auto l0 = logits(*ctx, 0);
  const std::vector<float> want(l0.begin(), l0.end());
  const batch_entry next1{77, 40, 1, true};
  decode(*ctx, std::span(&next1, 1));
  const auto l1 = logits(*ctx, 0);
  expect_same({std::vector<float>(l1.begin(), l1.end())}, {want});
}

}  // namespace rbee::engine::kv_cache_cases
