#include "structured/grammar.h"

#include <algorithm>
#include <cassert>

namespace rbee::structured {

item byte_item(uint8_t b) {
  item it;
  it.bytes.set(b);
  return it;
}

item range_item(uint8_t lo, uint8_t hi) {
  item it;
  for (unsigned b = lo; b <= hi; ++b) it.bytes.set(b);
  return it;
}

item set_item(const byte_set& s) {
  item it;
  it.bytes = s;
  return it;
}

item rule_item(uint32_t rule) {
  return {.kind = element_kind::rule, .bytes = {}, .rule = rule, .min = 0, .max = 0};
}

item repeat_item(uint32_t rule, uint32_t min, uint32_t max) {
  assert(min <= max && "repeat_item: min above max");
  return {.kind = element_kind::repeat, .bytes = {}, .rule = rule, .min = min, .max = max};
}

sequence literal(std::string_view text) {
  sequence s;
  s.reserve(text.size());
  for (const char c : text) s.push_back(byte_item(static_cast<uint8_t>(c)));
  return s;
}

sequence operator+(sequence a, const sequence& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

sequence operator+(sequence a, const item& b) {
  a.push_back(b);
  return a;
}

uint32_t grammar_builder::declare() {
  g_.rule_alternatives.emplace_back();
  defined_.push_back(0);
  return static_cast<uint32_t>(g_.rule_alternatives.size() - 1);
}

void grammar_builder::define(uint32_t rule, const std::vector<sequence>& alternatives) {
  assert(rule < g_.rule_alternatives.size() && !defined_[rule] && "define: unknown or defined");
  defined_[rule] = 1;
  for (const sequence& alt : alternatives) {
    g_.rule_alternatives[rule].push_back(static_cast<uint32_t>(g_.elements.size()));
    for (const item& it : alt) {
      element e{.kind = it.kind, .index = it.rule, .min = it.min, .max = it.max};
      if (it.kind == element_kind::bytes) {
        // Sets repeat a lot (digits, string characters): store each once.
        auto found = std::find(g_.byte_sets.begin(), g_.byte_sets.end(), it.bytes);
        e.index = static_cast<uint32_t>(found - g_.byte_sets.begin());
        if (found == g_.byte_sets.end()) g_.byte_sets.push_back(it.bytes);
      }
      g_.elements.push_back(e);
    }
    g_.elements.push_back({});
  }
}

uint32_t grammar_builder::add(const std::vector<sequence>& alternatives) {
  const uint32_t rule = declare();
  define(rule, alternatives);
  return rule;
}

namespace {

// The element indexes [first, end] of each alternative, end being its `end` element.
template <class F>
void for_each_alternative(const grammar& g, F f) {
  for (const auto& alts : g.rule_alternatives) {
    for (const uint32_t first : alts) {
      uint32_t last = first;
      while (g.elements[last].kind != element_kind::end) ++last;
      f(first, last);
    }
  }
}

bool element_nullable(const grammar& g, const element& e) {
  switch (e.kind) {
    case element_kind::bytes:
      return false;
    case element_kind::rule:
      return g.rule_nullable[e.index] != 0;
    case element_kind::repeat:
      return e.min == 0 || g.rule_nullable[e.index] != 0;
    case element_kind::end:
      return true;
  }
  return false;
}

byte_set element_first(const grammar& g, const element& e) {
  switch (e.kind) {
    case element_kind::bytes:
      return g.byte_sets[e.index];
    case element_kind::rule:
      return g.rule_first[e.index];
    case element_kind::repeat:
      return e.max > 0 ? g.rule_first[e.index] : byte_set{};
    case element_kind::end:
      return {};
  }
  return {};
}

void analyse(grammar& g) {
  const size_t n_rules = g.rule_alternatives.size();
  g.rule_nullable.assign(n_rules, 0);
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t r = 0; r < n_rules; ++r) {
      if (g.rule_nullable[r]) continue;
      for (const uint32_t first : g.rule_alternatives[r]) {
        uint32_t i = first;
        while (g.elements[i].kind != element_kind::end && element_nullable(g, g.elements[i])) ++i;
        if (g.elements[i].kind == element_kind::end) {
          g.rule_nullable[r] = 1;
          changed = true;
          break;
        }
      }
    }
  }
  g.suffix_nullable.assign(g.elements.size(), 1);
  for_each_alternative(g, [&](uint32_t first, uint32_t last) {
    for (uint32_t i = last; i-- > first;)
      g.suffix_nullable[i] = element_nullable(g, g.elements[i]) && g.suffix_nullable[i + 1];
  });
  g.rule_first.assign(n_rules, {});
  g.first_from.assign(g.elements.size(), {});
  for (bool changed = true; changed;) {
    changed = false;
    for_each_alternative(g, [&](uint32_t first, uint32_t last) {
      for (uint32_t i = last; i-- > first;) {
        const element& e = g.elements[i];
        byte_set s = element_first(g, e);
        if (element_nullable(g, e)) s |= g.first_from[i + 1];
        if (s != g.first_from[i]) {
          g.first_from[i] = s;
          changed = true;
        }
      }
    });
    for (size_t r = 0; r < n_rules; ++r) {
      byte_set s;
      for (const uint32_t first : g.rule_alternatives[r]) s |= g.first_from[first];
      if (s != g.rule_first[r]) {
        g.rule_first[r] = s;
        changed = true;
      }
    }
  }
}

// A rule that can reach itself without consuming a byte would make the matcher expand it
// forever: find one by depth-first search over the "starts with" edges.
void check_no_left_recursion(const grammar& g) {
  const size_t n_rules = g.rule_alternatives.size();
  std::vector<std::vector<uint32_t>> starts_with(n_rules);
  for (size_t r = 0; r < n_rules; ++r) {
    for (const uint32_t first : g.rule_alternatives[r]) {
      for (uint32_t i = first; g.elements[i].kind != element_kind::end; ++i) {
        const element& e = g.elements[i];
        if (e.kind == element_kind::rule || (e.kind == element_kind::repeat && e.max > 0))
          starts_with[r].push_back(e.index);
        if (!element_nullable(g, e)) break;
      }
    }
  }
  enum : char { unseen, open, done };
  std::vector<char> state(n_rules, unseen);
  std::vector<std::pair<uint32_t, size_t>> path;  // (rule, next edge)
  for (uint32_t root = 0; root < n_rules; ++root) {
    if (state[root] != unseen) continue;
    state[root] = open;
    path.push_back({root, 0});
    while (!path.empty()) {
      auto& [rule, edge] = path.back();
      if (edge == starts_with[rule].size()) {
        state[rule] = done;
        path.pop_back();
        continue;
      }
      const uint32_t next = starts_with[rule][edge++];
      if (state[next] == open)
        throw grammar_error("a rule refers to itself before any byte is matched");
      if (state[next] == unseen) {
        state[next] = open;
        path.push_back({next, 0});
      }
    }
  }
}

}  // namespace

grammar grammar_builder::finish(uint32_t root) {
  for (size_t r = 0; r < defined_.size(); ++r) {
    if (!defined_[r]) throw grammar_error("rule " + std::to_string(r) + " is never defined");
  }
  const uint32_t start = declare();
  define(start, {{rule_item(root)}});
  g_.start = g_.rule_alternatives[start][0];
  analyse(g_);
  check_no_left_recursion(g_);
  grammar out = std::move(g_);
  g_ = {};
  defined_.clear();
  return out;
}

}  // namespace rbee::structured
