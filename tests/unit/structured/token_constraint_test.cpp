#include "structured/token_constraint.h"

#include <memory>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "structured/json_schema.h"
#include "structured/matcher.h"

namespace rbee::structured {
namespace {

bool bit(const std::vector<uint64_t>& mask, token t) {
  return (mask[static_cast<size_t>(t) >> 6] >> (t & 63)) & 1;
}

// Pieces a JSON grammar cares about: single bytes, structural runs, words, a multi-byte
// character whole and split, an empty (special) token; the last is the end token.
std::vector<std::string> small_vocabulary() {
  std::vector<std::string> pieces = {
      "",   "{",    "}",    "\"",   ":",  ",",  " ",     "\n",  "a",        "b",    "1",
      "0",  "-",    ".",    "e",    "[",  "]",  "{\"",   "\":", "\": \"",   "\",",  "\"}",
      "ab", "true", "null", "fal",  "se", "12", "name",  "age", "\xC3",     "\xA9", "\xC3\xA9",
      "\\", "n",    "u",    "\n  ", "  ", "}}", "\"a\"", "x",   "\"name\"", "{\n",  "\t"};
  for (int c = 0x20; c < 0x7F; ++c) pieces.push_back(std::string(1, static_cast<char>(c)));
  pieces.push_back("");
  return pieces;
}

class TokenConstraint : public ::testing::TestWithParam<const char*> {};

// The trie walk's mask equals trying every token on a copy of the matcher, along random
// documents drawn from the mask itself.
TEST_P(TokenConstraint, MaskEqualsBruteForceAlongRandomDocuments) {
  const auto pieces = small_vocabulary();
  const token end = static_cast<token>(pieces.size() - 1);
  const token_vocabulary vocab(pieces, {end});
  const std::string schema = GetParam();
  auto g = std::make_shared<const grammar>(
      schema.empty() ? json_object_grammar() : json_schema_grammar(nlohmann::json::parse(schema)));

  std::mt19937 rng(7);
  for (int doc = 0; doc < 20; ++doc) {
    token_constraint constraint(g, vocab);
    matcher reference(g);
    std::vector<uint64_t> mask(vocab.mask_words());
    for (int step = 0; step < 60; ++step) {
      const size_t count = constraint.fill_allowed(mask);
      std::vector<token> allowed;
      for (token t = 0; t < vocab.n_tokens(); ++t) {
        bool fits = false;
        if (t == end) {
          fits = reference.complete();
        } else if (!pieces[static_cast<size_t>(t)].empty()) {
          matcher trial = reference;
          fits = trial.accept(pieces[static_cast<size_t>(t)]);
        }
        ASSERT_EQ(bit(mask, t), fits)
            << "token '" << pieces[static_cast<size_t>(t)] << "' step " << step << " doc " << doc;
        if (fits) allowed.push_back(t);
      }
      ASSERT_EQ(count, allowed.size());
      ASSERT_FALSE(allowed.empty()) << "dead end";
      const token t = allowed[rng() % allowed.size()];
      if (t == end) break;
      ASSERT_TRUE(constraint.accept(t));
      ASSERT_TRUE(reference.accept(pieces[static_cast<size_t>(t)]));
      ASSERT_EQ(constraint.complete(), reference.complete());
      if (constraint.finished()) break;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Schemas, TokenConstraint,
    ::testing::Values(
        "",  // json_object
        R"({"type":"object","properties":{"name":{"type":"string","maxLength":4},
                          "age":{"type":"integer"},"tags":{"type":"array","items":{"enum":["a","b"]},
                          "maxItems":2}},"required":["name"]})",
        R"({"anyOf":[{"type":"number"},{"type":"array","items":{"type":"boolean"}}]})",
        R"({"type":"string","format":"date"})"));

TEST(TokenVocabulary, TrieHoldsEveryTextTokenOnce) {
  const token_vocabulary vocab({"ab", "", "a", "b", "ab", "abc"}, {1});
  std::vector<token> seen;
  for (const auto& node : vocab.trie())
    for (uint32_t j = node.tokens_begin; j < node.tokens_end; ++j)
      seen.push_back(vocab.sorted_tokens()[j]);
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(seen, (std::vector<token>{0, 2, 3, 4, 5}));
  EXPECT_EQ(vocab.trie().size(), 5u);  // root, a, ab, abc, b
}

TEST(TokenConstraintSteps, EndTokenOnlyWhenCompleteAndSpecialNever) {
  const token_vocabulary vocab({"{", "}", "<s>", "", "\"a\":1"}, {3});
  token_constraint c(std::make_shared<const grammar>(json_object_grammar()), vocab);
  std::vector<uint64_t> mask(vocab.mask_words());
  EXPECT_EQ(c.fill_allowed(mask), 1u);  // only "{"
  EXPECT_EQ(mask[0], 0b1u);
  EXPECT_FALSE(c.accept(3));
  ASSERT_TRUE(c.accept(0));
  EXPECT_EQ(c.fill_allowed(mask), 2u);  // "}" or "\"a\":1"
  ASSERT_TRUE(c.accept(1));
  EXPECT_TRUE(c.finished());
  EXPECT_EQ(c.fill_allowed(mask), 1u);
  EXPECT_EQ(mask[0], 0b1000u);  // the end token alone
}

}  // namespace
}  // namespace rbee::structured
