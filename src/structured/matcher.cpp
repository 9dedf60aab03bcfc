#include "structured/matcher.h"

#include <cassert>

namespace rbee::structured {

matcher::matcher(std::shared_ptr<const grammar> g) : g_(std::move(g)) {
  assert(g_ && !g_->first_from.empty() && "matcher: needs a finished grammar");
  stacks_.push_back(make({.pos = g_->start, .count = 0}, -1));
  nodes_after_compact_ = nodes_.size();
}

matcher::stack_id matcher::make(frame f, stack_id parent) {
  nodes_.push_back({f, parent});
  return static_cast<stack_id>(nodes_.size() - 1);
}

matcher::stack_id matcher::replace_top(stack_id stack, frame f) {
  const node& n = nodes_[static_cast<size_t>(stack)];
  return n.f == f ? stack : make(f, n.parent);
}

matcher::frame matcher::resumed(frame f) const {
  const element& e = g_->elements[f.pos];
  if (e.kind == element_kind::repeat) return {f.pos, g_->next_count(e, f.count)};
  return {f.pos + 1, 0};
}

bool matcher::frame_nullable(frame f) const {
  const element& e = g_->elements[f.pos];
  if (e.kind == element_kind::repeat)
    return (f.count >= e.min || g_->rule_nullable[e.index]) && g_->suffix_nullable[f.pos + 1];
  return g_->suffix_nullable[f.pos] != 0;
}

byte_set matcher::frame_first(frame f) const {
  const element& e = g_->elements[f.pos];
  if (e.kind != element_kind::repeat) return g_->first_from[f.pos];
  byte_set s;
  if (f.count < e.max) s = g_->rule_first[e.index];
  if (f.count >= e.min || g_->rule_nullable[e.index]) s |= g_->first_from[f.pos + 1];
  return s;
}

void matcher::advance(stack_id stack, uint8_t b, std::vector<stack_id>& out) {
  advance(stack, b, 0, out);
}

// `pushed`: frames this call pushed above the original stack. Reaching the end of such a
// frame means it matched nothing, a path the skip over its nullable element already covers.
void matcher::advance(stack_id stack, uint8_t b, int pushed, std::vector<stack_id>& out) {
  const frame f = nodes_[static_cast<size_t>(stack)].f;
  const element& e = g_->elements[f.pos];
  switch (e.kind) {
    case element_kind::bytes:
      if (g_->byte_sets[e.index].test(b)) out.push_back(replace_top(stack, {f.pos + 1, 0}));
      return;
    case element_kind::end: {
      if (pushed > 0) return;
      const stack_id parent = nodes_[static_cast<size_t>(stack)].parent;
      if (parent < 0) return;  // the document is over
      const frame pf = nodes_[static_cast<size_t>(parent)].f;
      advance(replace_top(parent, resumed(pf)), b, 0, out);
      return;
    }
    case element_kind::rule:
    case element_kind::repeat: {
      const bool may_enter = e.kind == element_kind::rule || f.count < e.max;
      if (may_enter) {
        for (const uint32_t alt : g_->rule_alternatives[e.index]) {
          if (g_->first_from[alt].test(b)) advance(make({alt, 0}, stack), b, pushed + 1, out);
        }
      }
      const bool may_skip = e.kind == element_kind::rule
                                ? g_->rule_nullable[e.index] != 0
                                : f.count >= e.min || g_->rule_nullable[e.index];
      // Past the element, b is consumed later in this alternative or (for an original
      // frame) after it ends.
      const bool b_follows =
          g_->first_from[f.pos + 1].test(b) || (pushed == 0 && g_->suffix_nullable[f.pos + 1]);
      if (may_skip && b_follows) advance(replace_top(stack, {f.pos + 1, 0}), b, pushed, out);
      return;
    }
  }
}

void matcher::remove_duplicates(std::vector<stack_id>& out, size_t first) const {
  auto same = [&](stack_id a, stack_id b) {
    while (a != b) {
      if (a < 0 || b < 0) return false;
      const node& na = nodes_[static_cast<size_t>(a)];
      const node& nb = nodes_[static_cast<size_t>(b)];
      if (!(na.f == nb.f)) return false;
      a = na.parent;
      b = nb.parent;
    }
    return true;
  };
  size_t kept = first;
  for (size_t i = first; i < out.size(); ++i) {
    bool seen = false;
    for (size_t j = first; j < kept && !seen; ++j) seen = same(out[j], out[i]);
    if (!seen) out[kept++] = out[i];
  }
  out.resize(kept);
}

bool matcher::accept_byte(uint8_t b) {
  const size_t mark = nodes_.size();
  next_.clear();
  for (const stack_id s : stacks_) advance(s, b, 0, next_);
  if (next_.empty()) {
    truncate_arena(mark);
    return false;
  }
  remove_duplicates(next_, 0);
  stacks_.swap(next_);
  if (nodes_.size() > 4 * nodes_after_compact_ + 4096) compact();
  return true;
}

bool matcher::accept(std::string_view bytes) {
  const std::vector<stack_id> before = stacks_;
  for (const char c : bytes) {
    if (!accept_byte(static_cast<uint8_t>(c))) {
      stacks_ = before;
      return false;
    }
  }
  return true;
}

bool matcher::stack_complete(stack_id stack) const {
  bool top = true;
  for (stack_id s = stack; s >= 0; s = nodes_[static_cast<size_t>(s)].parent) {
    const frame f = nodes_[static_cast<size_t>(s)].f;
    if (!frame_nullable(top ? f : resumed(f))) return false;
    top = false;
  }
  return true;
}

bool matcher::complete(std::span<const stack_id> stacks) const {
  for (const stack_id s : stacks)
    if (stack_complete(s)) return true;
  return false;
}

byte_set matcher::next_bytes() const {
  byte_set out;
  for (const stack_id stack : stacks_) {
    bool top = true;
    for (stack_id s = stack; s >= 0; s = nodes_[static_cast<size_t>(s)].parent) {
      const frame f =
          top ? nodes_[static_cast<size_t>(s)].f : resumed(nodes_[static_cast<size_t>(s)].f);
      out |= frame_first(f);
      if (!frame_nullable(f)) break;
      top = false;
    }
  }
  return out;
}

bool matcher::finished() const {
  return complete() && next_bytes().none();
}

void matcher::append_state_key(std::vector<uint32_t>& key) const {
  for (const stack_id stack : stacks_) {
    for (stack_id s = stack; s >= 0; s = nodes_[static_cast<size_t>(s)].parent) {
      key.push_back(nodes_[static_cast<size_t>(s)].f.pos);
      key.push_back(nodes_[static_cast<size_t>(s)].f.count);
    }
    key.push_back(UINT32_MAX);  // no element has this index: a stack's end
  }
}

void matcher::compact() {
  std::vector<node> kept;
  std::vector<stack_id> moved(nodes_.size(), -1);
  std::vector<stack_id> chain;
  for (stack_id& top : stacks_) {
    // Copy the stack bottom-up, stopping at the first node already copied.
    chain.clear();
    for (stack_id s = top; s >= 0 && moved[static_cast<size_t>(s)] < 0;
         s = nodes_[static_cast<size_t>(s)].parent)
      chain.push_back(s);
    for (size_t i = chain.size(); i-- > 0;) {
      const node& n = nodes_[static_cast<size_t>(chain[i])];
      kept.push_back({n.f, n.parent < 0 ? -1 : moved[static_cast<size_t>(n.parent)]});
      moved[static_cast<size_t>(chain[i])] = static_cast<stack_id>(kept.size() - 1);
    }
    top = moved[static_cast<size_t>(top)];
  }
  nodes_.swap(kept);
  nodes_after_compact_ = nodes_.size();
}

}  // namespace rbee::structured
