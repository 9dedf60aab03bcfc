// `rbee-engine convert` reads a Hugging Face checkpoint back into the GGUF it came from: each
// synth model is written out as config.json + model.safetensors the way transformers saves
// it (Q/K rows in Hugging Face's order for llama, Gemma's norms without their + 1), and the
// conversion must give back the same tensors, bytes for bytes, and the same hyperparameters.
// The independent check against transformers itself is tests/engine/oracle (GPU machine).
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "engine/engine.h"
#include "engine/model.h"
#include "engine/quant.h"
#include "engine_tool/engine_tool.h"
#include "gguf/gguf.h"

namespace rbee::engine {
namespace {

namespace fs = std::filesystem;

fs::path temp_path(const std::string& name) {
  return fs::temp_directory_path() /
         ("rbee-convert-test-" + std::to_string(::getpid()) + "-" + name);
}

std::string synth_model(const std::string& arch) {
  const auto path = temp_path(arch + ".gguf");
  engine_tool::synth_options opts;
  opts.arch = arch;
  opts.output = path.string();
  opts.n_threads = 1;
  std::ostringstream log;
  engine_tool::synth(opts, log);
  return path.string();
}

// The Hugging Face name of a GGUF tensor (the converter's table, inverted by hand).
std::string hf_name(const std::string& gguf, bool gemma, bool phi3) {
  if (gguf == "token_embd.weight") return "model.embed_tokens.weight";
  if (gguf == "output_norm.weight") return "model.norm.weight";
  if (gguf == "output.weight") return "lm_head.weight";
  const auto dot = gguf.find('.', 4);
  const std::string layer = gguf.substr(4, dot - 4), rest = gguf.substr(dot + 1);
  const std::map<std::string, std::string> names{
      {"attn_norm.weight", "input_layernorm.weight"},
      {"attn_q.weight", "self_attn.q_proj.weight"},
      {"attn_k.weight", "self_attn.k_proj.weight"},
      {"attn_v.weight", "self_attn.v_proj.weight"},
      {"attn_q.bias", "self_attn.q_proj.bias"},
      {"attn_k.bias", "self_attn.k_proj.bias"},
      {"attn_v.bias", "self_attn.v_proj.bias"},
      {"attn_output.weight", "self_attn.o_proj.weight"},
      {"attn_q_norm.weight", "self_attn.q_norm.weight"},
      {"attn_k_norm.weight", "self_attn.k_norm.weight"},
      {"post_attention_norm.weight", "post_attention_layernorm.weight"},
      {"ffn_norm.weight",
       gemma ? "pre_feedforward_layernorm.weight" : "post_attention_layernorm.weight"},
      {"post_ffw_norm.weight", "post_feedforward_layernorm.weight"},
      {"ffn_gate.weight", "mlp.gate_proj.weight"},
      {"ffn_up.weight", phi3 ? "mlp.gate_up_proj.weight" : "mlp.up_proj.weight"},
      {"attn_qkv.weight", "self_attn.qkv_proj.weight"},
      {"ffn_gate_shexp.weight", "mlp.shared_expert.gate_proj.weight"},
      {"ffn_up_shexp.weight", "mlp.shared_expert.up_proj.weight"},
      {"ffn_down_shexp.weight", "mlp.shared_expert.down_proj.weight"},
      {"ffn_gate_inp_shexp.weight", "mlp.shared_expert_gate.weight"},
      {"ffn_down.weight", "mlp.down_proj.weight"},
  };
  return "model.layers." + layer + "." + names.at(rest);
}

// Expert e's transformers name of a stacked GGUF expert tensor (Mixtral's or Qwen3-MoE's).
std::string hf_expert_name(const std::string& gguf, int64_t e, bool mixtral) {
  const std::string layer = gguf.substr(4, gguf.find('.', 4) - 4);
  const std::string kind = gguf.substr(gguf.find('.', 4) + 1);
  const std::map<std::string, std::pair<std::string, std::string>> names{
      {"ffn_gate_exps.weight", {"w1", "gate_proj"}},
      {"ffn_up_exps.weight", {"w3", "up_proj"}},
      {"ffn_down_exps.weight", {"w2", "down_proj"}}};
  const auto& [mixtral_name, qwen_name] = names.at(kind);
  return "model.layers." + layer +
         (mixtral ? ".block_sparse_moe.experts." + std::to_string(e) + "." + mixtral_name
                  : ".mlp.experts." + std::to_string(e) + "." + qwen_name) +
         ".weight";
}

std::vector<float> values_of(const gguf::tensor_info& t) {
  const int64_t n_cols = t.shape[0], n_rows = t.n_elements() / n_cols;
  std::vector<float> v(static_cast<size_t>(t.n_elements()));
  const size_t row_bytes = row_size(t.type, n_cols);
  for (int64_t r = 0; r < n_rows; ++r)
    dequantize_row_reference(t.type, t.data + static_cast<size_t>(r) * row_bytes,
                             v.data() + r * n_cols, n_cols);
  return v;
}

// GGUF's llama Q/K rows (pairs side by side) in Hugging Face's order (halves).
std::vector<float> unpermute_rows(const std::vector<float>& w, int64_t n_head, int64_t n_cols) {
  const int64_t head_dim = static_cast<int64_t>(w.size()) / n_cols / n_head;
  std::vector<float> out(w.size());
  for (int64_t h = 0; h < n_head; ++h)
    for (int64_t i = 0; i < head_dim / 2; ++i)
      for (int64_t half = 0; half < 2; ++half)
        std::copy_n(w.begin() + (h * head_dim + 2 * i + half) * n_cols, n_cols,
                    out.begin() + (h * head_dim + half * (head_dim / 2) + i) * n_cols);
  return out;
}

// How a checkpoint holds the experts' matrices: one parameter per expert and matrix (the
// published Mixtral and Qwen MoE checkpoints), or transformers 5's one per layer, gate and up
// fused: mlp.experts.gate_up_proj (n_expert, 2 n_ff, n_embd) and down_proj (n_expert, n_embd,
// n_ff), with Mixtral's router under mlp.gate as well.
enum class expert_layout { per_expert, fused };

// Writes `src` as a transformers checkpoint (F32 safetensors) into `dir`.
void write_checkpoint(const gguf::file& src, const hparams& hp, const fs::path& dir,
                      expert_layout experts = expert_layout::per_expert) {
  const bool fused = experts == expert_layout::fused;
  const bool gemma = hp.architecture.starts_with("gemma"), phi3 = hp.architecture == "phi3";
  nlohmann::json header = nlohmann::json::object();
  nlohmann::json rope_scaling;
  std::string data;
  for (const auto& t : src.tensors()) {
    std::vector<float> v = values_of(t);
    // phi3's rotation factors live in config.json.
    if (t.name == "rope_factors_long.weight" || t.name == "rope_factors_short.weight") {
      rope_scaling[t.name == "rope_factors_long.weight" ? "long_factor" : "short_factor"] = v;
      continue;
    }
    if (gemma && t.name.ends_with("norm.weight"))
      for (float& x : v) x -= 1.0f;
    if (hp.architecture == "llama" && t.name.ends_with("attn_q.weight"))
      v = unpermute_rows(v, hp.n_head, t.shape[0]);
    if (hp.architecture == "llama" && t.name.ends_with("attn_k.weight"))
      v = unpermute_rows(v, hp.n_head_kv, t.shape[0]);
    const auto put = [&](const std::string& name, const float* values,
                         std::vector<int64_t> hf_shape) {
      size_t n = 1;
      for (const int64_t dim : hf_shape) n *= static_cast<size_t>(dim);
      const size_t begin = data.size();
      data.append(reinterpret_cast<const char*>(values), n * sizeof(float));
      header[name] = {
          {"dtype", "F32"}, {"shape", hf_shape}, {"data_offsets", {begin, data.size()}}};
    };
    const std::string layer = t.name.substr(4, t.name.find('.', 4) - 4);
    if (t.shape.size() == 3 && fused) {
      const int64_t n_cols = t.shape[0], n_rows = t.shape[1], n_expert = t.shape[2];
      if (t.name.ends_with("ffn_up_exps.weight")) continue;  // written with the gate's rows
      if (t.name.ends_with("ffn_down_exps.weight")) {
        put("model.layers." + layer + ".mlp.experts.down_proj", v.data(),
            {n_expert, n_rows, n_cols});
        continue;
      }
      const std::vector<float> up =
          values_of(*src.find_tensor("blk." + layer + ".ffn_up_exps.weight"));
      std::vector<float> gate_up;
      const int64_t per_expert = n_rows * n_cols;
      for (int64_t e = 0; e < n_expert; ++e) {
        gate_up.insert(gate_up.end(), v.begin() + e * per_expert, v.begin() + (e + 1) * per_expert);
        gate_up.insert(gate_up.end(), up.begin() + e * per_expert,
                       up.begin() + (e + 1) * per_expert);
      }
      put("model.layers." + layer + ".mlp.experts.gate_up_proj", gate_up.data(),
          {n_expert, 2 * n_rows, n_cols});
      continue;
    }
    if (t.shape.size() == 3) {  // stacked experts: one tensor per expert in transformers
      for (int64_t e = 0; e < t.shape[2]; ++e)
        put(hf_expert_name(t.name, e, hp.architecture == "llama"),
            v.data() + e * t.shape[0] * t.shape[1], {t.shape[1], t.shape[0]});
      continue;
    }
    if (t.name.ends_with("ffn_gate_inp.weight")) {
      put("model.layers." + layer +
              (hp.architecture == "llama" && !fused ? ".block_sparse_moe.gate.weight"
                                                    : ".mlp.gate.weight"),
          v.data(), {t.shape[1], t.shape[0]});
      continue;
    }
    std::vector<int64_t> hf_shape(t.shape.rbegin(), t.shape.rend());
    if (t.name.ends_with("ffn_gate_inp_shexp.weight")) hf_shape = {1, t.shape[0]};  // one row
    put(hf_name(t.name, gemma, phi3), v.data(), hf_shape);
  }
  const std::string text = header.dump();
  std::ofstream out(dir / "model.safetensors", std::ios::binary);
  uint64_t len = text.size();
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>(len >> (8 * i)));
  out << text << data;

  const std::map<std::string, std::string> model_types{
      {"qwen3moe", "qwen3_moe"},
      {"qwen2moe", "qwen2_moe"},
      {"llama", hp.n_expert > 0 ? "mixtral" : "llama"}};
  const auto type = model_types.find(hp.architecture);
  nlohmann::json config{{"model_type", type == model_types.end() ? hp.architecture : type->second},
                        {"hidden_size", hp.n_embd},
                        {"num_hidden_layers", hp.n_layer},
                        {"num_attention_heads", hp.n_head},
                        {"num_key_value_heads", hp.n_head_kv},
                        {"head_dim", hp.head_dim},
                        {"intermediate_size", hp.n_ff},
                        {"max_position_embeddings", hp.n_ctx_train},
                        {"rope_theta", hp.rope_freq_base},
                        {"rms_norm_eps", hp.rms_eps},
                        {"vocab_size", hp.n_vocab}};
  if (gemma) {
    config["sliding_window"] = hp.n_swa;
    config["query_pre_attn_scalar"] = hp.head_dim;
  }
  if (phi3) {
    rope_scaling["type"] = "longrope";
    config["rope_scaling"] = rope_scaling;
    config["original_max_position_embeddings"] = hp.n_ctx_orig;
  }
  if (hp.n_expert > 0) {
    config[hp.architecture == "llama" ? "num_local_experts" : "num_experts"] = hp.n_expert;
    config["num_experts_per_tok"] = hp.n_expert_used;
    if (hp.architecture != "llama") config["moe_intermediate_size"] = hp.n_ff;
    if (hp.n_ff_shared > 0) {
      config["shared_expert_intermediate_size"] = hp.n_ff_shared;
      config["norm_topk_prob"] = false;
    }
  }
  if (hp.architecture == "gemma2") {
    config["attn_logit_softcapping"] = hp.attn_softcap;
    config["final_logit_softcapping"] = hp.final_softcap;
  }
  std::ofstream(dir / "config.json") << config.dump(2);
}

// Converts the synth model of `arch`, written as a checkpoint with the experts in `experts`'
// layout, and checks that the conversion gives back its tensors and hyperparameters.
void expect_round_trip(const std::string& arch, expert_layout experts) {
  const std::string original = synth_model(arch);
  const auto src = gguf::file::open(original);
  const hparams hp = read_hparams(src);
  const fs::path dir = temp_path(arch + "-hf");
  fs::create_directories(dir);
  write_checkpoint(src, hp, dir, experts);

  engine_tool::convert_options opts;
  opts.input = dir.string();
  opts.output = temp_path(arch + "-converted.gguf").string();
  opts.type = "f16";
  opts.vocab_from = original;
  std::ostringstream log;
  ASSERT_EQ(engine_tool::convert(opts, log), 0) << log.str();

  const auto converted = gguf::file::open(opts.output);
  ASSERT_EQ(converted.tensors().size(), src.tensors().size());
  for (const auto& t : src.tensors()) {
    const gguf::tensor_info* c = converted.find_tensor(t.name);
    ASSERT_NE(c, nullptr) << t.name;
    EXPECT_EQ(c->type, t.type) << t.name;
    EXPECT_EQ(c->shape, t.shape) << t.name;
    EXPECT_EQ(std::memcmp(c->data, t.data, t.n_bytes), 0) << t.name;
  }
  const hparams back = read_hparams(converted);
  EXPECT_EQ(back.head_dim, hp.head_dim);
  EXPECT_EQ(back.n_swa, hp.n_swa);
  EXPECT_EQ(back.attn_softcap, hp.attn_softcap);
  EXPECT_EQ(back.final_softcap, hp.final_softcap);
  EXPECT_EQ(back.rope_freq_base, hp.rope_freq_base);
  EXPECT_EQ(back.rms_eps, hp.rms_eps);
  EXPECT_EQ(back.n_ctx_orig, hp.n_ctx_orig);
  EXPECT_EQ(back.rope_attn_factor, hp.rope_attn_factor);
  fs::remove_all(dir);
  fs::remove(opts.output);
  fs::remove(original);
}

class convert_round_trip : public testing::TestWithParam<std::string> {};

TEST_P(convert_round_trip, gives_back_the_synth_model) {
  expect_round_trip(GetParam(), expert_layout::per_expert);
}

INSTANTIATE_TEST_SUITE_P(synth_tiny, convert_round_trip,
                         testing::Values("llama", "qwen2", "qwen3", "gemma2", "gemma3", "phi3",
                                         "mixtral", "qwen2moe", "qwen3moe"));

class convert_fused_experts : public testing::TestWithParam<std::string> {};

// transformers 5 keeps a layer's experts in two 3-D parameters: convert splits gate_up_proj
// into ffn_gate_exps and ffn_up_exps and takes down_proj as ffn_down_exps.
TEST_P(convert_fused_experts, gives_back_the_synth_model) {
  expect_round_trip(GetParam(), expert_layout::fused);
}

INSTANTIATE_TEST_SUITE_P(synth_tiny, convert_fused_experts,
                         testing::Values("mixtral", "qwen2moe", "qwen3moe"));

// Newer transformers write the rotation as rope_parameters (per attention kind for gemma3).
TEST(convert, reads_rope_parameters_as_newer_transformers_write_them) {
  const std::string original = synth_model("gemma3");
  const auto src = gguf::file::open(original);
  const hparams hp = read_hparams(src);
  const fs::path dir = temp_path("rope-parameters-hf");
  fs::create_directories(dir);
  write_checkpoint(src, hp, dir);
  nlohmann::json config = nlohmann::json::parse(std::ifstream(dir / "config.json"));
  config.erase("rope_theta");
  config["rope_parameters"] = {
      {"full_attention", {{"rope_type", "linear"}, {"factor", 8.0}, {"rope_theta", 1e6}}},
      {"sliding_attention", {{"rope_type", "default"}, {"rope_theta", 10000.0}}}};
  std::ofstream(dir / "config.json") << config.dump();
  engine_tool::convert_options opts;
  opts.input = dir.string();
  opts.output = temp_path("rope-parameters.gguf").string();
  opts.vocab_from = original;
  std::ostringstream log;
  ASSERT_EQ(engine_tool::convert(opts, log), 0);
  const hparams back = read_hparams(gguf::file::open(opts.output));
  EXPECT_EQ(back.rope_freq_base, 1e6f);
  EXPECT_EQ(back.rope_freq_scale, 1.0f / 8);
  EXPECT_EQ(back.rope_swa.freq_base, 10000.0f);
  fs::remove_all(dir);
  fs::remove(opts.output);
  fs::remove(original);
}

// A fused experts' parameter of another shape than transformers writes is a corrupt file.
TEST(convert, refuses_fused_experts_of_the_wrong_shape) {
  const fs::path dir = temp_path("bad-experts-hf");
  fs::create_directories(dir);
  const std::string vocab = synth_model("llama");
  std::ofstream(dir / "config.json")
      << nlohmann::json{{"model_type", "mixtral"}, {"hidden_size", 64},
                        {"num_hidden_layers", 1},  {"num_attention_heads", 4},
                        {"intermediate_size", 96}, {"rms_norm_eps", 1e-5},
                        {"vocab_size", 512},       {"num_local_experts", 4},
                        {"num_experts_per_tok", 2}}
             .dump();
  const auto write_experts = [&](const std::vector<int64_t>& shape) {
    size_t n = 1;
    for (const int64_t d : shape) n *= static_cast<size_t>(d);
    const std::string header =
        nlohmann::json{{"model.layers.0.mlp.experts.gate_up_proj",
                        {{"dtype", "F32"}, {"shape", shape}, {"data_offsets", {0, 4 * n}}}}}
            .dump();
    std::ofstream out(dir / "model.safetensors", std::ios::binary);
    for (int i = 0; i < 8; ++i) out.put(static_cast<char>(header.size() >> (8 * i)));
    out << header << std::string(4 * n, '\0');
  };
  engine_tool::convert_options opts;
  opts.input = dir.string();
  opts.output = temp_path("bad-experts.gguf").string();
  opts.vocab_from = vocab;
  std::ostringstream log;
  for (const auto& shape : std::vector<std::vector<int64_t>>{{4, 191, 64}, {4, 192 * 64}}) {
    write_experts(shape);
    try {
      engine_tool::convert(opts, log);
      ADD_FAILURE() << "converted experts of shape " << shape.size() << "-D";
    } catch (const engine_error& e) {
      EXPECT_EQ(e.code, error_code::file_corrupt);
      EXPECT_NE(std::string(e.what()).find("gate_up_proj"), std::string::npos) << e.what();
    }
  }
  fs::remove_all(dir);
  fs::remove(vocab);
}

TEST(convert, refuses_what_the_engine_would_compute_differently) {
  const fs::path dir = temp_path("bad-hf");
  fs::create_directories(dir);
  const std::string vocab = synth_model("llama");
  engine_tool::convert_options opts;
  opts.input = dir.string();
  opts.output = temp_path("bad.gguf").string();
  opts.vocab_from = vocab;
  std::ostringstream log;
  const auto code_of = [&](const nlohmann::json& config) -> std::optional<error_code> {
    std::ofstream(dir / "config.json") << config.dump();
    try {
      engine_tool::convert(opts, log);
    } catch (const engine_error& e) {
      return e.code;
    }
    return std::nullopt;
  };
  nlohmann::json gemma{
      {"model_type", "gemma2"},   {"hidden_size", 256}, {"num_hidden_layers", 4},
      {"num_attention_heads", 4}, {"head_dim", 64},     {"intermediate_size", 512},
      {"rms_norm_eps", 1e-6},     {"vocab_size", 512},  {"query_pre_attn_scalar", 256}};
  EXPECT_EQ(code_of(gemma), error_code::unsupported_architecture);
  EXPECT_EQ(code_of({{"model_type", "mamba"}}), error_code::unsupported_architecture);
  gemma["query_pre_attn_scalar"] = 64;
  EXPECT_EQ(code_of(gemma), error_code::file_not_found);  // no *.safetensors
  fs::remove_all(dir);
  fs::remove(vocab);
}

}  // namespace
}  // namespace rbee::engine
