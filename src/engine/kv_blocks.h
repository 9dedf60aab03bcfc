#pragma once
// The paged KV cache's bookkeeping, the same for every backend (docs/kv-cache.md): a pool of
// blocks of kv_block_size positions, each sequence's block table, reference counts, and the
// prefix cache. A full block is keyed by a hash of its tokens chained with the hash of the
// block before it, so equal keys mean equal tokens from position 0 on; it keeps its keys and
// values after the sequences holding it are cleared and goes back to the pool least recently
// used first. Blocks are only shared when full, and a full block is never written again, so
// no copy-on-write is needed. The backends hold the keys and values and find them through
// the tables (backend.h). Nothing here allocates after construction.
#include <cstdint>
#include <span>
#include <vector>

#include "engine/engine.h"

namespace rbee::engine {

class kv_block_pool {
 public:
  kv_block_pool(int n_blocks, int n_seq, int max_blocks_per_seq);

  int max_blocks() const { return max_blocks_; }
  // (n_seq, max_blocks()) block ids; entries past a sequence's own blocks are stale but
  // always name a block of the pool.
  const int32_t* tables() const { return tables_.data(); }
  // Changes whenever an entry below some sequence's block count changes.
  uint64_t tables_version() const { return version_; }
  int n_held(int seq) const { return n_held_[static_cast<size_t>(seq)]; }
  int32_t block(int seq, int i) const { return tables_[index(seq, i)]; }
  // Blocks that can be taken now: free ones and cached ones no sequence holds.
  int n_available() const { return static_cast<int>(free_.size()) + n_cached_; }
  kv_cache_stats stats() const;

  // Grows seq's table to n blocks; n - n_held(seq) <= n_available() (asserted). A block taken
  // from the cache is forgotten there.
  void grow(int seq, int n);
  // Drops seq's blocks: those in the prefix cache stay there, the others become free.
  void release(int seq);
  // The empty sequence dst shares src's first n blocks.
  void share(int src, int dst, int n);
  // The token at position pos of seq, whose block seq holds and no other sequence shares.
  void set_token(int seq, int pos, token_id token);
  // Copies the tokens of block src to block dst (with their keys and values, by the caller).
  void copy_tokens(int32_t src, int32_t dst);
  // seq's blocks [from, to) are full: keys them and enters them in the prefix cache (a key
  // already there keeps its first block).
  void register_full(int seq, int from, int to);
  // The empty sequence seq takes the cached blocks of prompt's longest cached prefix, at most
  // max_blocks of them; returns how many.
  int reuse(int seq, std::span<const token_id> prompt, int max_blocks);

 private:
  size_t index(int seq, int i) const {
    return static_cast<size_t>(seq) * static_cast<size_t>(max_blocks_) + static_cast<size_t>(i);
  }
  int32_t take_block();
  void acquire_cached(int32_t block);  // one more holder of a cached block
  // The least recently used list of cached blocks no sequence holds (intrusive, by id).
  void lru_push(int32_t block);
  void lru_remove(int32_t block);
  // The prefix cache's key -> block table: open addressing, linear probing.
  int32_t find(uint64_t key) const;
  void insert(uint64_t key, int32_t block);
  void erase(uint64_t key);

  int n_blocks_, max_blocks_;
  std::vector<int32_t> tables_;       // (n_seq, max_blocks)
  std::vector<int> n_held_;           // (n_seq,)
  std::vector<int32_t> free_;         // a stack of free blocks (capacity n_blocks)
  std::vector<int> refs_;             // (n_blocks,) sequences holding each block
  std::vector<uint64_t> key_;         // (n_blocks,) chained hash of a full block
  std::vector<uint8_t> cached_;       // (n_blocks,) entered in the prefix cache
  std::vector<token_id> tokens_;      // (n_blocks, kv_block_size)
  std::vector<int32_t> prev_, next_;  // (n_blocks,) the LRU list's links, -1 at its ends
  int32_t lru_oldest_ = -1, lru_newest_ = -1;
  int n_cached_ = 0;                 // blocks in the LRU list
  std::vector<uint64_t> slot_key_;   // (capacity,) the table of the prefix cache
  std::vector<int32_t> slot_block_;  // (capacity,) -1: empty
  uint64_t version_ = 0;
};

}  // namespace rbee::engine
