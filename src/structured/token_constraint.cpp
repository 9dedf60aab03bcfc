#include "structured/token_constraint.h"

#include <algorithm>
#include <bit>
#include <cassert>

namespace rbee::structured {

namespace {

// Masks a constraint keeps: the states a document returns to (inside a string, between
// members) are few; 32 masks of a 150k vocabulary are 600 KiB.
constexpr size_t cache_capacity = 32;

size_t count_bits(std::span<const uint64_t> mask) {
  size_t n = 0;
  for (const uint64_t w : mask) n += static_cast<size_t>(std::popcount(w));
  return n;
}

void set_bit(std::span<uint64_t> mask, token t) {
  mask[static_cast<size_t>(t) >> 6] |= uint64_t{1} << (static_cast<unsigned>(t) & 63);
}

}  // namespace

token_vocabulary::token_vocabulary(const std::vector<std::string>& pieces,
                                   std::vector<token> end_tokens)
    : n_tokens_(static_cast<int>(pieces.size())),
      pieces_(pieces),
      end_tokens_(std::move(end_tokens)) {
  for (size_t t = 0; t < pieces_.size(); ++t)
    if (!pieces_[t].empty()) sorted_tokens_.push_back(static_cast<token>(t));
  // std::string orders bytes as unsigned: the trie's children come out in byte order.
  std::stable_sort(sorted_tokens_.begin(), sorted_tokens_.end(), [&](token a, token b) {
    return pieces_[static_cast<size_t>(a)] < pieces_[static_cast<size_t>(b)];
  });

  trie_.push_back({});
  std::vector<uint32_t> path = {0};  // path[d]: the node of the current piece's prefix of length d
  std::string_view previous;
  for (uint32_t j = 0; j < sorted_tokens_.size(); ++j) {
    const std::string& piece = pieces_[static_cast<size_t>(sorted_tokens_[j])];
    const size_t common = static_cast<size_t>(
        std::mismatch(previous.begin(), previous.end(), piece.begin(), piece.end()).first -
        previous.begin());
    while (path.size() > common + 1) {
      trie_[path.back()].subtree_end = static_cast<uint32_t>(trie_.size());
      path.pop_back();
    }
    for (size_t d = common; d < piece.size(); ++d) {
      trie_.push_back({.byte = static_cast<uint8_t>(piece[d]),
                       .subtree_end = 0,
                       .tokens_begin = 0,
                       .tokens_end = 0});
      path.push_back(static_cast<uint32_t>(trie_.size() - 1));
    }
    trie_node& end = trie_[path.back()];
    if (end.tokens_end == end.tokens_begin) end.tokens_begin = j;
    end.tokens_end = j + 1;
    previous = piece;
  }
  for (const uint32_t node : path) trie_[node].subtree_end = static_cast<uint32_t>(trie_.size());
}

token_constraint::token_constraint(std::shared_ptr<const grammar> g, const token_vocabulary& vocab)
    : vocab_(&vocab), matcher_(std::move(g)) {}

bool token_constraint::accept(token t) {
  if (t < 0 || t >= vocab_->n_tokens()) return false;
  const std::string& piece = vocab_->piece(t);
  return !piece.empty() && matcher_.accept(piece);
}

size_t token_constraint::fill_allowed(std::span<uint64_t> allowed) {
  assert(allowed.size() == vocab_->mask_words() && "fill_allowed: mask of the wrong size");
  key_.clear();
  matcher_.append_state_key(key_);
  ++clock_;
  for (cached_mask& c : cache_) {
    if (c.key == key_) {
      std::copy(c.mask.begin(), c.mask.end(), allowed.begin());
      c.last_used = clock_;
      return c.count;
    }
  }
  walk_trie(allowed);
  if (matcher_.complete())
    for (const token t : vocab_->end_tokens()) set_bit(allowed, t);
  const size_t count = count_bits(allowed);

  cached_mask* slot = nullptr;
  if (cache_.size() < cache_capacity) {
    slot = &cache_.emplace_back();
  } else {
    slot = &*std::min_element(cache_.begin(), cache_.end(), [](const auto& a, const auto& b) {
      return a.last_used < b.last_used;
    });
  }
  slot->key = key_;
  slot->mask.assign(allowed.begin(), allowed.end());
  slot->count = count;
  slot->last_used = clock_;
  return count;
}

void token_constraint::walk_trie(std::span<uint64_t> allowed) {
  std::fill(allowed.begin(), allowed.end(), 0);
  const auto trie = vocab_->trie();
  const auto sorted = vocab_->sorted_tokens();
  // One level per byte of the current prefix: the stacks after it, where its subtree ends,
  // and the arena size to return to when leaving it.
  struct level {
    uint32_t subtree_end;
    size_t stacks_begin, stacks_end;
    size_t arena_mark;
  };
  std::vector<level> levels;
  const auto start = matcher_.stacks();
  level_stacks_.assign(start.begin(), start.end());
  levels.push_back(
      {static_cast<uint32_t>(trie.size()), 0, level_stacks_.size(), matcher_.arena_size()});
  uint32_t i = 1;
  while (i < trie.size()) {
    while (levels.back().subtree_end <= i) {
      matcher_.truncate_arena(levels.back().arena_mark);
      level_stacks_.resize(levels.back().stacks_begin);
      levels.pop_back();
    }
    const level parent = levels.back();
    const size_t mark = matcher_.arena_size();
    const size_t begin = level_stacks_.size();
    for (size_t k = parent.stacks_begin; k < parent.stacks_end; ++k)
      matcher_.advance(level_stacks_[k], trie[i].byte, level_stacks_);
    if (level_stacks_.size() == begin) {
      // The grammar refuses this byte: no piece with this prefix fits.
      matcher_.truncate_arena(mark);
      i = trie[i].subtree_end;
      continue;
    }
    if (level_stacks_.size() - begin > 1) matcher_.remove_duplicates(level_stacks_, begin);
    for (uint32_t j = trie[i].tokens_begin; j < trie[i].tokens_end; ++j)
      set_bit(allowed, sorted[j]);
    levels.push_back({trie[i].subtree_end, begin, level_stacks_.size(), mark});
    ++i;
  }
  matcher_.truncate_arena(levels.front().arena_mark);
}

}  // namespace rbee::structured
