#include "engine/kv_blocks.h"

#include <algorithm>
#include <bit>
#include <cassert>

namespace rbee::engine {

namespace {

constexpr uint64_t chain_seed = 0xcbf29ce484222325ull;

// The key of a block: its tokens hashed (FNV-1a over 32-bit words, then a final mix) on top
// of the key of the block before it (chain_seed for the first).
uint64_t chain_key(uint64_t previous, std::span<const token_id> tokens) {
  uint64_t h = previous;
  for (const token_id t : tokens) {
    h ^= static_cast<uint32_t>(t);
    h *= 0x100000001b3ull;
  }
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  return h;
}

}  // namespace

kv_block_pool::kv_block_pool(int n_blocks, int n_seq, int max_blocks_per_seq)
    : n_blocks_(n_blocks),
      max_blocks_(max_blocks_per_seq),
      tables_(static_cast<size_t>(n_seq) * static_cast<size_t>(max_blocks_per_seq), 0),
      n_held_(static_cast<size_t>(n_seq), 0),
      refs_(static_cast<size_t>(n_blocks), 0),
      key_(static_cast<size_t>(n_blocks), 0),
      cached_(static_cast<size_t>(n_blocks), 0),
      tokens_(static_cast<size_t>(n_blocks) * kv_block_size, 0),
      prev_(static_cast<size_t>(n_blocks), -1),
      next_(static_cast<size_t>(n_blocks), -1) {
  assert(n_blocks > 0 && n_seq > 0 && max_blocks_per_seq > 0 && "kv_block_pool: empty");
  // Taken from the back: block 0 first, so a fresh context fills the pool in order.
  free_.reserve(static_cast<size_t>(n_blocks));
  for (int32_t b = n_blocks - 1; b >= 0; --b) free_.push_back(b);
  const size_t capacity = std::bit_ceil(2 * static_cast<size_t>(n_blocks));
  slot_key_.assign(capacity, 0);
  slot_block_.assign(capacity, -1);
}

kv_cache_stats kv_block_pool::stats() const {
  return {.n_blocks = n_blocks_,
          .n_used = n_blocks_ - static_cast<int>(free_.size()) - n_cached_,
          .n_cached = n_cached_};
}

int32_t kv_block_pool::take_block() {
  int32_t b;
  if (!free_.empty()) {
    b = free_.back();
    free_.pop_back();
  } else {
    assert(lru_oldest_ >= 0 && "kv_block_pool: no block to take");
    b = lru_oldest_;
    lru_remove(b);
    erase(key_[static_cast<size_t>(b)]);
    cached_[static_cast<size_t>(b)] = 0;
  }
  refs_[static_cast<size_t>(b)] = 1;
  return b;
}

void kv_block_pool::grow(int seq, int n) {
  assert(n <= max_blocks_ && "kv_block_pool: table overflow");
  int& held = n_held_[static_cast<size_t>(seq)];
  if (n <= held) return;
  assert(n - held <= n_available() && "kv_block_pool: grown past the pool");
  for (; held < n; ++held) tables_[index(seq, held)] = take_block();
  ++version_;
}

void kv_block_pool::release(int seq) {
  int& held = n_held_[static_cast<size_t>(seq)];
  // Last block first: a chain's later blocks are older in the LRU list, so they are evicted
  // before the blocks that lead to them.
  for (int i = held - 1; i >= 0; --i) {
    const int32_t b = tables_[index(seq, i)];
    if (--refs_[static_cast<size_t>(b)] > 0) continue;
    if (cached_[static_cast<size_t>(b)])
      lru_push(b);
    else
      free_.push_back(b);
  }
  held = 0;
}

void kv_block_pool::share(int src, int dst, int n) {
  assert(n_held(dst) == 0 && n <= n_held(src) && "kv_block_pool: bad share");
  for (int i = 0; i < n; ++i) {
    const int32_t b = tables_[index(src, i)];
    ++refs_[static_cast<size_t>(b)];
    tables_[index(dst, i)] = b;
  }
  n_held_[static_cast<size_t>(dst)] = n;
  if (n > 0) ++version_;
}

void kv_block_pool::set_token(int seq, int pos, token_id token) {
  const int32_t b = tables_[index(seq, pos / kv_block_size)];
  assert(refs_[static_cast<size_t>(b)] == 1 && "kv_block_pool: writing a shared block");
  tokens_[static_cast<size_t>(b) * kv_block_size + static_cast<size_t>(pos % kv_block_size)] =
      token;
}

void kv_block_pool::copy_tokens(int32_t src, int32_t dst) {
  std::copy_n(tokens_.begin() + static_cast<ptrdiff_t>(src) * kv_block_size, kv_block_size,
              tokens_.begin() + static_cast<ptrdiff_t>(dst) * kv_block_size);
}

void kv_block_pool::register_full(int seq, int from, int to) {
  for (int i = from; i < to; ++i) {
    const int32_t b = tables_[index(seq, i)];
    if (cached_[static_cast<size_t>(b)]) continue;  // reused or shared: keyed already
    const uint64_t previous = i == 0 ? chain_seed : key_[static_cast<size_t>(block(seq, i - 1))];
    const std::span<const token_id> tokens(tokens_.data() + static_cast<size_t>(b) * kv_block_size,
                                           kv_block_size);
    const uint64_t key = chain_key(previous, tokens);
    key_[static_cast<size_t>(b)] = key;
    if (find(key) >= 0) continue;  // another sequence computed the same block first
    insert(key, b);
    cached_[static_cast<size_t>(b)] = 1;
  }
}

int kv_block_pool::reuse(int seq, std::span<const token_id> prompt, int max_blocks) {
  assert(n_held(seq) == 0 && "kv_block_pool: reuse into a sequence that holds blocks");
  const int n =
      std::min({max_blocks, max_blocks_, static_cast<int>(prompt.size()) / kv_block_size});
  uint64_t key = chain_seed;
  int taken = 0;
  for (; taken < n; ++taken) {
    const auto tokens = prompt.subspan(static_cast<size_t>(taken) * kv_block_size, kv_block_size);
    key = chain_key(key, tokens);
    const int32_t b = find(key);
    // The key stands for every token up to here; the block's own tokens are compared too.
    if (b < 0 || !std::equal(tokens.begin(), tokens.end(),
                             tokens_.begin() + static_cast<ptrdiff_t>(b) * kv_block_size))
      break;
    acquire_cached(b);
    tables_[index(seq, taken)] = b;
  }
  n_held_[static_cast<size_t>(seq)] = taken;
  if (taken > 0) ++version_;
  return taken;
}

void kv_block_pool::acquire_cached(int32_t block) {
  if (refs_[static_cast<size_t>(block)]++ == 0) lru_remove(block);
}

void kv_block_pool::lru_push(int32_t block) {
  const size_t b = static_cast<size_t>(block);
  prev_[b] = lru_newest_;
  next_[b] = -1;
  if (lru_newest_ >= 0)
    next_[static_cast<size_t>(lru_newest_)] = block;
  else
    lru_oldest_ = block;
  lru_newest_ = block;
  ++n_cached_;
}

void kv_block_pool::lru_remove(int32_t block) {
  const size_t b = static_cast<size_t>(block);
  if (prev_[b] >= 0)
    next_[static_cast<size_t>(prev_[b])] = next_[b];
  else
    lru_oldest_ = next_[b];
  if (next_[b] >= 0)
    prev_[static_cast<size_t>(next_[b])] = prev_[b];
  else
    lru_newest_ = prev_[b];
  prev_[b] = next_[b] = -1;
  --n_cached_;
}

int32_t kv_block_pool::find(uint64_t key) const {
  const size_t mask = slot_key_.size() - 1;
  for (size_t i = key & mask;; i = (i + 1) & mask) {
    if (slot_block_[i] < 0) return -1;
    if (slot_key_[i] == key) return slot_block_[i];
  }
}

void kv_block_pool::insert(uint64_t key, int32_t block) {
  const size_t mask = slot_key_.size() - 1;
  size_t i = key & mask;
  while (slot_block_[i] >= 0) i = (i + 1) & mask;
  slot_key_[i] = key;
  slot_block_[i] = block;
}

// Removes the key and shifts later entries of its run back, so no probe stops early.
void kv_block_pool::erase(uint64_t key) {
  const size_t mask = slot_key_.size() - 1;
  size_t i = key & mask;
  while (slot_block_[i] >= 0 && slot_key_[i] != key) i = (i + 1) & mask;
  assert(slot_block_[i] >= 0 && "kv_block_pool: erasing a key that is not there");
  for (size_t j = (i + 1) & mask; slot_block_[j] >= 0; j = (j + 1) & mask) {
    const size_t home = slot_key_[j] & mask;
    // Entry j may move to the hole at i when its home is not in (i, j] (cyclically).
    const bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
    if (stays) continue;
    slot_key_[i] = slot_key_[j];
    slot_block_[i] = slot_block_[j];
    i = j;
  }
  slot_block_[i] = -1;
}

}  // namespace rbee::engine
