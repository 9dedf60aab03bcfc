#include "engine/vocab.h"

#include <algorithm>
#include <cassert>
#include <optional>
#include <queue>

#include "engine/vocab_unicode.h"
#include "gguf/gguf.h"

namespace rbee::engine {

namespace {

constexpr std::string_view spm_space = "\xE2\x96\x81";  // U+2581, SentencePiece's space

[[noreturn]] void corrupt(const std::string& message) {
  throw engine_error(error_code::file_corrupt, "tokenizer metadata: " + message);
}

// GPT-2's reversible byte <-> printable code point mapping: printable Latin-1 bytes map to
// themselves, the other 68 bytes to U+0100.. in byte order.
struct byte_mapping {
  std::array<uint32_t, 256> to_cp{};
  std::array<int16_t, 512> to_byte{};  // code point -> byte, -1 if unmapped

  byte_mapping() {
    to_byte.fill(-1);
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
      to_cp[b] = printable ? b : next++;
      to_byte[to_cp[b]] = static_cast<int16_t>(b);
    }
  }
};

const byte_mapping& gpt2_bytes() {
  static const byte_mapping mapping;
  return mapping;
}

std::string gpt2_encode(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (const char c : bytes) unicode::append_utf8(out, gpt2_bytes().to_cp[static_cast<uint8_t>(c)]);
  return out;
}

std::string gpt2_decode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) {
    uint32_t cp = 0;
    const size_t n = unicode::decode(text, pos, cp);
    if (n == 0) {  // not UTF-8: pass the byte through
      out += text[pos++];
      continue;
    }
    const int b = cp < 512 ? gpt2_bytes().to_byte[cp] : -1;
    if (b >= 0) {
      out += static_cast<char>(b);
    } else {
      out.append(text.substr(pos, n));  // not a byte-level character: keep it as text
    }
    pos += n;
  }
  return out;
}

// "<0x0A>" -> 0x0A
std::optional<uint8_t> parse_byte_token(std::string_view text) {
  if (text.size() != 6 || !text.starts_with("<0x") || text[5] != '>') return std::nullopt;
  int v = 0;
  for (size_t i = 3; i < 5; ++i) {
    const char c = text[i];
    int d = 0;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (c >= 'A' && c <= 'F') {
      d = c - 'A' + 10;
    } else if (c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else {
      return std::nullopt;
    }
    v = v * 16 + d;
  }
  return static_cast<uint8_t>(v);
}

std::string replace_all(std::string_view text, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  while (true) {
    const size_t hit = text.find(from, pos);
    if (hit == std::string_view::npos) break;
    out.append(text.substr(pos, hit - pos));
    out.append(to);
    pos = hit + from.size();
  }
  out.append(text.substr(pos));
  return out;
}

struct pre_entry {
  std::string_view name;
  pre_tokenizer kind;
  bool ignore_merges;
  bool add_bos;
};

// tokenizer.ggml.pre names (as llama.cpp's converter writes them) that share our scanners.
constexpr pre_entry known_pre[] = {
    {"default", pre_tokenizer::gpt2, false, false},
    {"gpt-2", pre_tokenizer::gpt2, false, false},
    {"phi-2", pre_tokenizer::gpt2, false, false},
    {"llama-bpe", pre_tokenizer::llama3, true, true},
    {"llama3", pre_tokenizer::llama3, true, true},
    {"llama-v3", pre_tokenizer::llama3, true, true},
    {"smaug-bpe", pre_tokenizer::llama3, false, false},
    {"dbrx", pre_tokenizer::llama3, false, false},
    {"qwen2", pre_tokenizer::qwen2, false, false},
    {"deepseek-r1-qwen", pre_tokenizer::qwen2, false, false},
    {"stablelm2", pre_tokenizer::qwen2, false, false},
};

// Texts of end-of-turn tokens that stop generation (llama.cpp recognises them by text too).
constexpr std::string_view eog_texts[] = {
    "<|eot_id|>",    "<|im_end|>", "<|end|>",         "<end_of_turn>",
    "<|endoftext|>", "<|eom_id|>", "<|end_of_text|>", "<EOT>",
};

// A run of bytes in the merge linked list.
struct symbol {
  int prev;
  int next;
  uint32_t offset;
  uint32_t n;  // 0 once merged into its left neighbour
};

// One symbol per UTF-8 character of text (an invalid byte is a character of its own).
std::vector<symbol> split_characters(std::string_view text) {
  std::vector<symbol> symbols;
  symbols.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) {
    uint32_t cp = 0;
    const size_t len = std::max<size_t>(1, unicode::decode(text, pos, cp));
    const int index = static_cast<int>(symbols.size());
    symbols.push_back({index - 1, pos + len < text.size() ? index + 1 : -1,
                       static_cast<uint32_t>(pos), static_cast<uint32_t>(len)});
    pos += len;
  }
  return symbols;
}

// The merge loop both tokenizers share: repeatedly joins the adjacent pair of highest
// priority (the leftmost on ties, as llama.cpp does) until no known pair is left.
// priority(left, right) is nullopt for a pair that is no token (SPM) or merge (BPE).
template <class Priority>
void merge_pairs(std::vector<symbol>& symbols, const Priority& priority) {
  struct bigram {
    float priority;
    int left;
    int right;
    uint32_t size;
  };
  const auto lower = [](const bigram& a, const bigram& b) {
    return a.priority < b.priority || (a.priority == b.priority && a.left > b.left);
  };
  std::priority_queue<bigram, std::vector<bigram>, decltype(lower)> queue(lower);
  const auto try_add = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    const symbol& l = symbols[left];
    const symbol& r = symbols[right];
    if (const std::optional<float> p = priority(l, r)) queue.push({*p, left, right, l.n + r.n});
  };
  for (int i = 1; i < static_cast<int>(symbols.size()); ++i) try_add(i - 1, i);
  while (!queue.empty()) {
    const bigram top = queue.top();
    queue.pop();
    symbol& left = symbols[top.left];
    symbol& right = symbols[top.right];
    // Stale entry: one side has merged since (sizes only grow, so the sum tells).
    if (left.n == 0 || right.n == 0 || left.n + right.n != top.size) continue;
    left.n += right.n;
    right.n = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.left;
    try_add(left.prev, top.left);
    try_add(top.left, left.next);
  }
}

}  // namespace

vocab vocab::from_gguf(const gguf::file& f) {
  try {
    vocab v;
    const auto model = f.get_string("tokenizer.ggml.model");
    if (!model) corrupt("tokenizer.ggml.model is missing");
    if (*model == "llama") {
      v.is_spm_ = true;
      v.bos_ = 1;
      v.eos_ = 2;
      v.unk_ = 0;
    } else if (*model == "gpt2") {
      v.is_spm_ = false;
      v.add_bos_ = false;
      v.add_space_prefix_ = false;
    } else {
      throw engine_error(error_code::unsupported_architecture,
                         "tokenizer.ggml.model '" + *model + "' is not supported (llama, gpt2)");
    }

    const gguf::array_value* tokens = f.get_array("tokenizer.ggml.tokens");
    if (!tokens) corrupt("tokenizer.ggml.tokens is missing");
    if (tokens->element_type != gguf::value_type::string) {
      corrupt("tokenizer.ggml.tokens is not an array of strings");
    }
    const size_t n = tokens->strings.size();
    if (n == 0) corrupt("tokenizer.ggml.tokens is empty");
    if (n > static_cast<size_t>(INT32_MAX)) corrupt("tokenizer.ggml.tokens is too large");

    v.texts_.resize(n);
    v.scores_.assign(n, 0.0f);
    v.types_.assign(n, token_type::normal);
    for (size_t i = 0; i < n; ++i) {
      // An empty entry would match everywhere; llama.cpp renames it the same way.
      v.texts_[i] =
          tokens->strings[i].empty() ? "[EMPTY_" + std::to_string(i) + "]" : tokens->strings[i];
    }

    if (const gguf::array_value* scores = f.get_array("tokenizer.ggml.scores")) {
      if (scores->size() < n) corrupt("tokenizer.ggml.scores has fewer entries than tokens");
      if (!scores->floats.empty()) {
        for (size_t i = 0; i < n; ++i) v.scores_[i] = static_cast<float>(scores->floats[i]);
      } else if (!scores->ints.empty()) {
        for (size_t i = 0; i < n; ++i) v.scores_[i] = static_cast<float>(scores->ints[i]);
      } else {
        corrupt("tokenizer.ggml.scores is not numeric");
      }
    }

    if (const gguf::array_value* types = f.get_array("tokenizer.ggml.token_type")) {
      if (types->ints.size() < n) {
        corrupt("tokenizer.ggml.token_type has fewer integer entries than tokens");
      }
      for (size_t i = 0; i < n; ++i) {
        const int64_t t = types->ints[i];
        v.types_[i] = (t >= 1 && t <= 6) ? static_cast<token_type>(t) : token_type::undefined;
      }
    }

    if (!v.is_spm_) {
      const gguf::array_value* merges = f.get_array("tokenizer.ggml.merges");
      if (!merges) corrupt("tokenizer.ggml.merges is missing (required for gpt2)");
      if (merges->element_type != gguf::value_type::string) {
        corrupt("tokenizer.ggml.merges is not an array of strings");
      }
      v.merge_ranks_.reserve(merges->strings.size());
      for (size_t i = 0; i < merges->strings.size(); ++i) {
        const std::string& m = merges->strings[i];
        if (m.find(' ', 1) == std::string::npos) continue;  // not "left right": unusable
        v.merge_ranks_.emplace(m, static_cast<int32_t>(std::min<size_t>(i, INT32_MAX)));
      }

      v.pre_name_ = f.get_string("tokenizer.ggml.pre").value_or("default");
      const auto* entry = std::find_if(std::begin(known_pre), std::end(known_pre),
                                       [&](const pre_entry& e) { return e.name == v.pre_name_; });
      if (entry == std::end(known_pre)) {
        std::string names;
        for (const auto& e : known_pre) names += (names.empty() ? "" : ", ") + std::string(e.name);
        throw engine_error(
            error_code::unsupported_architecture,
            "tokenizer.ggml.pre '" + v.pre_name_ + "' is not supported (" + names + ")");
      }
      v.pre_ = entry->kind;
      v.ignore_merges_ = entry->ignore_merges;
      v.add_bos_ = entry->add_bos;
    }

    // Special ids outside the vocabulary are ignored, as llama.cpp does (converters write
    // e.g. 0xFFFFFFFF for "none").
    const auto read_id = [&](std::string_view key, token_id& id) {
      if (const auto value = f.get_uint(key)) {
        if (*value < n) id = static_cast<token_id>(*value);
      }
      if (id >= static_cast<token_id>(n)) id = -1;
    };
    read_id("tokenizer.ggml.bos_token_id", v.bos_);
    read_id("tokenizer.ggml.eos_token_id", v.eos_);
    read_id("tokenizer.ggml.unknown_token_id", v.unk_);
    read_id("tokenizer.ggml.eot_token_id", v.eot_);
    read_id("tokenizer.ggml.eom_token_id", v.eom_);

    if (const auto add_bos = f.get_bool("tokenizer.ggml.add_bos_token")) v.add_bos_ = *add_bos;
    if (const auto prefix = f.get_bool("tokenizer.ggml.add_space_prefix")) {
      v.add_space_prefix_ = *prefix && v.is_spm_;
    }
    if (v.bos_ < 0) v.add_bos_ = false;

    v.finish_load();
    return v;
  } catch (const gguf::format_error& e) {
    corrupt(e.what());
  }
}

void vocab::finish_load() {
  const auto n = static_cast<token_id>(texts_.size());
  to_id_.reserve(texts_.size());
  for (token_id i = 0; i < n; ++i) to_id_.emplace(texts_[i], i);  // first id wins on duplicates

  for (int b = 0; b < 256; ++b) {
    token_id id = -1;
    if (is_spm_) {
      static const char hex[] = "0123456789ABCDEF";
      const char name[] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
      id = find(std::string_view(name, sizeof(name)));
      if (id < 0) id = find(std::string(1, static_cast<char>(b)));
    } else {
      id = find(gpt2_encode(std::string(1, static_cast<char>(b))));
    }
    byte_tokens_[b] = id;
  }

  // End of generation: eos/eot/eom and the well-known end-of-turn texts, which are treated as
  // control tokens even where a converter marked them normal.
  eog_.assign(texts_.size(), false);
  for (const token_id id : {eos_, eot_, eom_}) {
    if (id >= 0) eog_[id] = true;
  }
  for (const std::string_view text : eog_texts) {
    const token_id id = find(text);
    if (id < 0) continue;
    eog_[id] = true;
    if (eot_ < 0 && text != "<|eom_id|>") eot_ = id;
    if (types_[id] == token_type::normal) types_[id] = token_type::control;
  }

  pieces_.resize(texts_.size());
  for (token_id i = 0; i < n; ++i) {
    const std::string& text = texts_[i];
    switch (types_[i]) {
      case token_type::normal:
        pieces_[i] = is_spm_ ? replace_all(text, spm_space, " ") : gpt2_decode(text);
        break;
      case token_type::byte:
        if (const auto b = parse_byte_token(text)) {
          pieces_[i] = std::string(1, static_cast<char>(*b));
        } else {
          pieces_[i] = is_spm_ ? text : gpt2_decode(text);
        }
        break;
      case token_type::control:
      case token_type::unknown:
      case token_type::user_defined:
        pieces_[i] = text;
        break;
      case token_type::unused:
      case token_type::undefined:
        break;  // nothing to print, as in llama.cpp
    }
  }

  std::vector<token_id> special;
  for (token_id i = 0; i < n; ++i) {
    const token_type t = types_[i];
    if (t == token_type::control || t == token_type::user_defined || t == token_type::unknown) {
      special.push_back(i);
    }
  }
  std::stable_sort(special.begin(), special.end(),
                   [&](token_id a, token_id b) { return texts_[a].size() > texts_[b].size(); });
  for (const token_id id : special) {
    special_by_first_[static_cast<uint8_t>(texts_[id][0])].push_back(id);
  }
}

const std::string& vocab::token_text(token_id id) const {
  assert(valid(id) && "token id out of range");
  return texts_[static_cast<size_t>(id)];
}

token_type vocab::type_of(token_id id) const {
  return valid(id) ? types_[static_cast<size_t>(id)] : token_type::undefined;
}

float vocab::score(token_id id) const {
  return valid(id) ? scores_[static_cast<size_t>(id)] : 0.0f;
}

bool vocab::is_eog(token_id id) const {
  return valid(id) && eog_[static_cast<size_t>(id)];
}

bool vocab::is_control(token_id id) const {
  return type_of(id) == token_type::control;
}

token_id vocab::find(std::string_view text) const {
  const auto it = to_id_.find(text);
  return it == to_id_.end() ? -1 : it->second;
}

std::string vocab::token_to_piece(token_id id, bool render_special) const {
  if (!valid(id)) return {};
  const token_type t = types_[static_cast<size_t>(id)];
  if (!render_special && (t == token_type::control || t == token_type::unknown)) return {};
  return pieces_[static_cast<size_t>(id)];
}

std::string vocab::detokenize(std::span<const token_id> ids, bool strip_space_prefix,
                              bool render_special) const {
  std::string out;
  bool strip = strip_space_prefix && is_spm_ && add_space_prefix_;
  for (const token_id id : ids) {
    if (id == bos_ && out.empty()) {
      out += token_to_piece(id, render_special);
      continue;
    }
    std::string piece = token_to_piece(id, render_special);
    if (strip && !piece.empty() && piece.front() == ' ') piece.erase(0, 1);
    strip = false;
    out += piece;
  }
  return out;
}

void vocab::push_byte(uint8_t b, std::vector<token_id>& out) const {
  if (byte_tokens_[b] >= 0) {
    out.push_back(byte_tokens_[b]);
  } else if (unk_ >= 0) {
    out.push_back(unk_);
  }
}

std::vector<token_id> vocab::tokenize(std::string_view text, bool add_bos,
                                      bool parse_special) const {
  std::vector<token_id> out;
  out.reserve(text.size() / 3 + 2);
  if (add_bos && bos_ >= 0) out.push_back(bos_);

  // Split off special tokens (longest match at each position), tokenize the text between.
  bool prev_special = true;  // SentencePiece prefixes a space to the first fragment
  const auto flush = [&](std::string_view fragment) {
    if (fragment.empty()) return;
    if (is_spm_) {
      std::string escaped = (add_space_prefix_ && prev_special) ? std::string(spm_space) : "";
      escaped += replace_all(fragment, " ", spm_space);
      tokenize_spm(escaped, out);
    } else {
      tokenize_bpe(fragment, out);
    }
    prev_special = false;
  };

  size_t start = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    token_id match = -1;
    for (const token_id id : special_by_first_[static_cast<uint8_t>(text[pos])]) {
      const token_type t = types_[static_cast<size_t>(id)];
      if (!parse_special && t != token_type::user_defined) continue;
      if (text.substr(pos).starts_with(texts_[static_cast<size_t>(id)])) {
        match = id;
        break;
      }
    }
    if (match < 0) {
      ++pos;
      continue;
    }
    flush(text.substr(start, pos - start));
    out.push_back(match);
    prev_special = true;
    pos += texts_[static_cast<size_t>(match)].size();
    start = pos;
  }
  flush(text.substr(start));
  return out;
}

void vocab::tokenize_spm(std::string_view text, std::vector<token_id>& out) const {
  std::vector<symbol> symbols = split_characters(text);
  // Merges the pair that forms the highest-scoring token.
  merge_pairs(symbols, [&](const symbol& l, const symbol& r) -> std::optional<float> {
    const token_id id = find(text.substr(l.offset, l.n + r.n));
    if (id < 0) return std::nullopt;
    return scores_[static_cast<size_t>(id)];
  });

  for (int i = symbols.empty() ? -1 : 0; i != -1; i = symbols[i].next) {
    const std::string_view piece = text.substr(symbols[i].offset, symbols[i].n);
    const token_id id = find(piece);
    if (id >= 0) {
      out.push_back(id);
    } else {
      for (const char c : piece) push_byte(static_cast<uint8_t>(c), out);
    }
  }
}

int vocab::merge_rank(std::string_view left, std::string_view right, std::string& scratch) const {
  scratch.assign(left);
  scratch += ' ';
  scratch.append(right);
  const auto it = merge_ranks_.find(scratch);
  return it == merge_ranks_.end() ? -1 : it->second;
}

void vocab::tokenize_bpe(std::string_view text, std::vector<token_id>& out) const {
  std::vector<std::string_view> words;
  pre_tokenize(pre_, text, words);
  for (const std::string_view word : words) bpe_word(gpt2_encode(word), out);
}

void vocab::bpe_word(std::string_view word, std::vector<token_id>& out) const {
  if (ignore_merges_) {
    if (const token_id id = find(word); id >= 0) {
      out.push_back(id);
      return;
    }
  }

  std::vector<symbol> symbols = split_characters(word);
  // Merges the pair of lowest merge rank (ranks stay far below 2^24, exact as floats).
  std::string scratch;
  merge_pairs(symbols, [&](const symbol& l, const symbol& r) -> std::optional<float> {
    const int rank = merge_rank(word.substr(l.offset, l.n), word.substr(r.offset, r.n), scratch);
    if (rank < 0) return std::nullopt;
    return -static_cast<float>(rank);
  });

  for (int i = symbols.empty() ? -1 : 0; i != -1; i = symbols[i].next) {
    const std::string_view piece = word.substr(symbols[i].offset, symbols[i].n);
    if (const token_id id = find(piece); id >= 0) {
      out.push_back(id);
      continue;
    }
    // No token for the merged text (vocabulary without all merge results): per byte.
    for (size_t p = 0; p < piece.size();) {
      uint32_t cp = 0;
      const size_t len = unicode::decode(piece, p, cp);
      const int b = (len > 0 && cp < 512) ? gpt2_bytes().to_byte[cp] : -1;
      if (b >= 0) {
        push_byte(static_cast<uint8_t>(b), out);
      } else if (unk_ >= 0) {
        out.push_back(unk_);
      }
      p += std::max<size_t>(len, 1);
    }
  }
}

std::string detokenize_push(const vocab& v, token_id id, std::string& pending, bool& strip_space,
                            bool render_special) {
  std::string piece = v.token_to_piece(id, render_special);
  if (id == v.bos()) {
    strip_space = v.type() == "llama" && v.add_space_prefix();
  } else {
    if (strip_space && !piece.empty() && piece.front() == ' ') piece.erase(0, 1);
    strip_space = false;
  }
  pending += piece;
  std::string out;
  const size_t keep = unicode::append_valid_prefix(out, pending);
  pending.erase(0, pending.size() - keep);
  return out;
}

std::string detokenize_flush(std::string& pending) {
  std::string out = unicode::sanitize(pending);
  pending.clear();
  return out;
}

}  // namespace rbee::engine
