#pragma once
// Constrained decoding over a model's vocabulary: which tokens keep the output inside a
// grammar, as a bitset the sampler applies before its choice.
//
// token_vocabulary is built once per model: the token pieces in a byte trie (a depth-first
// array, each node knowing where its subtree ends). token_constraint walks that trie with
// its matcher: a byte the grammar refuses prunes the whole subtree, so a step costs about
// the number of pieces that fit, not the vocabulary size. Masks of states already seen (a
// long string repeats one state) come from a small cache.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "structured/grammar.h"
#include "structured/matcher.h"

namespace rbee::structured {

using token = int32_t;

class token_vocabulary {
 public:
  // pieces[t]: the bytes token t stands for; empty for a token that never belongs in a
  // document (control and other special tokens). end_tokens: the end-of-generation tokens,
  // allowed exactly when the document is complete.
  token_vocabulary(const std::vector<std::string>& pieces, std::vector<token> end_tokens);

  int n_tokens() const { return n_tokens_; }
  const std::string& piece(token t) const { return pieces_[static_cast<size_t>(t)]; }
  std::span<const token> end_tokens() const { return end_tokens_; }
  // Words of a mask of this vocabulary (one bit per token).
  size_t mask_words() const { return (static_cast<size_t>(n_tokens_) + 63) / 64; }

  struct trie_node {
    uint8_t byte = 0;
    uint32_t subtree_end = 0;   // index past this node's last descendant
    uint32_t tokens_begin = 0;  // tokens whose piece ends here: sorted_tokens[begin, end)
    uint32_t tokens_end = 0;
  };
  // Node 0 is the root (the empty prefix); the others in depth-first order.
  std::span<const trie_node> trie() const { return trie_; }
  std::span<const token> sorted_tokens() const { return sorted_tokens_; }

 private:
  int n_tokens_ = 0;
  std::vector<std::string> pieces_;
  std::vector<token> end_tokens_;
  std::vector<trie_node> trie_;
  std::vector<token> sorted_tokens_;
};

class token_constraint {
 public:
  // `vocab` must outlive the constraint.
  token_constraint(std::shared_ptr<const grammar> g, const token_vocabulary& vocab);

  // Sets in `allowed` (vocab.mask_words() words) the bits of the tokens that keep the
  // output valid, and of the end tokens when the output is complete; clears the others.
  // Returns how many are set (0: the vocabulary cannot continue this document).
  size_t fill_allowed(std::span<uint64_t> allowed);
  // Advances by the token's bytes; false (state unchanged) when they break the grammar or
  // the token is an end token.
  bool accept(token t);
  bool complete() const { return matcher_.complete(); }
  // Complete and nothing may follow: generation should stop here.
  bool finished() const { return matcher_.finished(); }

 private:
  void walk_trie(std::span<uint64_t> allowed);

  struct cached_mask {
    std::vector<uint32_t> key;
    std::vector<uint64_t> mask;
    size_t count = 0;
    uint64_t last_used = 0;
  };

  const token_vocabulary* vocab_;
  matcher matcher_;
  // Walk scratch: the stacks of each trie level, one after another.
  std::vector<matcher::stack_id> level_stacks_;
  std::vector<uint32_t> key_;
  std::vector<cached_mask> cache_;
  uint64_t clock_ = 0;
};

}  // namespace rbee::structured
