// Model loading: hyperparameters, weight views into the mapping, header-only info.
#include "engine/model.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <system_error>
#include <thread>

#include "engine/memory_estimate.h"
#include "engine/vocab.h"
#include "gguf/summary.h"

namespace rbee::engine {

namespace {

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// Metadata lookups with the GGUF reader's type errors turned into engine errors.
struct meta {
  const gguf::file& file;
  std::string arch;

  uint64_t get_uint(const std::string& key, std::optional<uint64_t> fallback = {}) const {
    std::optional<uint64_t> v;
    try {
      v = file.get_uint(key);
    } catch (const gguf::format_error& e) {
      throw engine_error(error_code::file_corrupt, str(key, ": ", e.what()));
    }
    if (!v && !fallback)
      throw engine_error(error_code::file_corrupt, str("missing metadata key ", key));
    return v ? *v : *fallback;
  }
  double get_float(const std::string& key, double fallback) const {
    try {
      return file.get_float(key).value_or(fallback);
    } catch (const gguf::format_error& e) {
      throw engine_error(error_code::file_corrupt, str(key, ": ", e.what()));
    }
  }
  std::optional<std::string> get_string(const std::string& key) const {
    try {
      return file.get_string(key);
    } catch (const gguf::format_error& e) {
      throw engine_error(error_code::file_corrupt, str(key, ": ", e.what()));
    }
  }
  std::string key(std::string_view suffix) const { return str(arch, ".", suffix); }
};

int int_in_range(uint64_t v, const std::string& key, uint64_t lo, uint64_t hi) {
  if (v < lo || v > hi)
    throw engine_error(error_code::file_corrupt,
                       str(key, " = ", v, " is out of range [", lo, ", ", hi, "]"));
  return static_cast<int>(v);
}

std::string architecture_of(const gguf::file& file) {
  std::optional<std::string> arch;
  try {
    arch = file.get_string("general.architecture");
  } catch (const gguf::format_error& e) {
    throw engine_error(error_code::file_corrupt, str("general.architecture: ", e.what()));
  }
  if (!arch)
    throw engine_error(error_code::file_corrupt, "missing metadata key general.architecture");
  return *arch;
}

gguf::file open_file(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    throw engine_error(error_code::file_not_found, str("model file not found: ", path));
  try {
    return gguf::file::open(path);
  } catch (const gguf::format_error& e) {
    throw engine_error(error_code::file_corrupt, str(path, ": ", e.what()));
  } catch (const std::system_error& e) {
    throw engine_error(error_code::file_not_found, str(path, ": ", e.what()));
  }
}

int physical_cores() {
  // Distinct (package, core) pairs; SMT siblings share a core and slow matmuls down.
  std::set<std::pair<std::string, std::string>> cores;
  for (unsigned cpu = 0;; ++cpu) {
    const std::string base = str("/sys/devices/system/cpu/cpu", cpu, "/topology/");
    std::ifstream package(base + "physical_package_id"), core(base + "core_id");
    if (!package || !core) break;
    std::string p, c;
    package >> p;
    core >> c;
    cores.emplace(p, c);
  }
  if (!cores.empty()) return static_cast<int>(cores.size());
  return std::max(1u, std::thread::hardware_concurrency());
}

}  // namespace

namespace {

bool is_supported(const std::string& arch) {
  return arch == "llama" || arch == "qwen2" || arch == "qwen2moe" || arch == "qwen3" ||
         arch == "qwen3moe" || arch == "gemma2" || arch == "gemma3" || arch == "phi3";
}

float positive_float(const meta& m, const std::string& key, double fallback) {
  const double v = m.get_float(key, fallback);
  if (!(v > 0)) throw engine_error(error_code::file_corrupt, key + " must be positive");
  return static_cast<float>(v);
}

// What sets each family apart from llama, with the keys and defaults llama.cpp uses.
void read_family(const meta& m, hparams& hp) {
  const std::string& arch = hp.architecture;
  hp.rope = arch == "llama" ? rope_style::adjacent_pairs : rope_style::halves;
  hp.has_qkv_bias = arch == "qwen2" || arch == "qwen2moe";
  hp.has_qk_norm = arch == "qwen3" || arch == "qwen3moe" || arch == "gemma3";
  hp.attn_scale = 1.0f / std::sqrt(static_cast<float>(hp.head_dim));
  hp.n_expert = int_in_range(m.get_uint(m.key("expert_count"), 0), m.key("expert_count"), 0, 1024);
  if ((arch == "qwen3moe" || arch == "qwen2moe") && hp.n_expert == 0)
    throw engine_error(error_code::file_corrupt, "missing metadata key " + m.key("expert_count"));
  if (hp.n_expert > 0) {
    hp.n_expert_used =
        int_in_range(m.get_uint(m.key("expert_used_count")), m.key("expert_used_count"), 1,
                     static_cast<uint64_t>(std::min(hp.n_expert, max_experts_used)));
    // qwen3moe's feed_forward_length is a dense size its experts do not use.
    hp.n_ff = int_in_range(
        m.get_uint(m.key("expert_feed_forward_length"), static_cast<uint64_t>(hp.n_ff)),
        m.key("expert_feed_forward_length"), 1, 1u << 20);
  }
  if (arch == "qwen2moe") {
    hp.expert_weights_norm = false;
    hp.n_ff_shared = int_in_range(m.get_uint(m.key("expert_shared_feed_forward_length")),
                                  m.key("expert_shared_feed_forward_length"), 1, 1u << 20);
  }
  if (arch == "phi3") {
    // llama.cpp turns Phi's sliding window off (its converters do not say which layers
    // slide); so does rbee.
    hp.n_ctx_orig = int_in_range(m.get_uint(m.key("rope.scaling.original_context_length"),
                                            static_cast<uint64_t>(hp.n_ctx_train)),
                                 m.key("rope.scaling.original_context_length"), 1, 1u << 24);
    hp.rope_attn_factor = positive_float(m, m.key("rope.scaling.attn_factor"), 1.0);
  }
  if (arch != "gemma2" && arch != "gemma3") return;
  hp.has_post_norms = true;
  hp.ffn_act = ffn_activation::gelu_tanh;
  hp.embd_scale = std::sqrt(static_cast<float>(hp.n_embd));
  // Gemma's largest models scale queries by n_embd / n_head instead of the head size
  // (query_pre_attn_scalar); llama.cpp tells them by their layer count, as does this.
  const int layers_of_27b = arch == "gemma2" ? 46 : 62;
  if (hp.n_layer == layers_of_27b)
    hp.attn_scale = 1.0f / std::sqrt(static_cast<float>(hp.n_embd / hp.n_head));
  const uint64_t window_default = arch == "gemma2" ? 4096 : 0;
  hp.n_swa = int_in_range(m.get_uint(m.key("attention.sliding_window"), window_default),
                          m.key("attention.sliding_window"), 0, 1u << 24);
  hp.swa_pattern = static_cast<int>(gguf::sliding_window_pattern(arch));
  if (arch == "gemma2") {
    hp.attn_softcap = positive_float(m, m.key("attn_logit_softcapping"), 50.0);
    hp.final_softcap = positive_float(m, m.key("final_logit_softcapping"), 30.0);
  } else {
    hp.swa_has_own_rope = hp.n_swa > 0;
    hp.rope_swa = {.freq_base = 10000.0f, .freq_scale = 1.0f};
    const double cap = m.get_float(m.key("final_logit_softcapping"), 0.0);
    if (cap < 0)
      throw engine_error(error_code::file_corrupt,
                         m.key("final_logit_softcapping") + " must not be negative");
    hp.final_softcap = static_cast<float>(cap);
  }
}

}  // namespace

hparams read_hparams(const gguf::file& file) {
  hparams hp;
  hp.architecture = architecture_of(file);
  if (!is_supported(hp.architecture))
    throw engine_error(error_code::unsupported_architecture,
                       str("architecture '", hp.architecture,
                           "' is not supported (supported: ", supported_architectures, ")"));
  const meta m{file, hp.architecture};
  constexpr uint64_t big = 1u << 20;
  hp.n_embd =
      int_in_range(m.get_uint(m.key("embedding_length")), m.key("embedding_length"), 1, big);
  hp.n_layer = int_in_range(m.get_uint(m.key("block_count")), m.key("block_count"), 1, 4096);
  hp.n_ff =
      int_in_range(m.get_uint(m.key("feed_forward_length")), m.key("feed_forward_length"), 1, big);
  hp.n_head = int_in_range(m.get_uint(m.key("attention.head_count")), m.key("attention.head_count"),
                           1, 4096);
  hp.n_head_kv =
      int_in_range(m.get_uint(m.key("attention.head_count_kv"), hp.n_head),
                   m.key("attention.head_count_kv"), 1, static_cast<uint64_t>(hp.n_head));
  if (hp.n_head % hp.n_head_kv != 0)
    throw engine_error(error_code::file_corrupt,
                       str(m.key("attention.head_count_kv"), " = ", hp.n_head_kv,
                           " does not divide ", m.key("attention.head_count"), " = ", hp.n_head));
  hp.head_dim = int_in_range(
      m.get_uint(m.key("attention.key_length"), static_cast<uint64_t>(hp.n_embd / hp.n_head)),
      m.key("attention.key_length"), 1, 4096);
  if (hp.head_dim % 2 != 0)
    throw engine_error(error_code::file_corrupt, str("head dimension ", hp.head_dim, " is odd"));
  hp.n_rot =
      int_in_range(m.get_uint(m.key("rope.dimension_count"), static_cast<uint64_t>(hp.head_dim)),
                   m.key("rope.dimension_count"), 2, static_cast<uint64_t>(hp.head_dim));
  hp.n_rot &= ~1;
  hp.n_ctx_train =
      int_in_range(m.get_uint(m.key("context_length"), 2048), m.key("context_length"), 1, 1u << 24);
  hp.rms_eps = static_cast<float>(m.get_float(m.key("attention.layer_norm_rms_epsilon"), 1e-5));
  hp.rope_freq_base = static_cast<float>(m.get_float(m.key("rope.freq_base"), 10000.0));
  if (!(hp.rope_freq_base > 0))
    throw engine_error(error_code::file_corrupt, m.key("rope.freq_base") + " must be positive");
  const auto scaling = m.get_string(m.key("rope.scaling.type"));
  if (scaling && *scaling == "linear") {
    const double factor = m.get_float(m.key("rope.scaling.factor"), 1.0);
    if (!(factor > 0))
      throw engine_error(error_code::file_corrupt,
                         m.key("rope.scaling.factor") + " must be positive");
    hp.rope_freq_scale = static_cast<float>(1.0 / factor);
  } else if (scaling && *scaling != "none") {
    throw engine_error(error_code::unsupported_architecture,
                       str(m.key("rope.scaling.type"), " = '", *scaling,
                           "' is not supported (supported: none, linear)"));
  } else if (!scaling) {
    // Some converters write only the factor (older ones as rope.scale_linear).
    const double factor =
        m.get_float(m.key("rope.scaling.factor"), m.get_float(m.key("rope.scale_linear"), 1.0));
    if (factor > 0) hp.rope_freq_scale = static_cast<float>(1.0 / factor);
  }
  read_family(m, hp);

  const gguf::tensor_info* embd = file.find_tensor("token_embd.weight");
  if (!embd || embd->shape.size() != 2)
    throw engine_error(error_code::file_corrupt, "tensor token_embd.weight is missing or not 2-D");
  hp.n_vocab =
      int_in_range(static_cast<uint64_t>(embd->shape[1]), "token_embd.weight rows", 1, 1u << 24);
  return hp;
}

weight get_weight(const gguf::file& file, const std::string& name, std::vector<int64_t> shape,
                  bool required) {
  const gguf::tensor_info* t = file.find_tensor(name);
  if (!t) {
    if (!required) return {};
    throw engine_error(error_code::file_corrupt, str("tensor ", name, " is missing"));
  }
  if (t->shape != shape)
    throw engine_error(error_code::file_corrupt,
                       str("tensor ", name, " has shape ", shape_string(t->shape), ", expected ",
                           shape_string(shape)));
  if (shape.size() > 1 && t->type == tensor_type::q8_k)
    throw engine_error(
        error_code::unsupported_tensor_type,
        str("tensor ", name, " has type ", to_string(t->type), ", which is not a weight type"));
  weight w;
  w.type = t->type;
  w.data = t->data;
  w.n_cols = shape[0];
  w.n_rows = 1;
  for (size_t i = 1; i < shape.size(); ++i) w.n_rows *= shape[i];
  if (w.n_cols % traits_of(w.type).block_size != 0)
    throw engine_error(error_code::file_corrupt,
                       str("tensor ", name, " has rows of ", w.n_cols,
                           " elements, not a multiple of the ", to_string(w.type), " block size"));
  if (t->n_bytes < static_cast<uint64_t>(w.n_rows) * w.row_bytes())
    throw engine_error(error_code::file_corrupt, str("tensor ", name, " data is truncated"));
  return w;
}

model_info read_info(const gguf::file& file, const std::string& path) {
  model_info info;
  const hparams hp = read_hparams(file);
  const meta m{file, hp.architecture};
  gguf::header_summary header;
  try {
    header = gguf::summarize(file);
  } catch (const gguf::format_error& e) {
    throw engine_error(error_code::file_corrupt, e.what());
  }
  info.architecture = hp.architecture;
  info.name = header.name.empty() ? std::filesystem::path(path).stem().string() : header.name;
  info.quantization = header.quantization;
  info.n_params = header.parameters;
  info.size_bytes = header.file_size;
  info.n_ctx_train = hp.n_ctx_train;
  info.n_vocab = hp.n_vocab;
  info.n_embd = hp.n_embd;
  info.n_layer = hp.n_layer;
  info.n_head = hp.n_head;
  info.n_head_kv = hp.n_head_kv;
  info.n_ff = hp.n_ff;
  info.head_dim = hp.head_dim;
  info.n_swa = hp.n_swa;
  info.n_expert = hp.n_expert;
  info.n_expert_used = hp.n_expert_used;
  for (int l = 0; l < hp.n_layer; ++l) info.n_swa_layers += hp.layer_slides(l) ? 1 : 0;
  const auto tok = [&](const char* key) -> token_id {
    const auto v = m.get_uint(key, UINT64_MAX);
    return v == UINT64_MAX || v >= static_cast<uint64_t>(hp.n_vocab) ? -1
                                                                     : static_cast<token_id>(v);
  };
  info.bos = tok("tokenizer.ggml.bos_token_id");
  info.eos = tok("tokenizer.ggml.eos_token_id");
  info.chat_template = m.get_string("tokenizer.chat_template").value_or("");
  return info;
}

model_info read_model_info(const std::string& path) {
  const gguf::file file = open_file(path);
  return read_info(file, path);
}

std::vector<token_id> tokenize_file(const std::string& path, std::string_view text, bool add_bos,
                                    bool parse_special) {
  const vocab v = vocab::from_gguf(open_file(path));
  return v.tokenize(text, add_bos && v.add_bos_default(), parse_special);
}

uint64_t estimate_memory_bytes(const model_info& info, int n_ctx, int n_seq, backend_kind backend) {
  const auto u = [](int v) { return static_cast<uint64_t>(std::max(v, 0)); };
  const model_shape shape{.weight_bytes = info.size_bytes,
                          .n_layer = u(info.n_layer),
                          .n_embd = u(info.n_embd),
                          .n_head = u(info.n_head),
                          .n_head_kv = u(info.n_head_kv),
                          .n_ff = u(info.n_ff),
                          .n_vocab = u(info.n_vocab),
                          .head_dim = u(info.head_dim),
                          .n_swa = u(info.n_swa),
                          .n_swa_layers = u(info.n_swa_layers),
                          .bf16_weights = info.quantization == "BF16"};
  return estimate_memory(shape, n_ctx, n_seq, backend == backend_kind::cuda).total();
}

namespace {

void load_weights(model& m) {
  const hparams& hp = m.hp;
  const int64_t d = hp.n_embd, hd = hp.head_dim, nq = hp.n_head * hd, nkv = hp.n_head_kv * hd;
  const gguf::file& f = m.file;

  struct entry {
    weight* w;
    std::string name;
    std::vector<int64_t> shape;
    bool required;
    int layer;  // -1 outside the blocks
  };
  std::vector<entry> entries;
  entries.push_back({&m.tok_embd, "token_embd.weight", {d, hp.n_vocab}, true, -1});
  m.layers.resize(static_cast<size_t>(hp.n_layer));
  for (int i = 0; i < hp.n_layer; ++i) {
    layer_weights& l = m.layers[static_cast<size_t>(i)];
    const auto n = [i](const char* s) { return str("blk.", i, ".", s); };
    entries.push_back({&l.attn_norm, n("attn_norm.weight"), {d}, true, i});
    if (hp.architecture == "phi3" && f.find_tensor(n("attn_qkv.weight"))) {
      entries.push_back({&l.attn_qkv_fused, n("attn_qkv.weight"), {d, nq + 2 * nkv}, true, i});
    } else {
      entries.push_back({&l.wq, n("attn_q.weight"), {d, nq}, true, i});
      entries.push_back({&l.wk, n("attn_k.weight"), {d, nkv}, true, i});
      entries.push_back({&l.wv, n("attn_v.weight"), {d, nkv}, true, i});
    }
    if (hp.has_qkv_bias) {
      entries.push_back({&l.bq, n("attn_q.bias"), {nq}, true, i});
      entries.push_back({&l.bk, n("attn_k.bias"), {nkv}, true, i});
      entries.push_back({&l.bv, n("attn_v.bias"), {nkv}, true, i});
    }
    if (hp.has_qk_norm) {
      entries.push_back({&l.attn_q_norm, n("attn_q_norm.weight"), {hd}, true, i});
      entries.push_back({&l.attn_k_norm, n("attn_k_norm.weight"), {hd}, true, i});
    }
    entries.push_back({&l.wo, n("attn_output.weight"), {nq, d}, true, i});
    if (hp.has_post_norms)
      entries.push_back({&l.attn_post_norm, n("post_attention_norm.weight"), {d}, true, i});
    entries.push_back({&l.ffn_norm, n("ffn_norm.weight"), {d}, true, i});
    if (hp.n_expert > 0) {
      const int64_t ne = hp.n_expert;
      entries.push_back({&l.ffn_gate_inp, n("ffn_gate_inp.weight"), {d, ne}, true, i});
      entries.push_back({&l.ffn_gate_exps, n("ffn_gate_exps.weight"), {d, hp.n_ff, ne}, true, i});
      entries.push_back({&l.ffn_up_exps, n("ffn_up_exps.weight"), {d, hp.n_ff, ne}, true, i});
      entries.push_back({&l.ffn_down_exps, n("ffn_down_exps.weight"), {hp.n_ff, d, ne}, true, i});
      if (hp.n_ff_shared > 0) {
        const int64_t sh = hp.n_ff_shared;
        entries.push_back({&l.ffn_gate_inp_shexp, n("ffn_gate_inp_shexp.weight"), {d}, true, i});
        entries.push_back({&l.ffn_gate_shexp, n("ffn_gate_shexp.weight"), {d, sh}, true, i});
        entries.push_back({&l.ffn_up_shexp, n("ffn_up_shexp.weight"), {d, sh}, true, i});
        entries.push_back({&l.ffn_down_shexp, n("ffn_down_shexp.weight"), {sh, d}, true, i});
      }
    } else if (hp.architecture == "phi3") {
      entries.push_back({&l.ffn_gate_up_fused, n("ffn_up.weight"), {d, 2 * hp.n_ff}, true, i});
    } else {
      entries.push_back({&l.ffn_gate, n("ffn_gate.weight"), {d, hp.n_ff}, true, i});
      entries.push_back({&l.ffn_up, n("ffn_up.weight"), {d, hp.n_ff}, true, i});
    }
    if (hp.n_expert == 0)
      entries.push_back({&l.ffn_down, n("ffn_down.weight"), {hp.n_ff, d}, true, i});
    if (hp.has_post_norms)
      entries.push_back({&l.ffn_post_norm, n("post_ffw_norm.weight"), {d}, true, i});
  }
  entries.push_back({&m.output_norm, "output_norm.weight", {d}, true, -1});
  entries.push_back({&m.output, "output.weight", {d, hp.n_vocab}, false, -1});
  if (hp.architecture == "phi3") {
    entries.push_back({&m.rope_freqs, "rope_factors_short.weight", {hp.n_rot / 2}, false, -1});
    entries.push_back({&m.rope_freqs_long, "rope_factors_long.weight", {hp.n_rot / 2}, false, -1});
  } else {
    entries.push_back({&m.rope_freqs, "rope_freqs.weight", {hp.n_rot / 2}, false, -1});
  }

  for (auto& e : entries) {
    *e.w = get_weight(f, e.name, e.shape, e.required);
    // Norms, biases and rope factors are read as floats by the forward pass.
    if (e.shape.size() == 1 && *e.w && e.w->type != tensor_type::f32)
      throw engine_error(
          error_code::unsupported_tensor_type,
          str("tensor ", e.name, " has type ", to_string(e.w->type), ", expected f32"));
  }
  if (!m.output) m.output = m.tok_embd;  // tied embeddings
  // Row ranges of phi3's fused matrices (rows of any type are independent).
  const auto rows = [](const weight& w, int64_t first, int64_t n) {
    weight part = w;
    part.data = w.row(first);
    part.n_rows = n;
    return part;
  };
  for (auto& l : m.layers) {
    if (l.attn_qkv_fused) {
      l.wq = rows(l.attn_qkv_fused, 0, nq);
      l.wk = rows(l.attn_qkv_fused, nq, nkv);
      l.wv = rows(l.attn_qkv_fused, nq + nkv, nkv);
    }
    if (l.ffn_gate_up_fused) {
      l.ffn_gate = rows(l.ffn_gate_up_fused, 0, hp.n_ff);
      l.ffn_up = rows(l.ffn_gate_up_fused, hp.n_ff, hp.n_ff);
    }
    for (int e = 0; e < hp.n_expert; ++e) {
      l.expert_gate.push_back(rows(l.ffn_gate_exps, int64_t{e} * hp.n_ff, hp.n_ff));
      l.expert_up.push_back(rows(l.ffn_up_exps, int64_t{e} * hp.n_ff, hp.n_ff));
      l.expert_down.push_back(rows(l.ffn_down_exps, int64_t{e} * d, d));
    }
  }

  for (const auto& e : entries) m.weight_slots.push_back({e.w, e.layer});
}

}  // namespace

model_params model_default_params() {
  return {};
}

model_ptr open_model(const std::string& path, int n_threads) {
  model_ptr m(new model(open_file(path)));
  m->hp = read_hparams(m->file);
  m->info = read_info(m->file, path);
  m->n_threads = n_threads > 0 ? n_threads : physical_cores();
  load_weights(*m);
  m->vocab = std::make_unique<engine::vocab>(engine::vocab::from_gguf(m->file));
  // Converters may pad the embedding beyond the tokenizer, never the other way round.
  if (m->vocab->n_tokens() > m->hp.n_vocab)
    throw engine_error(error_code::file_corrupt,
                       str("tokenizer has ", m->vocab->n_tokens(),
                           " tokens but token_embd.weight has ", m->hp.n_vocab, " rows"));
  return m;
}

const float* rope_factors_for(const hparams& hp, const weight& rope_freqs,
                              const weight& rope_freqs_long, int n_ctx) {
  const weight& w = rope_freqs_long && n_ctx > hp.n_ctx_orig ? rope_freqs_long : rope_freqs;
  return reinterpret_cast<const float*>(w.data);
}

std::vector<double> rope_inverse_frequencies(const hparams& hp, const float* factors, int set) {
  const double base = hp.rope_of_set(set).freq_base;
  std::vector<double> inv_freq(static_cast<size_t>(hp.n_rot / 2));
  for (size_t j = 0; j < inv_freq.size(); ++j) {
    inv_freq[j] = std::pow(base, -2.0 * static_cast<double>(j) / hp.n_rot);
    if (factors && set == 0) inv_freq[j] /= factors[j];
  }
  return inv_freq;
}

void model_deleter::operator()(model* m) const {
  delete m;
}

const model_info& model_get_info(const model& m) {
  return m.info;
}

uint64_t model_device_bytes(const model& m) {
  return m.backend->device_bytes();
}

const std::vector<model_part>& model_get_parts(const model& m) {
  return m.parts;
}

}  // namespace rbee::engine
