#pragma once
// Pre-tokenizers of byte-level BPE vocabularies: hand-written scanners equivalent to the
// split regexes of the reference tokenizers (no regex engine with \p{L} is available).
#include <string_view>
#include <vector>

namespace rbee::engine {

enum class pre_tokenizer {
  // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  gpt2,
  // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
  // \s*[\r\n]+|\s+(?!\S)|\s+
  llama3,
  // as llama3 with \p{N} instead of \p{N}{1,3}
  qwen2,
};

// Appends the words of `text` in order; together they cover every byte of it. Bytes that are
// not valid UTF-8 count as single "other" characters (never letters, digits or spaces).
void pre_tokenize(pre_tokenizer kind, std::string_view text, std::vector<std::string_view>& words);

}  // namespace rbee::engine
