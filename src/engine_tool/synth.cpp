// `synth`: random-weight models of real shapes (llama, qwen2, qwen3, gemma2, gemma3), for
// benchmarks and plumbing tests, with the metadata keys and tensor names llama.cpp writes.
#include <array>
#include <chrono>
#include <cmath>
#include <fstream>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <fmt/ostream.h>

#include "engine/cpu/kernels.h"
#include "engine/quant.h"
#include "engine/sampling.h"
#include "engine_tool/engine_tool.h"
#include "engine_tool/type_mix.h"
#include "gguf/gguf.h"

namespace rbee::engine_tool {

using engine::tensor_type;

namespace {

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  if (!in) {
    throw engine::engine_error(engine::error_code::file_not_found,
                               fmt::format("cannot read {}", path));
  }
  return text.str();
}

struct shape {
  std::string_view name;
  int n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx, n_vocab;
  int n_swa;  // the sliding window of gemma2/3 at this size
};

constexpr std::array<shape, 3> shapes{{
    {"tiny", 256, 4, 8, 4, 768, 2048, 512, 32},
    {"tinyllama", 2048, 22, 32, 4, 5632, 2048, 32000, 1024},
    {"llama7b", 4096, 32, 32, 32, 11008, 4096, 32000, 4096},
}};

// What an architecture adds to a shape, as llama.cpp's converter writes it.
struct family {
  std::string_view name;  // --arch
  std::string_view arch;  // general.architecture
  bool wide_heads;        // head_dim = 2 * n_embd / n_head (qwen3 and gemma heads are wider)
  bool qkv_bias;          // qwen2
  bool qk_norm;           // qwen3, gemma3
  bool post_norms;        // gemma2, gemma3
  bool tied_output;       // gemma: the embedding is the output matrix
  int swa_pattern;        // layers in a group of which all but the last slide (gemma)
  float rope_base;
  float rms_eps;
  bool fused;    // phi3: attn_qkv and ffn_up (gate|up) as one matrix each, LongRoPE factors
  int n_expert;  // mixture of experts (2 used per token), each of the shape's n_ff; 0: dense
};

constexpr std::array<family, 9> families{{
    {"llama", "llama", false, false, false, false, false, 0, 10000.0f, 1e-5f, false, 0},
    {"qwen2", "qwen2", false, true, false, false, false, 0, 1000000.0f, 1e-6f, false, 0},
    {"qwen3", "qwen3", true, false, true, false, false, 0, 1000000.0f, 1e-6f, false, 0},
    {"gemma2", "gemma2", true, false, false, true, true, 2, 10000.0f, 1e-6f, false, 0},
    {"gemma3", "gemma3", true, false, true, true, true, 6, 1000000.0f, 1e-6f, false, 0},
    {"phi3", "phi3", false, false, false, false, false, 0, 10000.0f, 1e-5f, true, 0},
    {"mixtral", "llama", false, false, false, false, false, 0, 1000000.0f, 1e-5f, false, 8},
    {"qwen3moe", "qwen3moe", true, false, true, false, false, 0, 1000000.0f, 1e-6f, false, 8},
    // qwen2moe: also a shared expert of the shape's n_ff, gated per token.
    {"qwen2moe", "qwen2moe", false, true, false, false, false, 0, 1000000.0f, 1e-6f, false, 8},
}};
constexpr int experts_used = 2;

// phi3's LongRoPE: trained on a quarter of the context, extended by the long factors; cos and
// sin scaled by sqrt(1 + ln(scale) / ln(original)) as its converter computes it.
constexpr int longrope_extension = 4;

// The hyperparameter keys of `f` for the shape (n_layer may differ from the shape's).
void write_hyperparameters(gguf::writer& w, const family& f, const shape& sh, int n_layer,
                           int head_dim) {
  const auto key = [&](std::string_view suffix) { return fmt::format("{}.{}", f.arch, suffix); };
  w.set_uint32(key("context_length"), static_cast<uint32_t>(sh.n_ctx));
  w.set_uint32(key("embedding_length"), static_cast<uint32_t>(sh.n_embd));
  w.set_uint32(key("block_count"), static_cast<uint32_t>(n_layer));
  w.set_uint32(key("feed_forward_length"), static_cast<uint32_t>(sh.n_ff));
  w.set_uint32(key("attention.head_count"), static_cast<uint32_t>(sh.n_head));
  w.set_uint32(key("attention.head_count_kv"), static_cast<uint32_t>(sh.n_head_kv));
  w.set_uint32(key("rope.dimension_count"), static_cast<uint32_t>(head_dim));
  w.set_float32(key("attention.layer_norm_rms_epsilon"), f.rms_eps);
  w.set_float32(key("rope.freq_base"), f.rope_base);
  if (f.wide_heads) {
    w.set_uint32(key("attention.key_length"), static_cast<uint32_t>(head_dim));
    w.set_uint32(key("attention.value_length"), static_cast<uint32_t>(head_dim));
  }
  if (f.swa_pattern > 0)
    w.set_uint32(key("attention.sliding_window"), static_cast<uint32_t>(sh.n_swa));
  if (f.fused) {
    const int original = sh.n_ctx / longrope_extension;
    w.set_uint32(key("rope.scaling.original_context_length"), static_cast<uint32_t>(original));
    w.set_float32(key("rope.scaling.attn_factor"),
                  static_cast<float>(std::sqrt(1.0 + std::log(double{longrope_extension}) /
                                                         std::log(static_cast<double>(original)))));
  }
  if (f.n_expert > 0) {
    w.set_uint32(key("expert_count"), static_cast<uint32_t>(f.n_expert));
    w.set_uint32(key("expert_used_count"), experts_used);
    if (f.arch == "qwen3moe" || f.arch == "qwen2moe")
      w.set_uint32(key("expert_feed_forward_length"), static_cast<uint32_t>(sh.n_ff));
    if (f.arch == "qwen2moe")
      w.set_uint32(key("expert_shared_feed_forward_length"), static_cast<uint32_t>(sh.n_ff));
  }
  if (f.arch == "gemma2") {
    w.set_float32(key("attn_logit_softcapping"), 50.0f);
    w.set_float32(key("final_logit_softcapping"), 30.0f);
  }
}

std::string family_names() {
  std::string names;
  for (const auto& f : families) names += fmt::format("{}{}", names.empty() ? "" : ", ", f.name);
  return names;
}

// Standard normal quantiles at 65536 evenly spaced probabilities: 16 random bits give one
// N(0, 1) sample, four samples per 64-bit draw (the sampler's xoshiro).
const std::array<float, 65536>& normal_table() {
  static const auto table = [] {
    std::array<float, 65536> t{};
    for (size_t i = 0; i < t.size(); ++i) {
      const double p = (static_cast<double>(i) + 0.5) / 65536.0;
      // Inverse of Phi(x) = erfc(-x / sqrt 2) / 2 by bisection: exact enough, once.
      double lo = -10, hi = 10;
      for (int it = 0; it < 60; ++it) {
        const double mid = (lo + hi) / 2;
        (0.5 * std::erfc(-mid / std::sqrt(2.0)) < p ? lo : hi) = mid;
      }
      t[i] = static_cast<float>((lo + hi) / 2);
    }
    return t;
  }();
  return table;
}

void fill_normal(engine::rng& gen, float mean, float sd, float* out, int64_t n) {
  const auto& table = normal_table();
  for (int64_t i = 0; i < n; i += 4) {
    uint64_t r = gen.next();
    for (int64_t j = i; j < std::min(i + 4, n); ++j, r >>= 16)
      out[j] = mean + sd * table[r & 0xFFFF];
  }
}

// A llama-type (SentencePiece) vocabulary that needs no input file: <unk>, <s>, </s>, the
// 256 byte tokens, then printable characters and generated letter pieces up to n_vocab.
void write_byte_vocab(gguf::writer& w, int n_vocab) {
  std::vector<std::string> tokens{"<unk>", "<s>", "</s>"};
  std::vector<int64_t> types{2, 3, 3};
  for (int b = 0; b < 256; ++b) {
    tokens.push_back(fmt::format("<0x{:02X}>", b));
    types.push_back(6);
  }
  std::vector<std::string> pieces{"\xe2\x96\x81"};  // "▁", the SentencePiece space
  for (char c = 33; c < 127; ++c) {
    pieces.emplace_back(1, c);
    pieces.push_back("\xe2\x96\x81" + std::string(1, c));
  }
  for (char a = 'a'; a <= 'z'; ++a)
    for (char b = 'a'; b <= 'z'; ++b) {
      pieces.push_back(std::string{a, b});
      pieces.push_back("\xe2\x96\x81" + std::string{a, b});
    }
  for (char a = 'a'; a <= 'z' && pieces.size() < static_cast<size_t>(n_vocab); ++a)
    for (char b = 'a'; b <= 'z'; ++b)
      for (char c = 'a'; c <= 'z'; ++c) {
        pieces.push_back(std::string{a, b, c});
        pieces.push_back("\xe2\x96\x81" + std::string{a, b, c});
      }
  gguf::array_value scores;
  scores.element_type = gguf::value_type::float32;
  for (size_t i = 0; tokens.size() < static_cast<size_t>(n_vocab); ++i) {
    tokens.push_back(pieces.at(i));
    types.push_back(1);
  }
  for (size_t i = 0; i < tokens.size(); ++i)
    scores.floats.push_back(types[i] == 1 ? -static_cast<double>(i) : 0.0);
  w.set_string("tokenizer.ggml.model", "llama");
  w.set_string_array("tokenizer.ggml.tokens", std::move(tokens));
  w.set_array("tokenizer.ggml.scores", std::move(scores));
  gguf::array_value token_types;
  token_types.element_type = gguf::value_type::int32;
  token_types.ints = std::move(types);
  w.set_array("tokenizer.ggml.token_type", std::move(token_types));
  w.set_uint32("tokenizer.ggml.unknown_token_id", 0);
  w.set_uint32("tokenizer.ggml.bos_token_id", 1);
  w.set_uint32("tokenizer.ggml.eos_token_id", 2);
  w.set_bool("tokenizer.ggml.add_bos_token", true);
  w.set_bool("tokenizer.ggml.add_eos_token", false);
}

}  // namespace

int synth(const synth_options& opts, std::ostream& log) {
  const shape* sh = nullptr;
  for (const auto& s : shapes)
    if (s.name == opts.shape) sh = &s;
  if (!sh)
    throw engine::engine_error(
        engine::error_code::invalid_argument,
        fmt::format("unknown shape '{}' (tiny, tinyllama, llama7b)", opts.shape));
  const family* fam = nullptr;
  for (const auto& f : families)
    if (f.name == opts.arch) fam = &f;
  if (!fam)
    throw engine::engine_error(
        engine::error_code::invalid_argument,
        fmt::format("unknown architecture '{}' ({})", opts.arch, family_names()));
  // gemma3 needs a whole group of layers for one global layer among the sliding ones.
  const int n_layer = std::max(sh->n_layer, fam->swa_pattern);
  const int head_dim = sh->n_embd / sh->n_head * (fam->wide_heads ? 2 : 1);
  const auto kind = parse_file_kind(opts.type);
  if (!kind)
    throw engine::engine_error(engine::error_code::invalid_argument,
                               fmt::format("unknown type '{}' ({})", opts.type, file_kind_names()));
  if (opts.output.empty())
    throw engine::engine_error(engine::error_code::invalid_argument, "synth needs -o OUT");

  gguf::writer w;
  w.set_string("general.architecture", std::string(fam->arch));
  w.set_string("general.name",
               fmt::format("{} {} random weights (rbee synth)", fam->name, sh->name));
  w.set_uint32("general.file_type", kind->file_type);
  w.set_uint32("general.quantization_version", 2);
  write_hyperparameters(w, *fam, *sh, n_layer, head_dim);

  int n_vocab = sh->n_vocab;
  if (!opts.vocab_from.empty()) {
    const auto src = gguf::file::open(opts.vocab_from);
    const auto* tokens = src.get_array("tokenizer.ggml.tokens");
    if (!tokens || tokens->size() == 0)
      throw engine::engine_error(engine::error_code::file_corrupt,
                                 fmt::format("{} has no tokenizer.ggml.tokens", opts.vocab_from));
    n_vocab = static_cast<int>(tokens->size());
    for (const auto& e : src.metadata())
      if (e.key.starts_with("tokenizer.")) w.set(e);
  } else {
    write_byte_vocab(w, n_vocab);
  }
  w.set_uint32(fmt::format("{}.vocab_size", fam->arch), static_cast<uint32_t>(n_vocab));
  if (!opts.chat_template_file.empty()) {
    w.set_string("tokenizer.chat_template", read_text_file(opts.chat_template_file));
  }

  const int n_threads =
      opts.n_threads > 0 ? opts.n_threads : static_cast<int>(std::thread::hardware_concurrency());
  auto pool = std::make_shared<engine::cpu::thread_pool>(std::max(n_threads, 1));
  const int64_t d = sh->n_embd, hd = head_dim, nq = hd * sh->n_head, kv = hd * sh->n_head_kv;
  uint64_t tensor_seed = opts.seed;
  const auto add = [&](const std::string& name, std::vector<int64_t> shape, float mean, float sd,
                       bool is_output) {
    const tensor_type type = shape.size() == 1
                                 ? tensor_type::f32
                                 : tensor_type_for(*kind, name, n_layer, sh->n_head / sh->n_head_kv,
                                                   shape[0], is_output);
    const int64_t n_cols = shape[0];
    int64_t n_rows = 1;
    for (size_t i = 1; i < shape.size(); ++i) n_rows *= shape[i];
    const uint64_t seed = ++tensor_seed;
    w.add_tensor_lazy(name, type, shape, [=](std::span<uint8_t> out) {
      // Rows in chunks across threads; each chunk has its own seeded generator.
      constexpr int64_t rows_per_task = 16;
      const int n_tasks = static_cast<int>((n_rows + rows_per_task - 1) / rows_per_task);
      const size_t row_bytes = engine::row_size(type, n_cols);
      std::vector<std::vector<float>> rows(static_cast<size_t>(pool->size()),
                                           std::vector<float>(static_cast<size_t>(n_cols)));
      pool->run(n_tasks, [&](int task, int thread) {
        engine::rng gen(seed * 0x100000001B3ull + static_cast<uint64_t>(task));
        float* row = rows[static_cast<size_t>(thread)].data();
        for (int64_t r = task * rows_per_task; r < std::min(n_rows, (task + 1) * rows_per_task);
             ++r) {
          fill_normal(gen, mean, sd, row, n_cols);
          engine::quantize_row(type, row, out.data() + static_cast<size_t>(r) * row_bytes, n_cols);
        }
      });
    });
  };
  constexpr float sd = 0.02f;
  // Tied embeddings are the output matrix too: quantized as one (llama.cpp's rule).
  add("token_embd.weight", {d, n_vocab}, 0, sd, fam->tied_output);
  for (int i = 0; i < n_layer; ++i) {
    const auto n = [i](const char* s) { return fmt::format("blk.{}.{}", i, s); };
    add(n("attn_norm.weight"), {d}, 1, sd, false);
    if (fam->fused) {
      add(n("attn_qkv.weight"), {d, nq + 2 * kv}, 0, sd, false);
    } else {
      add(n("attn_q.weight"), {d, nq}, 0, sd, false);
      add(n("attn_k.weight"), {d, kv}, 0, sd, false);
      add(n("attn_v.weight"), {d, kv}, 0, sd, false);
    }
    if (fam->qkv_bias) {
      add(n("attn_q.bias"), {nq}, 0, sd, false);
      add(n("attn_k.bias"), {kv}, 0, sd, false);
      add(n("attn_v.bias"), {kv}, 0, sd, false);
    }
    if (fam->qk_norm) {
      add(n("attn_q_norm.weight"), {hd}, 1, sd, false);
      add(n("attn_k_norm.weight"), {hd}, 1, sd, false);
    }
    add(n("attn_output.weight"), {nq, d}, 0, sd, false);
    if (fam->post_norms) add(n("post_attention_norm.weight"), {d}, 1, sd, false);
    add(n("ffn_norm.weight"), {d}, 1, sd, false);
    if (fam->n_expert > 0) {
      const int64_t ne = fam->n_expert;
      // A wide router: its top choices stand apart, so rounding does not change them.
      add(n("ffn_gate_inp.weight"), {d, ne}, 0, 0.5f, false);
      add(n("ffn_gate_exps.weight"), {d, sh->n_ff, ne}, 0, sd, false);
      add(n("ffn_up_exps.weight"), {d, sh->n_ff, ne}, 0, sd, false);
      add(n("ffn_down_exps.weight"), {sh->n_ff, d, ne}, 0, sd, false);
      if (fam->arch == "qwen2moe") {
        add(n("ffn_gate_inp_shexp.weight"), {d}, 0, sd, false);
        add(n("ffn_gate_shexp.weight"), {d, sh->n_ff}, 0, sd, false);
        add(n("ffn_up_shexp.weight"), {d, sh->n_ff}, 0, sd, false);
        add(n("ffn_down_shexp.weight"), {sh->n_ff, d}, 0, sd, false);
      }
    } else if (fam->fused) {
      add(n("ffn_up.weight"), {d, 2 * sh->n_ff}, 0, sd, false);
    } else {
      add(n("ffn_gate.weight"), {d, sh->n_ff}, 0, sd, false);
      add(n("ffn_up.weight"), {d, sh->n_ff}, 0, sd, false);
    }
    if (fam->n_expert == 0) add(n("ffn_down.weight"), {sh->n_ff, d}, 0, sd, false);
    if (fam->post_norms) add(n("post_ffw_norm.weight"), {d}, 1, sd, false);
  }
  add("output_norm.weight", {d}, 1, sd, false);
  if (!fam->tied_output) add("output.weight", {d, n_vocab}, 0, sd, true);
  if (fam->fused) {
    // Factors near 1 within the original context, larger (slower rotation) beyond it.
    add("rope_factors_short.weight", {hd / 2}, 1, sd, false);
    add("rope_factors_long.weight", {hd / 2}, 2, 0.2f, false);
  }

  const auto t0 = std::chrono::steady_clock::now();
  w.write(opts.output);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  fmt::print(log, "wrote {} ({} {} {}, {} tokens) in {:.1f} s\n", opts.output, fam->name, sh->name,
             kind->name, n_vocab, s);
  return 0;
}

}  // namespace rbee::engine_tool
