#pragma once
// A context-free grammar over bytes, in the flat form the matcher (matcher.h) walks.
//
// Each rule is a list of alternatives; an alternative is a run of elements in `elements`
// ending with an `end` element. An element matches one byte of a set, a rule, or a rule
// repeated min..max times. UTF-8 is spelled out as byte sequences by whoever builds the
// grammar (json_schema.cpp), so a token piece that ends inside a character still matches.
//
// Build one with grammar_builder; finish() adds what the matcher needs to decide without
// search: which rules can match nothing, and which bytes can start each suffix.
#include <bitset>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace rbee::structured {

using byte_set = std::bitset<256>;

inline constexpr uint32_t unbounded = UINT32_MAX;

enum class element_kind : uint8_t { bytes, rule, repeat, end };

struct element {
  element_kind kind = element_kind::end;
  uint32_t index = 0;  // bytes: into grammar::byte_sets; rule, repeat: the rule
  uint32_t min = 0;    // repeat: bounds on the count (max may be `unbounded`)
  uint32_t max = 0;
};

// A grammar the builder could not finish (a rule that reaches itself without consuming a
// byte, a rule never defined). Untrusted schemas get this as a clean error.
struct grammar_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct grammar {
  std::vector<element> elements;
  std::vector<byte_set> byte_sets;
  std::vector<std::vector<uint32_t>> rule_alternatives;  // rule -> first element of each
  // The matcher starts at `start`: the alternative [rule(root), end].
  uint32_t start = 0;

  // Analysis (grammar_builder::finish).
  std::vector<char> rule_nullable;    // the rule can match the empty string
  std::vector<byte_set> rule_first;   // bytes that can start a match of the rule
  std::vector<byte_set> first_from;   // per element: bytes that can start its suffix
  std::vector<char> suffix_nullable;  // per element: the suffix from it can match nothing

  // Counts a repeat frame keeps: past `min` an unbounded repeat's count no longer matters,
  // so it stays there (the matcher's states stay finite and comparable).
  uint32_t next_count(const element& e, uint32_t count) const {
    return e.max == unbounded && count >= e.min ? e.min : count + 1;
  }
};

// One element of a sequence being built.
struct item {
  element_kind kind = element_kind::bytes;
  byte_set bytes;
  uint32_t rule = 0;
  uint32_t min = 0, max = 0;
};
using sequence = std::vector<item>;

item byte_item(uint8_t b);
item range_item(uint8_t lo, uint8_t hi);
item set_item(const byte_set& s);
item rule_item(uint32_t rule);
item repeat_item(uint32_t rule, uint32_t min, uint32_t max);
// The bytes of `text`, one element each.
sequence literal(std::string_view text);
// Concatenation.
sequence operator+(sequence a, const sequence& b);
sequence operator+(sequence a, const item& b);

class grammar_builder {
 public:
  // A rule to define later (for recursion).
  uint32_t declare();
  void define(uint32_t rule, const std::vector<sequence>& alternatives);
  uint32_t add(const std::vector<sequence>& alternatives);
  size_t n_elements() const { return g_.elements.size(); }
  // Throws grammar_error for an undefined rule or a rule that reaches itself before
  // consuming a byte (the matcher would never stop expanding it).
  grammar finish(uint32_t root);

 private:
  grammar g_;
  std::vector<char> defined_;
};

}  // namespace rbee::structured
