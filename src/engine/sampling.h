#pragma once
// Token sampling helpers shared by the engine's `sampler` (engine.h), the worker and the
// rbee-engine tool: a small seeded PRNG and the stop-string matcher.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace rbee::engine {

// xoshiro256**, seeded through splitmix64: small, fast, and the same sequence everywhere
// (std::mt19937 is portable too, but std distributions are not).
class rng {
 public:
  explicit rng(uint64_t seed);
  uint64_t next();
  double uniform();  // [0, 1)

 private:
  uint64_t s_[4];
};

// Watches generated text for stop strings. Text that could still turn into a stop string is
// held back; once one matches, the text before it is released and the stop text itself never
// is. Feed whole UTF-8 pieces (the detokenizer's output), so held-back text splits only at
// character boundaries.
class stop_matcher {
 public:
  explicit stop_matcher(std::vector<std::string> stops);

  // Appends generated text; returns the text that is safe to emit now.
  std::string push(std::string_view text);
  // At the end of generation (no match): whatever was held back.
  std::string flush();
  bool matched() const { return matched_; }
  // The stop string that matched (empty until then).
  const std::string& matched_stop() const { return matched_stop_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool matched_ = false;
  std::string matched_stop_;
};

}  // namespace rbee::engine
