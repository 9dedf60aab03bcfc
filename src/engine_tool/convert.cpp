// `convert`: a Hugging Face checkpoint (config.json + *.safetensors) to a GGUF file with the
// metadata keys and tensor names llama.cpp's converter writes, for llama, qwen2, qwen3,
// gemma2 and gemma3. As llama.cpp does: llama's Q/K rows are reordered for its rotation of
// adjacent pairs, and Gemma's norms (which multiply by 1 + w) are stored with the 1 added.
// The tokenizer is copied from another GGUF (--vocab-from): reading tokenizer.json is not
// part of this command.
#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <regex>

#include <fmt/format.h>
#include <fmt/ostream.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "engine/quant.h"
#include "engine_tool/engine_tool.h"
#include "gguf/gguf.h"

namespace rbee::engine_tool {

namespace {

using engine::engine_error;
using engine::error_code;
using engine::tensor_type;
using json = nlohmann::json;

[[noreturn]] void fail(error_code code, const std::string& message) {
  throw engine_error(code, message);
}

// One tensor of a safetensors file: dtype, shape (outermost first) and where its bytes are.
struct safetensor {
  std::string file;
  std::string dtype;  // F32, F16, BF16
  std::vector<int64_t> shape;
  uint64_t offset = 0;  // from the start of the file
  uint64_t n_bytes = 0;
};

// A safetensors header: 8 bytes of little-endian length, then that much JSON naming each
// tensor's dtype, shape and [begin, end) within the data that follows.
std::map<std::string, safetensor> read_safetensors_header(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(error_code::file_not_found, fmt::format("cannot read {}", path));
  uint8_t len_bytes[8];
  in.read(reinterpret_cast<char*>(len_bytes), 8);
  uint64_t len = 0;
  for (int i = 7; i >= 0; --i) len = len << 8 | len_bytes[i];
  const uint64_t file_size = std::filesystem::file_size(path);
  if (!in || len > file_size - 8 || len > (100u << 20))
    fail(error_code::file_corrupt, fmt::format("{}: not a safetensors file", path));
  std::string text(len, '\0');
  in.read(text.data(), static_cast<std::streamsize>(len));
  json header;
  try {
    header = json::parse(text);
  } catch (const json::exception& e) {
    fail(error_code::file_corrupt, fmt::format("{}: bad safetensors header: {}", path, e.what()));
  }
  std::map<std::string, safetensor> out;
  for (const auto& [name, v] : header.items()) {
    if (name == "__metadata__") continue;
    try {
      safetensor t;
      t.file = path;
      t.dtype = v.at("dtype").get<std::string>();
      t.shape = v.at("shape").get<std::vector<int64_t>>();
      if (std::any_of(t.shape.begin(), t.shape.end(), [](int64_t d) { return d < 0; }))
        fail(error_code::file_corrupt,
             fmt::format("{}: tensor {} has a negative size", path, name));
      const auto begin = v.at("data_offsets").at(0).get<uint64_t>();
      const auto end = v.at("data_offsets").at(1).get<uint64_t>();
      t.offset = 8 + len + begin;
      t.n_bytes = end - begin;
      if (end < begin || t.offset + t.n_bytes > file_size)
        fail(error_code::file_corrupt,
             fmt::format("{}: tensor {} lies outside the file", path, name));
      out.emplace(name, std::move(t));
    } catch (const json::exception& e) {
      fail(error_code::file_corrupt, fmt::format("{}: tensor {}: {}", path, name, e.what()));
    }
  }
  return out;
}

int64_t n_elements(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// `count` values of the tensor from element `first` on (outermost dimension first) as floats.
std::vector<float> read_elements(const safetensor& t, int64_t first, int64_t count) {
  const size_t element = t.dtype == "F32" ? 4 : 2;
  const int64_t n = n_elements(t.shape);
  if (t.n_bytes != static_cast<uint64_t>(n) * element)
    fail(error_code::file_corrupt,
         fmt::format("{}: a tensor's size does not match its shape", t.file));
  assert(first >= 0 && count >= 0 && first + count <= n);
  std::vector<uint8_t> raw(static_cast<size_t>(count) * element);
  std::ifstream in(t.file, std::ios::binary);
  in.seekg(static_cast<std::streamoff>(t.offset + static_cast<uint64_t>(first) * element));
  in.read(reinterpret_cast<char*>(raw.data()), static_cast<std::streamsize>(raw.size()));
  if (!in) fail(error_code::file_corrupt, fmt::format("{}: truncated tensor data", t.file));
  std::vector<float> v(static_cast<size_t>(count));
  for (size_t i = 0; i < v.size(); ++i) {
    if (t.dtype == "F32") {
      std::memcpy(&v[i], raw.data() + 4 * i, 4);
    } else {
      uint16_t h;
      std::memcpy(&h, raw.data() + 2 * i, 2);
      v[i] = t.dtype == "F16" ? engine::fp16_to_fp32(h) : engine::bf16_to_fp32(h);
    }
  }
  return v;
}

// The tensor's values as floats, outermost dimension first.
std::vector<float> read_values(const safetensor& t) {
  return read_elements(t, 0, n_elements(t.shape));
}

// What the converter needs to know of a family.
struct family_rules {
  std::string arch;
  bool permute_qk;       // llama: rows of Q and K reordered for the rotation of adjacent pairs
  bool norm_plus_one;    // gemma: norm weights stored as 1 + w
  bool gemma_ffn_norms;  // gemma: pre/post feed-forward norms around the FFN
};

std::optional<family_rules> rules_of(const std::string& model_type) {
  if (model_type == "llama" || model_type == "mistral" || model_type == "mixtral")
    return family_rules{"llama", true, false, false};
  if (model_type == "qwen3_moe") return family_rules{"qwen3moe", false, false, false};
  if (model_type == "qwen2_moe") return family_rules{"qwen2moe", false, false, false};
  if (model_type == "qwen2") return family_rules{"qwen2", false, false, false};
  if (model_type == "phi3") return family_rules{"phi3", false, false, false};
  if (model_type == "qwen3") return family_rules{"qwen3", false, false, false};
  if (model_type == "gemma2") return family_rules{"gemma2", false, true, true};
  if (model_type == "gemma3_text" || model_type == "gemma3")
    return family_rules{"gemma3", false, true, true};
  return std::nullopt;
}

// The GGUF name of a Hugging Face tensor name, or "" for tensors the GGUF does not keep.
std::string gguf_name(const std::string& hf, const family_rules& r) {
  static const std::regex layer_re(R"(model\.layers\.(\d+)\.(.+))");
  if (hf == "model.embed_tokens.weight") return "token_embd.weight";
  if (hf == "model.norm.weight") return "output_norm.weight";
  if (hf == "lm_head.weight") return "output.weight";
  std::smatch m;
  if (!std::regex_match(hf, m, layer_re)) return "";
  const std::string blk = "blk." + m[1].str() + ".";
  static const std::map<std::string, std::string> common{
      {"input_layernorm.weight", "attn_norm.weight"},
      {"self_attn.q_proj.weight", "attn_q.weight"},
      {"self_attn.k_proj.weight", "attn_k.weight"},
      {"self_attn.v_proj.weight", "attn_v.weight"},
      {"self_attn.q_proj.bias", "attn_q.bias"},
      {"self_attn.k_proj.bias", "attn_k.bias"},
      {"self_attn.v_proj.bias", "attn_v.bias"},
      {"self_attn.o_proj.weight", "attn_output.weight"},
      {"self_attn.q_norm.weight", "attn_q_norm.weight"},
      {"self_attn.k_norm.weight", "attn_k_norm.weight"},
      {"mlp.gate_proj.weight", "ffn_gate.weight"},
      {"mlp.up_proj.weight", "ffn_up.weight"},
      {"mlp.down_proj.weight", "ffn_down.weight"},
      {"self_attn.qkv_proj.weight", "attn_qkv.weight"},         // phi3: q|k|v rows
      {"mlp.gate_up_proj.weight", "ffn_up.weight"},             // phi3: gate|up rows
      {"block_sparse_moe.gate.weight", "ffn_gate_inp.weight"},  // mixtral's router
      {"mlp.gate.weight", "ffn_gate_inp.weight"},               // qwen2moe's, qwen3moe's router
      {"mlp.shared_expert.gate_proj.weight", "ffn_gate_shexp.weight"},  // qwen2moe
      {"mlp.shared_expert.up_proj.weight", "ffn_up_shexp.weight"},
      {"mlp.shared_expert.down_proj.weight", "ffn_down_shexp.weight"},
      {"mlp.shared_expert_gate.weight", "ffn_gate_inp_shexp.weight"},
  };
  static const std::map<std::string, std::string> llama_norms{
      {"post_attention_layernorm.weight", "ffn_norm.weight"}};
  static const std::map<std::string, std::string> gemma_norms{
      {"post_attention_layernorm.weight", "post_attention_norm.weight"},
      {"pre_feedforward_layernorm.weight", "ffn_norm.weight"},
      {"post_feedforward_layernorm.weight", "post_ffw_norm.weight"}};
  const std::string rest = m[2].str();
  if (auto it = common.find(rest); it != common.end()) return blk + it->second;
  const auto& norms = r.gemma_ffn_norms ? gemma_norms : llama_norms;
  if (auto it = norms.find(rest); it != norms.end()) return blk + it->second;
  return "";
}

// The experts' matrices of one kind and layer, which GGUF stacks into one tensor
// (ffn_gate_exps, ffn_up_exps, ffn_down_exps): expert e's matrix is n_rows rows of n_cols
// values from row first_row of its safetensors tensor.
struct expert_slice {
  const safetensor* tensor = nullptr;
  int64_t first_row = 0;
};
struct stacked_experts {
  int64_t n_rows = 0, n_cols = 0;
  std::vector<expert_slice> slices;  // by expert
};
using expert_stacks = std::map<std::string, stacked_experts>;  // by GGUF name

void set_slice(expert_stacks& stacks, const std::string& name, size_t expert, expert_slice slice,
               int64_t n_rows, int64_t n_cols) {
  // Far more experts than any model has: a corrupt name, not a size to allocate.
  constexpr size_t max_experts = 4096;
  if (expert >= max_experts)
    fail(error_code::file_corrupt, fmt::format("{}: expert index {} is too large", name, expert));
  stacked_experts& s = stacks[name];
  if (s.slices.empty()) {
    s.n_rows = n_rows;
    s.n_cols = n_cols;
  } else if (s.n_rows != n_rows || s.n_cols != n_cols) {
    fail(error_code::file_corrupt, fmt::format("{}: the experts differ in shape", name));
  }
  if (s.slices.size() <= expert) s.slices.resize(expert + 1);
  s.slices[expert] = slice;
}

// Adds `hf` to the stacks if it holds experts' matrices, in either layout transformers writes:
// one 2-D parameter per expert and matrix (model.layers.L.block_sparse_moe.experts.E.w1,
// ...mlp.experts.E.gate_proj), or, in transformers 5, one 3-D parameter per layer:
// mlp.experts.gate_up_proj (n_expert, 2 n_ff, n_embd), each expert's gate rows before its up
// rows, and mlp.experts.down_proj (n_expert, n_embd, n_ff).
bool collect_experts(const std::string& hf, const safetensor& t, expert_stacks& stacks) {
  static const std::regex mixtral(
      R"(model\.layers\.(\d+)\.block_sparse_moe\.experts\.(\d+)\.(w1|w2|w3)\.weight)");
  static const std::regex qwen(
      R"(model\.layers\.(\d+)\.mlp\.experts\.(\d+)\.(gate_proj|up_proj|down_proj)\.weight)");
  static const std::regex fused(R"(model\.layers\.(\d+)\.mlp\.experts\.(gate_up_proj|down_proj))");
  static const std::map<std::string, std::string> kinds{
      {"w1", "ffn_gate_exps"},        {"w3", "ffn_up_exps"},      {"w2", "ffn_down_exps"},
      {"gate_proj", "ffn_gate_exps"}, {"up_proj", "ffn_up_exps"}, {"down_proj", "ffn_down_exps"}};
  const auto stack_name = [](const std::string& layer, const std::string& kind) {
    return "blk." + layer + "." + kind + ".weight";
  };
  std::smatch m;
  if (std::regex_match(hf, m, mixtral) || std::regex_match(hf, m, qwen)) {
    if (t.shape.size() != 2)
      fail(error_code::file_corrupt, fmt::format("tensor {} is not 2-D", hf));
    set_slice(stacks, stack_name(m[1].str(), kinds.at(m[3].str())), std::stoul(m[2].str()), {&t, 0},
              t.shape[0], t.shape[1]);
    return true;
  }
  if (!std::regex_match(hf, m, fused)) return false;
  const bool gate_up = m[2].str() == "gate_up_proj";
  if (t.shape.size() != 3 || (gate_up && t.shape[1] % 2 != 0))
    fail(error_code::file_corrupt,
         fmt::format("tensor {} has shape [{}], expected {}", hf, fmt::join(t.shape, ", "),
                     gate_up ? "(n_expert, 2 n_ff, n_embd)" : "(n_expert, n_embd, n_ff)"));
  const int64_t n_expert = t.shape[0], n_rows = t.shape[1], n_cols = t.shape[2];
  for (int64_t e = 0; e < n_expert; ++e) {
    const auto expert = static_cast<size_t>(e);
    if (!gate_up) {
      set_slice(stacks, stack_name(m[1].str(), "ffn_down_exps"), expert, {&t, e * n_rows}, n_rows,
                n_cols);
    } else {
      const int64_t n_ff = n_rows / 2;
      set_slice(stacks, stack_name(m[1].str(), "ffn_gate_exps"), expert, {&t, e * n_rows}, n_ff,
                n_cols);
      set_slice(stacks, stack_name(m[1].str(), "ffn_up_exps"), expert, {&t, e * n_rows + n_ff},
                n_ff, n_cols);
    }
  }
  return true;
}

// Rows of a llama Q or K matrix (n_head heads of head_dim rows) from Hugging Face's order
// (each head's first half of pairs, then the second) to GGUF's (pairs side by side).
std::vector<float> permute_rows(const std::vector<float>& w, int64_t n_head, int64_t n_cols) {
  const int64_t n_rows = static_cast<int64_t>(w.size()) / n_cols, head_dim = n_rows / n_head;
  std::vector<float> out(w.size());
  for (int64_t h = 0; h < n_head; ++h)
    for (int64_t i = 0; i < head_dim / 2; ++i)
      for (int64_t half = 0; half < 2; ++half) {
        const int64_t src = h * head_dim + half * (head_dim / 2) + i;
        const int64_t dst = h * head_dim + 2 * i + half;
        std::copy_n(w.begin() + src * n_cols, n_cols, out.begin() + dst * n_cols);
      }
  return out;
}

// Newer transformers group the rotation's settings in rope_parameters (per attention kind
// for gemma3); the older keys (rope_theta, rope_scaling, rope_local_base_freq) are read below.
void flatten_rope_parameters(json& c) {
  if (!c.contains("rope_parameters") || !c.at("rope_parameters").is_object()) return;
  const json rp = c.at("rope_parameters");
  const json global = rp.contains("full_attention") ? rp.at("full_attention") : rp;
  if (global.contains("rope_theta")) c["rope_theta"] = global.at("rope_theta");
  if (global.value("rope_type", std::string("default")) != "default") c["rope_scaling"] = global;
  if (global.contains("original_max_position_embeddings") &&
      !c.contains("original_max_position_embeddings"))
    c["original_max_position_embeddings"] = global.at("original_max_position_embeddings");
  if (rp.contains("sliding_attention") && rp.at("sliding_attention").contains("rope_theta"))
    c["rope_local_base_freq"] = rp.at("sliding_attention").at("rope_theta");
}

// The text model's config: gemma3's multimodal checkpoints nest it in text_config.
json text_config(const json& config) {
  json text = config;
  if (config.contains("text_config") && config.at("text_config").is_object()) {
    text = config.at("text_config");
    if (!text.contains("model_type")) text["model_type"] = "gemma3_text";
  }
  flatten_rope_parameters(text);
  return text;
}

template <class T>
T config_value(const json& c, const std::string& key) {
  if (!c.contains(key) || c.at(key).is_null())
    fail(error_code::invalid_argument, fmt::format("config.json has no {}", key));
  try {
    return c.at(key).get<T>();
  } catch (const json::exception&) {
    fail(error_code::invalid_argument, fmt::format("config.json: {} has the wrong type", key));
  }
}

template <class T>
T config_value_or(const json& c, const std::string& key, T fallback) {
  return c.contains(key) && !c.at(key).is_null() ? config_value<T>(c, key) : fallback;
}

// Newer configs list each layer's attention; the engine (as llama.cpp) derives it from the
// family's pattern: layer l slides when l % pattern < pattern - 1.
void check_layer_types(const json& c, uint32_t n_layer, uint32_t pattern) {
  if (!c.contains("layer_types") || c.at("layer_types").is_null()) return;
  const auto types = config_value<std::vector<std::string>>(c, "layer_types");
  for (uint32_t l = 0; l < std::min<size_t>(n_layer, types.size()); ++l) {
    const bool slides = l % pattern < pattern - 1;
    if (types[l] != (slides ? "sliding_attention" : "full_attention"))
      fail(error_code::unsupported_architecture,
           fmt::format("config.json: layer_types[{}] = '{}' differs from the family's pattern "
                       "(every {}th layer global)",
                       l, types[l], pattern));
  }
}

// The hyperparameters as llama.cpp's converter writes them; refuses what the engine would
// compute differently from the checkpoint.
void write_hyperparameters(gguf::writer& w, const json& c, const family_rules& r) {
  const auto key = [&](std::string_view suffix) { return fmt::format("{}.{}", r.arch, suffix); };
  const auto n_embd = config_value<uint32_t>(c, "hidden_size");
  const auto n_layer = config_value<uint32_t>(c, "num_hidden_layers");
  const auto n_head = config_value<uint32_t>(c, "num_attention_heads");
  if (n_head == 0) fail(error_code::invalid_argument, "config.json: num_attention_heads is 0");
  const auto head_dim = config_value_or<uint32_t>(c, "head_dim", n_embd / n_head);
  w.set_uint32(key("context_length"),
               config_value_or<uint32_t>(c, "max_position_embeddings", 2048));
  w.set_uint32(key("embedding_length"), n_embd);
  w.set_uint32(key("block_count"), n_layer);
  w.set_uint32(key("feed_forward_length"), config_value<uint32_t>(c, "intermediate_size"));
  w.set_uint32(key("attention.head_count"), n_head);
  w.set_uint32(key("attention.head_count_kv"),
               config_value_or<uint32_t>(c, "num_key_value_heads", n_head));
  w.set_uint32(key("attention.key_length"), head_dim);
  w.set_uint32(key("attention.value_length"), head_dim);
  // Phi-4-mini rotates only part of each head.
  const auto rotated = static_cast<uint32_t>(
      static_cast<double>(head_dim) * config_value_or<double>(c, "partial_rotary_factor", 1.0));
  w.set_uint32(key("rope.dimension_count"), rotated);
  w.set_float32(key("rope.freq_base"), config_value_or<float>(c, "rope_theta", 10000.0f));
  w.set_float32(key("attention.layer_norm_rms_epsilon"), config_value<float>(c, "rms_norm_eps"));
  w.set_uint32(key("vocab_size"), config_value<uint32_t>(c, "vocab_size"));
  if (c.contains("rope_scaling") && c.at("rope_scaling").is_object()) {
    const json& s = c.at("rope_scaling");
    const std::string type = s.value("rope_type", s.value("type", std::string("none")));
    if (r.arch == "phi3" && (type == "longrope" || type == "su")) {
      // The factors are tensors (write_longrope).
    } else if (type == "linear") {
      w.set_string(key("rope.scaling.type"), "linear");
      w.set_float32(key("rope.scaling.factor"), config_value<float>(s, "factor"));
    } else if (type != "default") {
      fail(error_code::unsupported_architecture,
           fmt::format("config.json: rope_scaling type '{}' is not supported (linear)", type));
    }
  }
  if (r.arch == "gemma2" || r.arch == "gemma3") {
    // The engine scales queries as llama.cpp does: by the head size, or by n_embd / n_head
    // for the 27B models (told by their layer count).
    const uint32_t layers_of_27b = r.arch == "gemma2" ? 46 : 62;
    const uint32_t expected = n_layer == layers_of_27b ? n_embd / n_head : head_dim;
    const auto scalar = config_value_or<uint32_t>(c, "query_pre_attn_scalar", expected);
    if (scalar != expected)
      fail(error_code::unsupported_architecture,
           fmt::format("config.json: query_pre_attn_scalar {} is not supported (the engine uses {} "
                       "for this shape)",
                       scalar, expected));
    const auto window = config_value_or<uint32_t>(c, "sliding_window", 0);
    if (window > 0) w.set_uint32(key("attention.sliding_window"), window);
    check_layer_types(c, n_layer, r.arch == "gemma2" ? 2 : 6);
  }
  if (r.arch == "gemma2") {
    w.set_float32(key("attn_logit_softcapping"),
                  config_value_or<float>(c, "attn_logit_softcapping", 50.0f));
    w.set_float32(key("final_logit_softcapping"),
                  config_value_or<float>(c, "final_logit_softcapping", 30.0f));
  }
  if (r.arch == "gemma3") {
    const float cap = config_value_or<float>(c, "final_logit_softcapping", 0.0f);
    if (cap > 0) w.set_float32(key("final_logit_softcapping"), cap);
    if (config_value_or<float>(c, "attn_logit_softcapping", 0.0f) > 0)
      fail(error_code::unsupported_architecture,
           "config.json: gemma3 with attn_logit_softcapping is not supported");
    if (config_value_or<float>(c, "rope_local_base_freq", 10000.0f) != 10000.0f)
      fail(error_code::unsupported_architecture,
           "config.json: gemma3's rope_local_base_freq must be 10000 (llama.cpp's fixed value)");
  }
  const auto n_expert = config_value_or<uint32_t>(c, "num_local_experts",
                                                  config_value_or<uint32_t>(c, "num_experts", 0));
  if (n_expert > 0) {
    w.set_uint32(key("expert_count"), n_expert);
    w.set_uint32(key("expert_used_count"), config_value<uint32_t>(c, "num_experts_per_tok"));
  }
  if (r.arch == "qwen2moe") {
    w.set_uint32(key("expert_feed_forward_length"),
                 config_value<uint32_t>(c, "moe_intermediate_size"));
    w.set_uint32(key("expert_shared_feed_forward_length"),
                 config_value<uint32_t>(c, "shared_expert_intermediate_size"));
    if (config_value_or<bool>(c, "norm_topk_prob", false) ||
        config_value_or<uint32_t>(c, "decoder_sparse_step", 1) != 1 ||
        !config_value_or<std::vector<int>>(c, "mlp_only_layers", {}).empty())
      fail(error_code::unsupported_architecture,
           "config.json: qwen2moe is supported without norm_topk_prob, with decoder_sparse_step 1 "
           "and no mlp_only_layers");
  }
  if (r.arch == "qwen3moe") {
    w.set_uint32(key("expert_feed_forward_length"),
                 config_value<uint32_t>(c, "moe_intermediate_size"));
    if (!config_value_or<bool>(c, "norm_topk_prob", true) ||
        config_value_or<uint32_t>(c, "decoder_sparse_step", 1) != 1 ||
        !config_value_or<std::vector<int>>(c, "mlp_only_layers", {}).empty())
      fail(error_code::unsupported_architecture,
           "config.json: qwen3moe is supported with norm_topk_prob, decoder_sparse_step 1 and no "
           "mlp_only_layers");
  }
  if (r.arch == "qwen2" || r.arch == "qwen2moe" || r.arch == "qwen3" || r.arch == "qwen3moe") {
    if (config_value_or<bool>(c, "use_sliding_window", false))
      fail(error_code::unsupported_architecture,
           "config.json: use_sliding_window is not supported for qwen");
  }
}

// phi3's LongRoPE as llama.cpp's converter writes it: the original context, the factor of cos
// and sin (sqrt(1 + ln(scale) / ln(original)) for a context `scale` times the original) and the
// long and short factors as tensors.
void write_longrope(gguf::writer& w, const json& c) {
  if (!c.contains("rope_scaling") || !c.at("rope_scaling").is_object()) return;
  const json& s = c.at("rope_scaling");
  const auto n_embd = config_value<uint32_t>(c, "hidden_size");
  const auto n_head = config_value<uint32_t>(c, "num_attention_heads");
  const auto head_dim = config_value_or<uint32_t>(c, "head_dim", n_embd / n_head);
  const auto rotated = static_cast<size_t>(
      static_cast<double>(head_dim) * config_value_or<double>(c, "partial_rotary_factor", 1.0));
  const auto max_ctx = config_value<double>(c, "max_position_embeddings");
  const auto original = config_value<double>(c, "original_max_position_embeddings");
  if (!(original > 1 && max_ctx > 0))
    fail(error_code::invalid_argument,
         "config.json: max_position_embeddings and original_max_position_embeddings must be "
         "positive");
  const double scale = max_ctx / original;
  const double attn_factor =
      scale > 1.0 ? std::sqrt(1.0 + std::log(scale) / std::log(original)) : 1.0;
  w.set_uint32("phi3.rope.scaling.original_context_length", static_cast<uint32_t>(original));
  w.set_float32("phi3.rope.scaling.attn_factor", static_cast<float>(attn_factor));
  for (const char* which : {"long", "short"}) {
    const auto factors = config_value<std::vector<float>>(s, std::string(which) + "_factor");
    if (factors.size() != rotated / 2)
      fail(error_code::invalid_argument,
           fmt::format("config.json: rope_scaling.{}_factor has {} values, expected {}", which,
                       factors.size(), rotated / 2));
    w.add_tensor(
        fmt::format("rope_factors_{}.weight", which), tensor_type::f32,
        {static_cast<int64_t>(factors.size())},
        {reinterpret_cast<const uint8_t*>(factors.data()), factors.size() * sizeof(float)});
  }
}

// The experts' matrices of one kind and layer as one tensor {cols, rows, n_expert}.
void add_stacked_experts(gguf::writer& w, const std::string& name, const stacked_experts& s,
                         tensor_type type) {
  for (size_t e = 0; e < s.slices.size(); ++e) {
    const safetensor* t = s.slices[e].tensor;
    if (!t) fail(error_code::file_corrupt, fmt::format("{}: expert {} is missing", name, e));
    if (t->dtype != "F32" && t->dtype != "F16" && t->dtype != "BF16")
      fail(error_code::unsupported_tensor_type,
           fmt::format("{}: expert {} has dtype {} (F32, F16, BF16)", name, e, t->dtype));
  }
  std::vector<std::pair<safetensor, int64_t>> copies;  // each expert's tensor and first row
  for (const expert_slice& slice : s.slices) copies.emplace_back(*slice.tensor, slice.first_row);
  const int64_t n_rows = s.n_rows, n_cols = s.n_cols;
  w.add_tensor_lazy(
      name, type, {n_cols, n_rows, static_cast<int64_t>(copies.size())},
      [copies, n_rows, n_cols, type](std::span<uint8_t> out) {
        const size_t row_bytes = engine::row_size(type, n_cols);
        size_t offset = 0;
        for (const auto& [t, first_row] : copies) {
          const std::vector<float> v = read_elements(t, first_row * n_cols, n_rows * n_cols);
          for (int64_t row = 0; row < n_rows; ++row, offset += row_bytes)
            engine::quantize_row(type, v.data() + row * n_cols, out.data() + offset, n_cols);
        }
      });
}

std::vector<std::string> safetensors_files(const std::string& dir) {
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.path().extension() == ".safetensors") files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  if (files.empty()) fail(error_code::file_not_found, fmt::format("no *.safetensors in {}", dir));
  return files;
}

}  // namespace

int convert(const convert_options& opts, std::ostream& log) {
  if (opts.output.empty()) fail(error_code::invalid_argument, "convert needs -o OUT");
  if (opts.vocab_from.empty())
    fail(error_code::invalid_argument, "convert needs --vocab-from GGUF (the tokenizer to copy)");
  std::optional<tensor_type> out_type;
  if (opts.type == "f32") out_type = tensor_type::f32;
  if (opts.type == "f16") out_type = tensor_type::f16;
  if (opts.type == "bf16") out_type = tensor_type::bf16;
  if (!out_type)
    fail(error_code::invalid_argument,
         fmt::format("unknown type '{}' (f32, f16, bf16)", opts.type));
  const std::string config_path = opts.input + "/config.json";
  std::ifstream config_in(config_path);
  if (!config_in) fail(error_code::file_not_found, fmt::format("cannot read {}", config_path));
  json config;
  try {
    config = text_config(json::parse(config_in));
  } catch (const json::exception& e) {
    fail(error_code::invalid_argument, fmt::format("{}: {}", config_path, e.what()));
  }
  const auto model_type = config_value<std::string>(config, "model_type");
  const auto rules = rules_of(model_type);
  if (!rules)
    fail(error_code::unsupported_architecture,
         fmt::format("model_type '{}' is not supported (llama, mistral, mixtral, qwen2, qwen2_moe, "
                     "qwen3, qwen3_moe, gemma2, gemma3, phi3)",
                     model_type));

  gguf::writer w;
  w.set_string("general.architecture", rules->arch);
  w.set_string("general.name", std::filesystem::path(opts.input).filename().string());
  static const std::map<tensor_type, uint32_t> file_types{
      {tensor_type::f32, 0}, {tensor_type::f16, 1}, {tensor_type::bf16, 32}};
  w.set_uint32("general.file_type", file_types.at(*out_type));
  write_hyperparameters(w, config, *rules);
  if (rules->arch == "phi3") write_longrope(w, config);
  const auto vocab = gguf::file::open(opts.vocab_from);
  for (const auto& e : vocab.metadata())
    if (e.key.starts_with("tokenizer.")) w.set(e);

  std::map<std::string, safetensor> tensors;
  for (const auto& f : safetensors_files(opts.input))
    for (auto& [name, t] : read_safetensors_header(f)) {
      // gemma3's multimodal checkpoints keep the text model under language_model.
      std::string hf = name;
      if (hf.starts_with("language_model.")) hf = hf.substr(std::strlen("language_model."));
      tensors.insert_or_assign(hf, std::move(t));
    }
  const auto n_head = config_value<int64_t>(config, "num_attention_heads");
  const auto n_head_kv = config_value_or<int64_t>(config, "num_key_value_heads", n_head);
  int n_written = 0;
  expert_stacks experts;
  for (const auto& [hf, t] : tensors) {
    if (collect_experts(hf, t, experts)) continue;
    const std::string name = gguf_name(hf, *rules);
    if (name.empty()) {
      fmt::print(log, "skipping {}\n", hf);
      continue;
    }
    if (t.dtype != "F32" && t.dtype != "F16" && t.dtype != "BF16")
      fail(error_code::unsupported_tensor_type,
           fmt::format("tensor {} has dtype {} (F32, F16, BF16)", hf, t.dtype));
    if (t.shape.empty() || t.shape.size() > 2)
      fail(error_code::file_corrupt, fmt::format("tensor {} is not 1-D or 2-D", hf));
    // GGUF shapes list the contiguous dimension first; vectors stay f32 (the engine reads
    // norms and biases as floats).
    std::vector<int64_t> shape(t.shape.rbegin(), t.shape.rend());
    // qwen2moe's shared-expert gate is one row in transformers, a vector in GGUF.
    if (name.ends_with("ffn_gate_inp_shexp.weight")) shape = {n_elements(t.shape)};
    const tensor_type type = shape.size() == 1 ? tensor_type::f32 : *out_type;
    const bool is_norm = name.ends_with("norm.weight");
    const int64_t heads = name.ends_with("attn_q.weight") ? n_head : n_head_kv;
    const bool permute =
        rules->permute_qk && (name.ends_with("attn_q.weight") || name.ends_with("attn_k.weight"));
    const auto r = *rules;
    w.add_tensor_lazy(
        name, type, shape, [t, shape, type, is_norm, heads, permute, r](std::span<uint8_t> out) {
          std::vector<float> v = read_values(t);
          if (r.norm_plus_one && is_norm)
            for (float& x : v) x += 1.0f;
          if (permute) v = permute_rows(v, heads, shape[0]);
          const int64_t n_cols = shape[0], n_rows = n_elements(shape) / n_cols;
          const size_t row_bytes = engine::row_size(type, n_cols);
          for (int64_t row = 0; row < n_rows; ++row)
            engine::quantize_row(type, v.data() + row * n_cols,
                                 out.data() + static_cast<size_t>(row) * row_bytes, n_cols);
        });
    ++n_written;
  }
  for (const auto& [name, stack] : experts) {
    add_stacked_experts(w, name, stack, *out_type);
    ++n_written;
  }
  w.write(opts.output);
  fmt::print(log, "wrote {} ({}, {} tensors, {})\n", opts.output, rules->arch, n_written,
             opts.type);
  return 0;
}

}  // namespace rbee::engine_tool
