// Tokenizers against llama.cpp's reference vectors (shared/models/tokenizer), stories260K's
// prompt ids, streaming detokenization and graceful errors on bad tokenizer metadata.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "engine/vocab.h"
#include "engine/vocab_pretokenize.h"
#include "engine/vocab_unicode.h"
#include "gguf/gguf.h"

namespace rbee::engine {
namespace {

const std::string models_dir = RBEE_SHARED_MODELS_DIR;

std::string read_binary(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

vocab load_vocab(const std::string& path) {
  return vocab::from_gguf(gguf::file::open(path));
}

bool is_valid_utf8(std::string_view s) {
  for (size_t pos = 0; pos < s.size();) {
    uint32_t cp = 0;
    const size_t n = unicode::decode(s, pos, cp);
    if (n == 0) return false;
    pos += n;
  }
  return true;
}

struct vector_case {
  std::string text;
  std::vector<token_id> ids;
};

// X.gguf.inp: strings each followed by "\n__ggml_vocab_test__\n"; X.gguf.out: one line of
// " id id ..." per string.
std::vector<vector_case> read_vectors(const std::string& gguf_path) {
  const std::string inp = read_binary(gguf_path + ".inp");
  const std::string outp = read_binary(gguf_path + ".out");
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<vector_case> cases;
  for (size_t pos = 0; pos < inp.size();) {
    const size_t hit = inp.find(sep, pos);
    if (hit == std::string::npos) break;
    cases.push_back({inp.substr(pos, hit - pos), {}});
    pos = hit + sep.size();
  }
  std::istringstream lines(outp);
  std::string line;
  for (auto& c : cases) {
    EXPECT_TRUE(std::getline(lines, line)) << "missing expected ids in " << gguf_path << ".out";
    std::istringstream nums(line);
    token_id id = 0;
    while (nums >> id) c.ids.push_back(id);
  }
  return cases;
}

std::string ids_to_string(const std::vector<token_id>& ids) {
  std::string s;
  for (const token_id id : ids) {
    s += ' ';
    s += std::to_string(id);
  }
  return s;
}

class tokenizer_vectors : public testing::TestWithParam<const char*> {};

TEST_P(tokenizer_vectors, match_llama_cpp_exactly_and_round_trip) {
  const std::string path = models_dir + "/tokenizer/" + GetParam() + ".gguf";
  const vocab v = load_vocab(path);
  const auto cases = read_vectors(path);
  ASSERT_GE(cases.size(), 40u);

  int passed = 0;
  int round_trips = 0;
  for (const auto& c : cases) {
    const auto ids = v.tokenize(c.text, /*add_bos=*/false, /*parse_special=*/false);
    EXPECT_EQ(ids_to_string(ids), ids_to_string(c.ids)) << "text: '" << c.text << "'";
    passed += ids == c.ids ? 1 : 0;
    // Both tokenizers are lossless on valid UTF-8 (no normalisation besides the space prefix).
    const std::string back = v.detokenize(ids, /*strip_space_prefix=*/true);
    EXPECT_EQ(back, c.text);
    round_trips += back == c.text ? 1 : 0;
  }
  std::printf("[ vectors ] %s: %d/%zu cases exact, %d/%zu round trips\n", GetParam(), passed,
              cases.size(), round_trips, cases.size());
  EXPECT_EQ(passed, static_cast<int>(cases.size()));
}

INSTANTIATE_TEST_SUITE_P(llama_cpp, tokenizer_vectors,
                         testing::Values("ggml-vocab-llama-spm", "ggml-vocab-gpt-2",
                                         "ggml-vocab-gpt-2-pre-llama-bpe",
                                         "ggml-vocab-gpt-2-pre-qwen2"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& ch : name) {
                             if (ch == '-') ch = '_';
                           }
                           return name;
                         });

// Expected splits are what the reference regexes (vocab_pretokenize.h) give under a Unicode
// regex engine: letters, numbers (½ ² ٣ Ⅷ) and White_Space (U+3000, U+00A0) beyond ASCII,
// case-insensitive contractions (U+017F folds to 's') and combining marks as "other".
TEST(tokenizer, pre_tokenizers_match_the_split_regexes) {
  const std::string a = "I'M fine, you'VE 12345 ½² 日本語\u3000ok  \r\n\n x'ſy";
  const std::string b = "café\u0301 ٣٤ Ⅷ!!\t\t\"quoted\"\u00a0end  ";
  const auto split = [](pre_tokenizer kind, const std::string& text) {
    std::vector<std::string_view> words;
    pre_tokenize(kind, text, words);
    return std::vector<std::string>(words.begin(), words.end());
  };
  using words = std::vector<std::string>;
  EXPECT_EQ(split(pre_tokenizer::gpt2, a),
            (words{"I", "'", "M", " fine", ",", " you", "'", "VE", " 12345", " ½²", " 日本語",
                   "\u3000", "ok", "  \r\n\n", " x", "'", "ſy"}));
  EXPECT_EQ(split(pre_tokenizer::gpt2, b), (words{"café", "\u0301", " ٣٤", " Ⅷ", "!!", "\t", "\t",
                                                  "\"", "quoted", "\"", "\u00a0", "end", "  "}));
  EXPECT_EQ(split(pre_tokenizer::llama3, a),
            (words{"I", "'M", " fine", ",", " you", "'VE", " ", "123", "45", " ", "½²", " 日本語",
                   "\u3000ok", "  \r\n\n", " x", "'ſ", "y"}));
  EXPECT_EQ(split(pre_tokenizer::llama3, b),
            (words{"café", "\u0301", " ", "٣٤", " ", "Ⅷ", "!!", "\t", "\t", "\"quoted", "\"",
                   "\u00a0end", "  "}));
  EXPECT_EQ(split(pre_tokenizer::qwen2, a),
            (words{"I", "'M", " fine", ",", " you",    "'VE",      " ",        "1",  "2",  "3", "4",
                   "5", " ",  "½",     "²", " 日本語", "\u3000ok", "  \r\n\n", " x", "'ſ", "y"}));
  EXPECT_EQ(split(pre_tokenizer::qwen2, b),
            (words{"café", "\u0301", " ", "٣", "٤", " ", "Ⅷ", "!!", "\t", "\t", "\"quoted", "\"",
                   "\u00a0end", "  "}));
  // Invalid bytes are single "other" characters: they join punctuation runs.
  EXPECT_EQ(split(pre_tokenizer::gpt2, "a\xFF\xFE!b"), (words{"a", "\xFF\xFE!", "b"}));
}

class tokenizer_stories : public testing::Test {
 protected:
  static void SetUpTestSuite() { v_ = new vocab(load_vocab(models_dir + "/stories260K.gguf")); }
  static void TearDownTestSuite() {
    delete v_;
    v_ = nullptr;
  }
  static vocab* v_;
};
vocab* tokenizer_stories::v_ = nullptr;

TEST_F(tokenizer_stories, once_upon_a_time_matches_llama_cpp) {
  const vocab& v = *v_;
  EXPECT_EQ(v.type(), "llama");
  EXPECT_EQ(v.n_tokens(), 512);
  EXPECT_EQ(v.bos(), 1);
  EXPECT_EQ(v.eos(), 2);
  EXPECT_TRUE(v.add_bos_default());
  EXPECT_TRUE(v.is_eog(2));
  EXPECT_FALSE(v.is_eog(1));
  EXPECT_EQ(v.tokenize("Once upon a time", true, false),
            (std::vector<token_id>{1, 403, 407, 261, 378}));
  EXPECT_EQ(v.token_to_piece(403), " Once");
  EXPECT_EQ(v.token_to_piece(1), "");  // control tokens print nothing...
  EXPECT_EQ(v.token_to_piece(1, /*render_special=*/true), "<s>");  // ...unless asked
  EXPECT_EQ(v.token_to_piece(3 + '\n'), "\n");                     // <0x0A>
  EXPECT_EQ(v.tokenize("", true, false), (std::vector<token_id>{1}));
  EXPECT_TRUE(v.tokenize("", false, false).empty());
}

TEST_F(tokenizer_stories, special_tokens_only_with_parse_special) {
  const vocab& v = *v_;
  const auto parsed = v.tokenize("<s>Hi</s>", false, true);
  ASSERT_GE(parsed.size(), 3u);
  EXPECT_EQ(parsed.front(), 1);
  EXPECT_EQ(parsed.back(), 2);
  const auto literal = v.tokenize("<s>Hi</s>", false, false);
  for (const token_id id : literal) EXPECT_FALSE(v.is_control(id)) << id;
  EXPECT_EQ(v.detokenize(literal, true), "<s>Hi</s>");
}

// Characters outside the 512-token vocab fall back to <0xNN> byte tokens, so a character's
// bytes arrive in several tokens; the stream must hold them back until the character is whole.
TEST_F(tokenizer_stories, streaming_detokenization_emits_whole_characters) {
  const vocab& v = *v_;
  const std::string text = "Lily saw 日本 and 😀 — ok";
  const auto ids = v.tokenize(text, true, false);

  std::string pending;
  bool strip = false;
  std::string streamed;
  int held_back = 0;
  for (const token_id id : ids) {
    const std::string out = detokenize_push(v, id, pending, strip);
    EXPECT_TRUE(is_valid_utf8(out)) << "token " << id;
    if (out.empty() && v.type_of(id) == token_type::byte) ++held_back;
    streamed += out;
  }
  streamed += detokenize_flush(pending);
  EXPECT_EQ(streamed, text);  // BOS + the space prefix of the first word are both dropped
  EXPECT_GE(held_back, 6);    // 日, 本, 😀, — arrive as 3-4 byte tokens each
}

TEST_F(tokenizer_stories, stream_without_bos_keeps_leading_space_and_flush_repairs) {
  const vocab& v = *v_;
  // Generated continuation tokens (no BOS in the stream) keep their first space, as
  // llama.cpp's llama-simple prints them.
  std::string pending;
  bool strip = false;
  const auto ids = v.tokenize("and a boy", false, false);
  std::string out;
  for (const token_id id : ids) out += detokenize_push(v, id, pending, strip);
  EXPECT_EQ(out, " and a boy");

  // A stream cut inside a character: flush turns the dangling bytes into U+FFFD.
  const token_id e6 = v.find("<0xE6>");
  const token_id e97 = v.find("<0x97>");
  ASSERT_GE(e6, 0);
  ASSERT_GE(e97, 0);
  EXPECT_EQ(detokenize_push(v, e6, pending, strip), "");
  EXPECT_EQ(detokenize_push(v, e97, pending, strip), "");
  EXPECT_EQ(detokenize_flush(pending), "\xEF\xBF\xBD");
  EXPECT_TRUE(pending.empty());
  // An impossible byte is replaced at once rather than held.
  const token_id ff = v.find("<0xFF>");
  ASSERT_GE(ff, 0);
  EXPECT_EQ(detokenize_push(v, ff, pending, strip), "\xEF\xBF\xBD");
}

TEST(tokenizer, gpt2_special_tokens_and_end_of_generation) {
  const vocab v = load_vocab(models_dir + "/tokenizer/ggml-vocab-gpt-2.gguf");
  EXPECT_EQ(v.type(), "gpt2");
  EXPECT_EQ(v.pre(), "gpt-2");
  EXPECT_FALSE(v.add_bos_default());
  EXPECT_EQ(v.eos(), 50256);
  EXPECT_TRUE(v.is_eog(50256));
  const auto parsed = v.tokenize("Hello<|endoftext|>", false, true);
  EXPECT_EQ(parsed, (std::vector<token_id>{15496, 50256}));
  const auto literal = v.tokenize("Hello<|endoftext|>", false, false);
  EXPECT_GT(literal.size(), 3u);
  EXPECT_EQ(v.detokenize(literal, false), "Hello<|endoftext|>");
  EXPECT_EQ(v.token_to_piece(50256), "");
  EXPECT_EQ(v.token_to_piece(50256, true), "<|endoftext|>");
  EXPECT_EQ(v.token_to_piece(18435), " Hello");  // "ĠHello"

  const vocab llama3 = load_vocab(models_dir + "/tokenizer/ggml-vocab-gpt-2-pre-llama-bpe.gguf");
  EXPECT_TRUE(llama3.add_bos_default());  // Llama 3 adds <|begin_of_text|> by default
  EXPECT_EQ(llama3.tokenize("Hi", true, false).front(), llama3.bos());
}

TEST(tokenizer, invalid_utf8_is_tokenized_losslessly) {
  const vocab spm = load_vocab(models_dir + "/tokenizer/ggml-vocab-llama-spm.gguf");
  const vocab bpe = load_vocab(models_dir + "/tokenizer/ggml-vocab-gpt-2-pre-llama-bpe.gguf");
  const std::string junk("a\xFF\xC3(\xE2\x82 b\xF0\x9F\x98\x80\xED\xA0\x80z\x80\0x", 20);
  for (const vocab* v : {&spm, &bpe}) {
    const auto ids = v->tokenize(junk, false, true);
    for (const token_id id : ids) EXPECT_TRUE(v->valid(id));
    EXPECT_EQ(v->detokenize(ids, true), junk) << v->type();
  }
}

TEST(tokenizer, long_prompt_is_fast) {
  const vocab spm = load_vocab(models_dir + "/tokenizer/ggml-vocab-llama-spm.gguf");
  const vocab bpe = load_vocab(models_dir + "/tokenizer/ggml-vocab-gpt-2-pre-llama-bpe.gguf");
  std::string prompt;
  while (prompt.size() < 4096) {
    prompt += "The quick brown fox jumps over the lazy dog 1234567, naïve café 日本語! ";
  }
  std::string no_spaces(4096, 'a');  // one long word: worst case for merges
  for (const vocab* v : {&spm, &bpe}) {
    for (const std::string* text : {&prompt, &no_spaces}) {
      double best_ms = 1e9;
      for (int rep = 0; rep < 5; ++rep) {
        const auto t0 = std::chrono::steady_clock::now();
        const auto ids = v->tokenize(*text, true, true);
        const auto t1 = std::chrono::steady_clock::now();
        EXPECT_FALSE(ids.empty());
        best_ms = std::min(best_ms, std::chrono::duration<double, std::milli>(t1 - t0).count());
      }
      std::printf("[ perf ] %s: %zu bytes in %.3f ms\n", std::string(v->type()).c_str(),
                  text->size(), best_ms);
      EXPECT_LT(best_ms, 10.0);
    }
  }
}

// Gemma's SentencePiece vocabularies set tokenizer.ggml.add_space_prefix to false: no space is
// put in front of the text, so "Hello" is not "▁Hello", and a text that starts with a space
// tokenizes as the text without it does under a vocabulary that adds the prefix. Checked on
// llama.cpp's SentencePiece test vocabulary with the flag turned off, over its test texts.
TEST(tokenizer, spm_without_a_space_prefix_tokenizes_as_gemma_does) {
  const std::string source = models_dir + "/tokenizer/ggml-vocab-llama-spm.gguf";
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("rbee_vocab_no_prefix_" + std::to_string(::getpid()) + ".gguf"))
                               .string();
  gguf::writer w;
  const gguf::file original = gguf::file::open(source);
  for (const auto& e : original.metadata()) w.set(e);
  w.set_bool("tokenizer.ggml.add_space_prefix", false);
  w.write(path);
  const vocab with_prefix = load_vocab(source);
  const vocab no_prefix = load_vocab(path);
  std::filesystem::remove(path);
  ASSERT_FALSE(no_prefix.add_space_prefix());

  const auto hello = no_prefix.tokenize("Hello world", false, false);
  ASSERT_FALSE(hello.empty());
  EXPECT_EQ(no_prefix.token_text(hello.front()).rfind("\xe2\x96\x81", 0), std::string::npos)
      << "the first piece has no space mark: " << no_prefix.token_text(hello.front());
  EXPECT_EQ(no_prefix.detokenize(hello, /*strip_space_prefix=*/true), "Hello world");
  int compared = 0;
  for (const auto& c : read_vectors(source)) {
    if (c.text.empty()) continue;
    EXPECT_EQ(ids_to_string(no_prefix.tokenize(" " + c.text, false, false)),
              ids_to_string(with_prefix.tokenize(c.text, false, false)))
        << "text: '" << c.text << "'";
    const auto ids = no_prefix.tokenize(c.text, false, false);
    EXPECT_EQ(no_prefix.detokenize(ids, true), c.text);
    ++compared;
  }
  EXPECT_GE(compared, 40);
}

// ---- bad metadata: graceful engine_error, never a crash ----

class tokenizer_metadata : public testing::Test {
 protected:
  void SetUp() override {
    path_ = (std::filesystem::temp_directory_path() /
             ("rbee_vocab_test_" + std::to_string(::getpid()) + ".gguf"))
                .string();
    w_.set_string("general.architecture", "llama");
    w_.set_string("tokenizer.ggml.model", "llama");
    w_.set_string_array("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "a", "b", "ab"});
  }
  void TearDown() override { std::filesystem::remove(path_); }

  error_code load_error() {
    w_.write(path_);
    const gguf::file f = gguf::file::open(path_);
    try {
      vocab::from_gguf(f);
    } catch (const engine_error& e) {
      message_ = e.what();
      return e.code;
    }
    ADD_FAILURE() << "expected an engine_error";
    return error_code::invalid_argument;
  }

  gguf::writer w_;
  std::string path_;
  std::string message_;
};

TEST_F(tokenizer_metadata, minimal_vocab_loads_and_merges_by_score) {
  gguf::array_value scores{gguf::value_type::float32, {}, {0, 0, 0, -1, -1, -0.5}, {}, {}};
  w_.set_array("tokenizer.ggml.scores", scores);
  w_.write(path_);
  const vocab v = vocab::from_gguf(gguf::file::open(path_));
  // No "▁" token and no byte tokens: each byte of the space prefix becomes <unk> (id 0).
  EXPECT_EQ(v.tokenize("ab", false, false), (std::vector<token_id>{0, 0, 0, 5}));
}

TEST_F(tokenizer_metadata, missing_model_key) {
  gguf::writer fresh;
  fresh.set_string_array("tokenizer.ggml.tokens", {"a"});
  w_ = fresh;
  EXPECT_EQ(load_error(), error_code::file_corrupt);
  EXPECT_NE(message_.find("tokenizer.ggml.model"), std::string::npos) << message_;
}

TEST_F(tokenizer_metadata, unsupported_model) {
  w_.set_string("tokenizer.ggml.model", "bert");
  EXPECT_EQ(load_error(), error_code::unsupported_architecture);
  EXPECT_NE(message_.find("bert"), std::string::npos) << message_;
}

TEST_F(tokenizer_metadata, tokens_of_wrong_type) {
  w_.set_uint32("tokenizer.ggml.tokens", 7);
  EXPECT_EQ(load_error(), error_code::file_corrupt);
  EXPECT_NE(message_.find("tokenizer.ggml.tokens"), std::string::npos) << message_;
}

TEST_F(tokenizer_metadata, short_scores) {
  w_.set_array("tokenizer.ggml.scores", {gguf::value_type::float32, {}, {0.0}, {}, {}});
  EXPECT_EQ(load_error(), error_code::file_corrupt);
  EXPECT_NE(message_.find("scores"), std::string::npos) << message_;
}

TEST_F(tokenizer_metadata, gpt2_without_merges) {
  w_.set_string("tokenizer.ggml.model", "gpt2");
  EXPECT_EQ(load_error(), error_code::file_corrupt);
  EXPECT_NE(message_.find("merges"), std::string::npos) << message_;
}

TEST_F(tokenizer_metadata, unknown_pre_tokenizer) {
  w_.set_string("tokenizer.ggml.model", "gpt2");
  w_.set_string_array("tokenizer.ggml.merges", {"a b"});
  w_.set_string("tokenizer.ggml.pre", "no-such-pre");
  EXPECT_EQ(load_error(), error_code::unsupported_architecture);
  EXPECT_NE(message_.find("no-such-pre"), std::string::npos) << message_;
}

TEST_F(tokenizer_metadata, out_of_range_special_ids_are_ignored) {
  w_.set_uint32("tokenizer.ggml.bos_token_id", 4000000000u);
  w_.set_uint32("tokenizer.ggml.eos_token_id", 99);
  w_.write(path_);
  const vocab v = vocab::from_gguf(gguf::file::open(path_));
  EXPECT_EQ(v.bos(), 1);  // the llama default stays
  EXPECT_EQ(v.eos(), 2);
}

}  // namespace
}  // namespace rbee::engine
