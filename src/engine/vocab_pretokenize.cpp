#include "engine/vocab_pretokenize.h"

#include <cstdint>

#include "engine/vocab_unicode.h"

namespace rbee::engine {

namespace {

using unicode::cp_class;

// Decoded text: one entry per character (or per invalid byte).
struct char_seq {
  std::vector<uint32_t> cps;
  std::vector<cp_class> classes;
  std::vector<size_t> offsets;  // byte offset of each character; offsets[n] = text size
};

constexpr uint32_t invalid_cp = 0xFFFFFFFF;

char_seq decode_all(std::string_view text) {
  char_seq seq;
  seq.cps.reserve(text.size());
  seq.classes.reserve(text.size());
  seq.offsets.reserve(text.size() + 1);
  size_t pos = 0;
  while (pos < text.size()) {
    uint32_t cp = 0;
    size_t n = unicode::decode(text, pos, cp);
    if (n == 0) {
      cp = invalid_cp;
      n = 1;
    }
    seq.cps.push_back(cp);
    seq.classes.push_back(cp == invalid_cp ? cp_class::other : unicode::classify(cp));
    seq.offsets.push_back(pos);
    pos += n;
  }
  seq.offsets.push_back(text.size());
  return seq;
}

// Case folding for the (?i) contractions: ASCII, plus U+017F (long s), the only other code
// point that folds onto one of s t r e v m l d.
uint32_t fold(uint32_t cp) {
  if (cp >= 'A' && cp <= 'Z') return cp + 32;
  return cp == 0x17F ? 's' : cp;
}

// One scan over the characters; `at(i)` answers past-the-end queries with "none" so the
// rules can look ahead freely.
class scanner {
 public:
  scanner(pre_tokenizer kind, std::string_view text, std::vector<std::string_view>& words)
      : kind_(kind), text_(text), seq_(decode_all(text)), n_(seq_.cps.size()), words_(words) {}

  void run() {
    size_t pos = 0;
    while (pos < n_) pos = next_word(pos);
  }

 private:
  enum class cls { none, other, letter, number, whitespace };

  cls at(size_t i) const {
    if (i >= n_) return cls::none;
    switch (seq_.classes[i]) {
      case cp_class::letter:
        return cls::letter;
      case cp_class::number:
        return cls::number;
      case cp_class::whitespace:
        return cls::whitespace;
      case cp_class::other:
        return cls::other;
    }
    return cls::other;
  }
  uint32_t cp(size_t i) const { return i < n_ ? seq_.cps[i] : invalid_cp; }
  bool is_crlf(size_t i) const { return cp(i) == '\r' || cp(i) == '\n'; }

  size_t emit(size_t begin, size_t end) {
    words_.push_back(text_.substr(seq_.offsets[begin], seq_.offsets[end] - seq_.offsets[begin]));
    return end;
  }

  // 's 't 're 've 'm 'll 'd (case-insensitive for llama3/qwen2); returns the end or 0.
  size_t contraction(size_t pos) const {
    if (cp(pos) != '\'') return 0;
    const bool fold_case = kind_ != pre_tokenizer::gpt2;
    const uint32_t c1 = fold_case ? fold(cp(pos + 1)) : cp(pos + 1);
    if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return pos + 2;
    const uint32_t c2 = fold_case ? fold(cp(pos + 2)) : cp(pos + 2);
    if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) {
      return pos + 3;
    }
    return 0;
  }

  // \s+(?!\S)|\s+ : a run of spaces before a non-space leaves its last space to the next word.
  size_t whitespace_run(size_t pos) {
    size_t end = pos;
    while (at(end) == cls::whitespace) ++end;
    if (end - pos > 1 && end < n_) return emit(pos, end - 1);
    if (end > pos) return emit(pos, end);
    return emit(pos, pos + 1);  // unreachable in practice: every class has a rule
  }

  size_t next_word(size_t pos) {
    if (const size_t end = contraction(pos)) return emit(pos, end);
    return kind_ == pre_tokenizer::gpt2 ? next_gpt2(pos) : next_llama3(pos);
  }

  size_t next_gpt2(size_t pos) {
    const size_t start = pos;
    const bool space = cp(pos) == ' ';
    const cls c = space ? at(pos + 1) : at(pos);
    if (c == cls::letter || c == cls::number || c == cls::other) {
      pos += space ? 1 : 0;
      while (at(pos) == c) ++pos;
      return emit(start, pos);
    }
    return whitespace_run(pos);
  }

  size_t next_llama3(size_t pos) {
    const size_t start = pos;
    const cls c = at(pos);
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (!is_crlf(pos) && c != cls::number && (c == cls::letter || at(pos + 1) == cls::letter)) {
      ++pos;
      while (at(pos) == cls::letter) ++pos;
      return emit(start, pos);
    }
    // \p{N}{1,3} (llama3) or \p{N} (qwen2)
    if (c == cls::number) {
      const size_t max_digits = kind_ == pre_tokenizer::qwen2 ? 1 : 3;
      while (at(pos) == cls::number && pos - start < max_digits) ++pos;
      return emit(start, pos);
    }
    // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
    const bool space = cp(pos) == ' ';
    if ((space ? at(pos + 1) : c) == cls::other) {
      pos += space ? 1 : 0;
      while (at(pos) == cls::other) ++pos;
      while (is_crlf(pos)) ++pos;
      return emit(start, pos);
    }
    // \s*[\r\n]+ : up to the last line break of the whitespace run
    size_t end = pos;
    size_t last_break = 0;
    while (at(end) == cls::whitespace) {
      if (is_crlf(end)) last_break = end + 1;
      ++end;
    }
    if (last_break > 0) return emit(start, last_break);
    return whitespace_run(pos);
  }

  pre_tokenizer kind_;
  std::string_view text_;
  char_seq seq_;
  size_t n_;
  std::vector<std::string_view>& words_;
};

}  // namespace

void pre_tokenize(pre_tokenizer kind, std::string_view text, std::vector<std::string_view>& words) {
  scanner(kind, text, words).run();
}

}  // namespace rbee::engine
