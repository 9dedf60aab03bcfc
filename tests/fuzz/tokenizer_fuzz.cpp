// libFuzzer target: arbitrary bytes (invalid UTF-8 included) into both tokenizer kinds and the
// chat template detector. The shared vocab files are the fixture, loaded once.
// Input: byte 0 picks the vocabulary and flags, the rest is the text.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/chat_template.h"
#include "engine/vocab.h"
#include "engine/vocab_unicode.h"
#include "gguf/gguf.h"

namespace {

using rbee::engine::token_id;
using rbee::engine::vocab;

#ifdef RBEE_SHARED_MODELS_DIR
constexpr const char* default_models_dir = RBEE_SHARED_MODELS_DIR;
#else
constexpr const char* default_models_dir = "../shared/models";
#endif

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "tokenizer_fuzz: invariant broken: %s\n", what);
    std::abort();
  }
}

const std::vector<std::unique_ptr<vocab>>& vocabs() {
  static const std::vector<std::unique_ptr<vocab>> all = [] {
    const char* env = std::getenv("RBEE_SHARED_MODELS_DIR");
    const std::string dir = env ? env : default_models_dir;
    std::vector<std::unique_ptr<vocab>> v;
    for (const char* name :
         {"/tokenizer/ggml-vocab-llama-spm.gguf", "/tokenizer/ggml-vocab-gpt-2.gguf",
          "/tokenizer/ggml-vocab-gpt-2-pre-llama-bpe.gguf",
          "/tokenizer/ggml-vocab-gpt-2-pre-qwen2.gguf", "/stories260K.gguf"}) {
      v.push_back(std::make_unique<vocab>(vocab::from_gguf(rbee::gguf::file::open(dir + name))));
    }
    return v;
  }();
  return all;
}

bool valid_utf8(std::string_view s) {
  for (size_t pos = 0; pos < s.size();) {
    uint32_t cp = 0;
    const size_t n = rbee::engine::unicode::decode(s, pos, cp);
    if (n == 0) return false;
    pos += n;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const auto& all = vocabs();
  const uint8_t mode = data[0];
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  const vocab& v = *all[mode % all.size()];
  const bool parse_special = (mode & 0x08) != 0;
  const bool add_bos = (mode & 0x10) != 0;

  const std::vector<token_id> ids = v.tokenize(text, add_bos, parse_special);
  for (const token_id id : ids) check(v.valid(id), "token id in range");

  // Without special-token parsing both tokenizers are lossless, except that SentencePiece
  // reads a literal U+2581 as its own space symbol.
  const bool spm_space_in_text = text.find("\xE2\x96\x81") != std::string_view::npos;
  if (!parse_special && !add_bos && !(v.type() == "llama" && spm_space_in_text)) {
    check(v.detokenize(ids, true) == text, "detokenize(tokenize(text)) == text");
  }

  std::string pending;
  bool strip = false;
  std::string streamed;
  for (const token_id id : ids) {
    const std::string out = rbee::engine::detokenize_push(v, id, pending, strip);
    check(valid_utf8(out), "streamed text is valid UTF-8");
    check(pending.size() <= 3, "at most one partial character is held back");
    streamed += out;
  }
  streamed += rbee::engine::detokenize_flush(pending);
  check(valid_utf8(streamed), "flushed text is valid UTF-8");

  try {
    const auto t = rbee::engine::detect_chat_template(text);
    const std::vector<rbee::engine::chat_message> messages = {{"system", std::string(text)},
                                                              {"user", std::string(text)}};
    check(!rbee::engine::render_chat(t, messages, true, {"<s>", "</s>"}).empty(),
          "rendered chat is not empty");
  } catch (const rbee::engine::engine_error& e) {
    check(e.code == rbee::engine::error_code::chat_template_unknown, "only 'unknown' errors");
  }
  return 0;
}
