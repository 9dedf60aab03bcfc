#pragma once
// Incremental matching of bytes against a grammar (grammar.h): a pushdown automaton whose
// state is a set of stacks, one per way the bytes so far can be parsed.
//
// A stack is a chain of frames, the top one first. A frame is a place in an alternative:
// the top frame's element is the next to match; a lower frame's element is the rule (or
// repeat, with its count of finished repetitions) that the frame above is matching. Stacks
// share their lower frames: nodes live in one arena and point to their parent, so a step
// adds a node or two instead of copying a stack.
//
// Rules are entered lazily: a byte descends only into the alternatives whose first bytes
// hold it, so a state keeps few stacks (one inside a string, a handful at a choice).
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "structured/grammar.h"

namespace rbee::structured {

class matcher {
 public:
  using stack_id = int32_t;  // the top node of a stack

  explicit matcher(std::shared_ptr<const grammar> g);

  // Consumes one byte; false (state unchanged) when the grammar does not allow it here.
  bool accept_byte(uint8_t b);
  // Consumes all of `bytes`, or none of them (false, state unchanged).
  bool accept(std::string_view bytes);
  // The bytes so far form a whole document.
  bool complete() const { return complete(stacks_); }
  // Complete, and no byte may follow: the document is over.
  bool finished() const;
  // Bytes that may come next.
  byte_set next_bytes() const;

  // ---- stepping many continuations at once (token_constraint walks a vocabulary) ----
  std::span<const stack_id> stacks() const { return stacks_; }
  // Appends to `out` the stacks that `stack` becomes after byte b (none: b is not allowed).
  // New nodes go to the arena's end; truncate_arena(mark) drops them again.
  void advance(stack_id stack, uint8_t b, std::vector<stack_id>& out);
  // Drops stacks of out[first..] that equal an earlier one of that range.
  void remove_duplicates(std::vector<stack_id>& out, size_t first) const;
  bool complete(std::span<const stack_id> stacks) const;
  size_t arena_size() const { return nodes_.size(); }
  void truncate_arena(size_t size) { nodes_.resize(size); }
  // Appends a value that equals another state's exactly when the states are the same.
  void append_state_key(std::vector<uint32_t>& key) const;

 private:
  struct frame {
    uint32_t pos = 0;    // element index
    uint32_t count = 0;  // repeat: repetitions finished
    bool operator==(const frame&) const = default;
  };
  struct node {
    frame f;
    stack_id parent = -1;
  };

  stack_id make(frame f, stack_id parent);
  stack_id replace_top(stack_id stack, frame f);
  void advance(stack_id stack, uint8_t b, int pushed, std::vector<stack_id>& out);
  // A lower frame as a top frame: the element it was matching has finished once more.
  frame resumed(frame f) const;
  bool frame_nullable(frame f) const;
  byte_set frame_first(frame f) const;
  bool stack_complete(stack_id stack) const;
  // Keeps only the nodes the current stacks use, when the arena has grown well past them.
  void compact();

  std::shared_ptr<const grammar> g_;
  std::vector<node> nodes_;
  std::vector<stack_id> stacks_;
  std::vector<stack_id> next_;  // scratch for accept_byte
  size_t nodes_after_compact_ = 0;
};

}  // namespace rbee::structured
