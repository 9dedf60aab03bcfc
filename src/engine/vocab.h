#pragma once
// Tokenizers read from a GGUF's tokenizer.ggml.* metadata, behaving like llama.cpp's:
//  - "llama": SentencePiece-style BPE by token scores; spaces become U+2581 ("▁"), a space
//    is prefixed to the text (add_space_prefix) and characters without a token fall back to
//    <0xNN> byte tokens.
//  - "gpt2": byte-level BPE by merge rank after a pre-tokenizer chosen by tokenizer.ggml.pre
//    (gpt-2, llama-bpe / Llama 3, qwen2).
// Special tokens (control, user-defined) are matched in the text when parse_special is set;
// user-defined tokens always are, as in the reference tokenizers.
#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/engine.h"
#include "engine/vocab_pretokenize.h"

namespace rbee::gguf {
class file;
}

namespace rbee::engine {

// tokenizer.ggml.token_type values.
enum class token_type : uint8_t {
  undefined = 0,
  normal = 1,
  unknown = 2,
  control = 3,
  user_defined = 4,
  unused = 5,
  byte = 6,
};

class vocab {
 public:
  // Throws engine_error: file_corrupt for missing or malformed tokenizer metadata,
  // unsupported_architecture for tokenizer models / pre-tokenizers we do not implement.
  static vocab from_gguf(const gguf::file& f);

  // Never throws on any input bytes (invalid UTF-8 included): bytes without a token are
  // emitted as byte tokens (or the unknown token when the vocabulary has none).
  std::vector<token_id> tokenize(std::string_view text, bool add_bos, bool parse_special) const;

  int n_tokens() const { return static_cast<int>(texts_.size()); }
  bool valid(token_id id) const { return id >= 0 && id < n_tokens(); }
  // Raw vocabulary entry (e.g. "▁Hello", "Ġworld", "<0x0A>"); asserts the id is valid.
  const std::string& token_text(token_id id) const;
  token_type type_of(token_id id) const;
  float score(token_id id) const;
  // Bytes the token stands for (may be part of a UTF-8 character). Control and unknown
  // tokens give "" unless render_special; out-of-range ids give "".
  std::string token_to_piece(token_id id, bool render_special = false) const;
  // Concatenated pieces. strip_space_prefix drops the space the SentencePiece tokenizer put
  // in front of the text (first token after an optional BOS; "llama" vocabularies with
  // add_space_prefix only). Lossless: detokenize(tokenize(text, false, false), true) == text
  // for any bytes, except that SentencePiece reads a literal "▁" in the text as a space.
  std::string detokenize(std::span<const token_id> ids, bool strip_space_prefix,
                         bool render_special = false) const;

  token_id bos() const { return bos_; }  // -1 when the vocabulary has none
  token_id eos() const { return eos_; }
  token_id eot() const { return eot_; }
  token_id unk() const { return unk_; }
  bool is_eog(token_id id) const;
  bool is_control(token_id id) const;
  bool add_bos_default() const { return add_bos_; }
  bool add_space_prefix() const { return add_space_prefix_; }
  std::string_view type() const { return is_spm_ ? "llama" : "gpt2"; }
  const std::string& pre() const { return pre_name_; }
  token_id find(std::string_view text) const;  // exact vocabulary entry, or -1

 private:
  struct string_hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using text_map = std::unordered_map<std::string, int32_t, string_hash, std::equal_to<>>;

  void finish_load();
  void tokenize_spm(std::string_view text, std::vector<token_id>& out) const;
  void tokenize_bpe(std::string_view text, std::vector<token_id>& out) const;
  void bpe_word(std::string_view encoded, std::vector<token_id>& out) const;
  void push_byte(uint8_t b, std::vector<token_id>& out) const;
  int merge_rank(std::string_view left, std::string_view right, std::string& scratch) const;

  bool is_spm_ = true;
  std::string pre_name_;
  pre_tokenizer pre_ = pre_tokenizer::gpt2;
  bool ignore_merges_ = false;  // Llama 3: a word that is a whole token skips the merges
  bool add_bos_ = true;
  bool add_space_prefix_ = true;

  std::vector<std::string> texts_;
  std::vector<float> scores_;
  std::vector<token_type> types_;
  std::vector<std::string> pieces_;  // decoded bytes of normal/byte tokens, raw text of others
  std::vector<bool> eog_;
  text_map to_id_;
  text_map merge_ranks_;  // "left right" -> rank
  std::array<token_id, 256> byte_tokens_{};
  // Control/user-defined/unknown tokens by their first byte, longest text first.
  std::array<std::vector<token_id>, 256> special_by_first_;

  token_id bos_ = -1;
  token_id eos_ = -1;
  token_id eot_ = -1;
  token_id eom_ = -1;
  token_id unk_ = -1;
};

// Streaming detokenization: text comes out only as whole UTF-8 characters. The caller keeps
// the state (engine::detokenizer holds these two fields):
//  - pending: bytes of a character not yet complete;
//  - strip_space: drop the leading space of the next piece. detokenize_push sets it after a
//    BOS token of a SentencePiece vocabulary with add_space_prefix, so that a stream
//    [BOS, "▁Once", ...] reads "Once ..." while a stream of generated tokens only (no BOS)
//    keeps its first space: " and a boy" as llama.cpp prints it. Start with false.
std::string detokenize_push(const vocab& v, token_id id, std::string& pending, bool& strip_space,
                            bool render_special = false);
// Whatever is pending, invalid bytes as U+FFFD; pending is left empty.
std::string detokenize_flush(std::string& pending);

}  // namespace rbee::engine
