// The paged KV cache's books (engine/kv_blocks.h) without a model: reference counts, the
// free list, the prefix cache's key table under heavy reuse of its slots, and the order in
// which cached blocks are reclaimed.
#include <gtest/gtest.h>

#include <vector>

#include "engine/kv_blocks.h"

namespace rbee::engine {
namespace {

// n_blocks * kv_block_size tokens that differ from round to round.
std::vector<token_id> tokens_of_round(int round, int n_blocks) {
  std::vector<token_id> t(static_cast<size_t>(n_blocks) * kv_block_size);
  for (size_t i = 0; i < t.size(); ++i) t[i] = static_cast<token_id>(round * 7919 + i * 31);
  return t;
}

void fill(kv_block_pool& pool, int seq, const std::vector<token_id>& tokens) {
  const int n = static_cast<int>(tokens.size()) / kv_block_size;
  pool.grow(seq, n);
  for (int pos = 0; pos < static_cast<int>(tokens.size()); ++pos)
    pool.set_token(seq, pos, tokens[static_cast<size_t>(pos)]);
  pool.register_full(seq, 0, n);
}

// Every round fills the whole pool with new blocks, which reclaims every block of the round
// before: the key table (16 slots for 8 blocks) is emptied and refilled hundreds of times,
// and each round's chain must still be found whole, the previous one not at all.
TEST(kv_block_pool, keys_survive_heavy_churn_of_the_table) {
  constexpr int n_blocks = 8;
  kv_block_pool pool(n_blocks, 2, n_blocks);
  for (int round = 0; round < 400; ++round) {
    const auto tokens = tokens_of_round(round, n_blocks);
    fill(pool, 0, tokens);
    pool.release(0);
    ASSERT_EQ(pool.stats().n_cached, n_blocks) << "round " << round;
    ASSERT_EQ(pool.reuse(1, tokens, n_blocks), n_blocks) << "round " << round;
    pool.release(1);
    if (round > 0) {
      ASSERT_EQ(pool.reuse(1, tokens_of_round(round - 1, n_blocks), n_blocks), 0)
          << "round " << round;
      pool.release(1);
    }
  }
}

TEST(kv_block_pool, shared_blocks_return_when_their_last_holder_lets_go) {
  kv_block_pool pool(4, 2, 4);
  const auto tokens = tokens_of_round(1, 3);
  fill(pool, 0, tokens);
  EXPECT_EQ(pool.reuse(1, tokens, 2), 2);
  EXPECT_EQ(pool.stats().n_used, 3);
  pool.release(0);
  // Sequence 1 still holds the first two; the third is cached.
  EXPECT_EQ(pool.stats().n_used, 2);
  EXPECT_EQ(pool.stats().n_cached, 1);
  EXPECT_EQ(pool.n_available(), 2);
  pool.release(1);
  EXPECT_EQ(pool.stats().n_cached, 3);
  EXPECT_EQ(pool.n_available(), 4);
}

// Cached blocks go back to the pool least recently used first, and within one chain its
// later blocks before the ones that lead to them.
TEST(kv_block_pool, the_oldest_cached_blocks_are_taken_first) {
  kv_block_pool pool(4, 1, 4);
  const auto a = tokens_of_round(1, 2), b = tokens_of_round(2, 2);
  fill(pool, 0, a);
  pool.release(0);
  fill(pool, 0, b);
  pool.release(0);
  EXPECT_EQ(pool.stats().n_cached, 4);
  pool.grow(0, 1);  // takes a's second block
  pool.release(0);
  EXPECT_EQ(pool.reuse(0, a, 2), 1);
  pool.release(0);
  EXPECT_EQ(pool.reuse(0, b, 2), 2);
  pool.release(0);
}

}  // namespace
}  // namespace rbee::engine
