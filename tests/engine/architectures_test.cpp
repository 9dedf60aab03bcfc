// The newer families (qwen3, gemma2, gemma3) on the CPU against the reference oracle, from
// `rbee-engine synth` models: per-head Q/K norms, GELU, post norms, soft caps, embedding
// scaling, sliding-window layers (their ring caches included) and gemma3's two rotations;
// plus what the header says of them (info, memory estimate).
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <sstream>

#include <gtest/gtest.h>

#include "engine/engine.h"
#include "engine/model.h"
#include "engine_tool/engine_tool.h"
#include "gguf/summary.h"
#include "support/reference.h"

namespace rbee::engine {
namespace {

// ||a - b|| / ||b||
double relative_error(std::span<const float> a, std::span<const float> b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    den += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}

// A tiny random model of `arch` (synth's "tiny" shape: sliding window 32), written once per
// (arch, type) into the temporary directory.
std::string synth_model(const std::string& arch, const std::string& type = "f16") {
  const auto path =
      std::filesystem::temp_directory_path() /
      ("rbee-arch-test-" + std::to_string(::getpid()) + "-" + arch + "-" + type + ".gguf");
  if (!std::filesystem::exists(path)) {
    engine_tool::synth_options opts;
    opts.arch = arch;
    opts.type = type;
    opts.output = path.string();
    opts.n_threads = 1;
    std::ostringstream log;
    engine_tool::synth(opts, log);
  }
  return path.string();
}

model_ptr load(const std::string& path) {
  model_params mp = model_default_params();
  mp.n_threads = 1;
  return model_load(path, mp);
}

// Removes this process's synth models when the tests end.
class synth_models_cleanup : public testing::Environment {
 public:
  void TearDown() override {
    const std::string mine = "rbee-arch-test-" + std::to_string(::getpid()) + "-";
    for (const auto& e :
         std::filesystem::directory_iterator(std::filesystem::temp_directory_path()))
      if (e.path().filename().string().starts_with(mine)) std::filesystem::remove(e.path());
  }
};
const auto* const cleanup = testing::AddGlobalTestEnvironment(new synth_models_cleanup);

// Tokens of a long prompt without a tokenizer: distinct, spread over the vocabulary.
token_id prompt_token(int i) {
  return static_cast<token_id>(3 + (i * 37) % 500);
}

// n_pos positions of one sequence in batches of `chunk` with logits everywhere: the worst
// relative error of the fast pass against the oracle's token-by-token forward pass.
double worst_error(const std::string& path, const context_params& cp, int n_pos, int chunk) {
  auto m = load(path);
  auto ctx = context_create(*m, cp);
  reference::transformer ref(path);
  double worst = 0;
  for (int start = 0; start < n_pos; start += chunk) {
    std::vector<batch_entry> batch;
    for (int p = start; p < std::min(n_pos, start + chunk); ++p)
      batch.push_back({prompt_token(p), p, 0, true});
    decode(*ctx, batch);
    for (size_t i = 0; i < batch.size(); ++i)
      worst = std::max(worst, relative_error(logits(*ctx, static_cast<int>(i)),
                                             ref.forward(batch[i].token, batch[i].pos)));
  }
  return worst;
}

class new_family : public testing::TestWithParam<std::string> {};

// 60 positions (past the window of 32): one prefill of 40, then single steps. The whole cache
// fits in n_ctx rows here (n_batch 512), so sliding layers mask rather than wrap.
TEST_P(new_family, prefill_and_decode_agree_with_the_reference) {
  for (bool kv_f16 : {false, true}) {
    SCOPED_TRACE(kv_f16 ? "F16 KV cache" : "F32 KV cache");
    context_params cp = context_default_params();
    cp.n_ctx = 64;
    cp.kv_f16 = kv_f16;
    auto m = load(synth_model(GetParam()));
    auto ctx = context_create(*m, cp);
    reference::transformer ref(synth_model(GetParam()));
    std::vector<batch_entry> batch;
    for (int p = 0; p < 40; ++p) batch.push_back({prompt_token(p), p, 0, true});
    decode(*ctx, batch);
    double worst = 0;
    for (int p = 0; p < 40; ++p)
      worst = std::max(worst, relative_error(logits(*ctx, p), ref.forward(prompt_token(p), p)));
    for (int p = 40; p < 60; ++p) {
      const batch_entry e{prompt_token(p), p, 0, true};
      decode(*ctx, std::span(&e, 1));
      worst = std::max(worst, relative_error(logits(*ctx, 0), ref.forward(e.token, p)));
    }
    std::printf("%s (%s KV): worst relative logit error %.2e\n", GetParam().c_str(),
                kv_f16 ? "F16" : "F32", worst);
    EXPECT_LT(worst, kv_f16 ? 1e-2 : 1e-3);
  }
}

// Batches of 8 keep 32 + 8 - 1 = 39 rows in each sliding layer's ring, fewer than the 64
// positions: the ring wraps and must still hold each query's window.
TEST_P(new_family, sliding_layers_wrap_their_ring_and_still_agree) {
  context_params cp = context_default_params();
  cp.n_ctx = 64;
  cp.n_batch = 8;
  cp.kv_f16 = false;
  EXPECT_LT(worst_error(synth_model(GetParam()), cp, 64, 8), 1e-3);
}

TEST_P(new_family, quantized_weights_agree_with_the_reference) {
  context_params cp = context_default_params();
  cp.n_ctx = 48;
  cp.kv_f16 = false;
  const double worst = worst_error(synth_model(GetParam(), "q8_0"), cp, 48, 16);
  std::printf("%s Q8_0: worst relative logit error %.2e\n", GetParam().c_str(), worst);
  // Activations are quantized to 8 bits before each product (as ggml does); gemma3 has 6 layers.
  EXPECT_LT(worst, 5e-2);
}

INSTANTIATE_TEST_SUITE_P(synth_tiny, new_family,
                         testing::Values("qwen3", "gemma2", "gemma3", "phi3", "mixtral", "qwen2moe",
                                         "qwen3moe"));

// A phi3 context longer than the original 512 positions rotates with the long factors; the
// oracle, told the context size, picks them too. Both differ from the short rotation.
TEST(phi3, contexts_beyond_the_original_use_the_long_factors) {
  const auto path = synth_model("phi3");
  auto m = load(path);
  context_params cp = context_default_params();
  cp.n_ctx = 600;
  cp.kv_f16 = false;
  auto ctx = context_create(*m, cp);
  reference::transformer long_ref(path, 600), short_ref(path, 64);
  std::vector<batch_entry> batch;
  for (int p = 0; p < 24; ++p) batch.push_back({prompt_token(p), p, 0, true});
  decode(*ctx, batch);
  double worst = 0, from_short = 0;
  for (int p = 0; p < 24; ++p) {
    worst = std::max(worst, relative_error(logits(*ctx, p), long_ref.forward(prompt_token(p), p)));
    from_short = std::max(from_short,
                          relative_error(logits(*ctx, p), short_ref.forward(prompt_token(p), p)));
  }
  EXPECT_LT(worst, 1e-3);
  EXPECT_GT(from_short, 1e-2);
}

// A copied sequence continues as the original would, rings included.
TEST(sliding_window, a_copied_sequence_continues_like_the_original) {
  const auto path = synth_model("gemma2");
  auto m = load(path);
  context_params cp = context_default_params();
  cp.n_ctx = 64;
  cp.n_seq = 2;
  cp.n_batch = 8;
  auto ctx = context_create(*m, cp);
  for (int start = 0; start < 48; start += 8) {
    std::vector<batch_entry> batch;
    for (int p = start; p < start + 8; ++p) batch.push_back({prompt_token(p), p, 0, false});
    decode(*ctx, batch);
  }
  sequence_copy(*ctx, 0, 1);
  const std::vector<batch_entry> both{{prompt_token(48), 48, 0, true},
                                      {prompt_token(48), 48, 1, true}};
  decode(*ctx, both);
  const auto a = logits(*ctx, 0), b = logits(*ctx, 1);
  EXPECT_TRUE(std::equal(a.begin(), a.end(), b.begin()));
}

TEST(hyperparameters, qwen3_has_wide_heads_with_norms_and_no_biases) {
  const auto file = gguf::file::open(synth_model("qwen3"));
  const hparams hp = read_hparams(file);
  EXPECT_EQ(hp.head_dim, 64);  // 2 * n_embd / n_head in synth's qwen3
  EXPECT_TRUE(hp.has_qk_norm);
  EXPECT_FALSE(hp.has_qkv_bias);
  EXPECT_EQ(hp.rope, rope_style::halves);
  EXPECT_EQ(hp.n_swa, 0);
}

TEST(hyperparameters, gemma2_slides_on_even_layers_with_soft_caps) {
  const auto file = gguf::file::open(synth_model("gemma2"));
  const hparams hp = read_hparams(file);
  EXPECT_EQ(hp.n_swa, 32);
  EXPECT_TRUE(hp.layer_slides(0));
  EXPECT_FALSE(hp.layer_slides(1));
  EXPECT_TRUE(hp.layer_slides(2));
  EXPECT_FLOAT_EQ(hp.attn_softcap, 50.0f);
  EXPECT_FLOAT_EQ(hp.final_softcap, 30.0f);
  EXPECT_FLOAT_EQ(hp.embd_scale, 16.0f);  // sqrt(256)
  EXPECT_EQ(hp.ffn_act, ffn_activation::gelu_tanh);
  EXPECT_EQ(hp.n_rope_sets(), 1);
}

TEST(hyperparameters, gemma3_has_one_global_layer_in_six_with_its_own_rotation) {
  const auto file = gguf::file::open(synth_model("gemma3"));
  const hparams hp = read_hparams(file);
  for (int l = 0; l < 5; ++l) EXPECT_TRUE(hp.layer_slides(l)) << l;
  EXPECT_FALSE(hp.layer_slides(5));
  EXPECT_EQ(hp.rope_set(0), 1);
  EXPECT_EQ(hp.rope_set(5), 0);
  EXPECT_FLOAT_EQ(hp.rope_of_set(0).freq_base, 1000000.0f);
  EXPECT_FLOAT_EQ(hp.rope_of_set(1).freq_base, 10000.0f);
  EXPECT_FLOAT_EQ(hp.attn_softcap, 0.0f);
  EXPECT_TRUE(hp.has_qk_norm);
}

// The cache of a sliding layer is window + batch - 1 rows: the estimate counts that, and the
// hive's header summary agrees with the engine on how many layers slide.
// Phi-4-mini rotates a part of each head: the attention factor scales only the rotated
// dimensions (cos and sin), not the whole score. The synth phi3 model, rewritten to rotate
// half of its 32 dimensions.
TEST(phi3, a_partly_rotated_head_scales_only_its_rotated_dimensions) {
  const auto full = gguf::file::open(synth_model("phi3"));
  gguf::writer w;
  for (const auto& e : full.metadata()) w.set(e);
  w.set_uint32("phi3.rope.dimension_count", 16);
  std::vector<std::vector<uint8_t>> kept;
  for (const auto& t : full.tensors()) {
    if (t.name.starts_with("rope_factors_")) {
      w.add_tensor(t.name, t.type, {8}, {t.data, 8 * sizeof(float)});
    } else {
      w.add_tensor(t.name, t.type, t.shape, {t.data, static_cast<size_t>(t.n_bytes)});
    }
  }
  const auto path = std::filesystem::temp_directory_path() /
                    ("rbee-arch-test-" + std::to_string(::getpid()) + "-phi3-partial.gguf");
  w.write(path.string());
  for (int n_ctx : {64, 600}) {
    SCOPED_TRACE(n_ctx);
    auto m = load(path.string());
    ASSERT_EQ(m->hp.n_rot, 16);
    context_params cp = context_default_params();
    cp.n_ctx = n_ctx;
    cp.kv_f16 = false;
    auto ctx = context_create(*m, cp);
    reference::transformer ref(path.string(), n_ctx);
    std::vector<batch_entry> batch;
    for (int p = 0; p < 24; ++p) batch.push_back({prompt_token(p), p, 0, true});
    decode(*ctx, batch);
    double worst = 0;
    for (int p = 0; p < 24; ++p)
      worst = std::max(worst, relative_error(logits(*ctx, p), ref.forward(prompt_token(p), p)));
    EXPECT_LT(worst, 1e-3);
  }
}

TEST(hyperparameters, phi3_reads_its_long_rope_and_splits_its_fused_matrices) {
  auto m = load(synth_model("phi3"));
  const hparams& hp = m->hp;
  EXPECT_EQ(hp.n_ctx_orig, 512);
  EXPECT_NEAR(hp.rope_attn_factor, std::sqrt(1.0 + std::log(4.0) / std::log(512.0)), 1e-6);
  EXPECT_EQ(hp.rope, rope_style::halves);
  const layer_weights& l = m->layers[0];
  EXPECT_EQ(l.wq.data, l.attn_qkv_fused.data);
  EXPECT_EQ(l.wk.data, l.attn_qkv_fused.row(hp.n_head * hp.head_dim));
  EXPECT_EQ(l.wv.n_rows, hp.n_head_kv * hp.head_dim);
  EXPECT_EQ(l.ffn_up.data, l.ffn_gate_up_fused.row(hp.n_ff));
  EXPECT_TRUE(m->rope_freqs);
  EXPECT_TRUE(m->rope_freqs_long);
}

TEST(hyperparameters, mixture_of_experts_splits_the_stacked_experts) {
  auto m = load(synth_model("qwen3moe"));
  const hparams& hp = m->hp;
  EXPECT_EQ(hp.n_expert, 8);
  EXPECT_EQ(hp.n_expert_used, 2);
  EXPECT_TRUE(hp.has_qk_norm);
  const layer_weights& l = m->layers[1];
  ASSERT_EQ(l.expert_down.size(), 8u);
  EXPECT_EQ(l.expert_gate[3].data, l.ffn_gate_exps.row(3 * hp.n_ff));
  EXPECT_EQ(l.expert_down[7].n_rows, hp.n_embd);
  EXPECT_EQ(l.expert_down[7].n_cols, hp.n_ff);
  EXPECT_FALSE(l.ffn_gate);
  const model_info info = model_get_info(*m);
  EXPECT_EQ(info.n_expert, 8);
  EXPECT_EQ(info.n_expert_used, 2);
  EXPECT_TRUE(hp.expert_weights_norm);
  // A llama file with experts (Mixtral) is the same shape of FFN.
  EXPECT_EQ(load(synth_model("mixtral"))->hp.n_expert, 8);
  // qwen2moe keeps the chosen probabilities as they are and adds a shared expert.
  auto qwen2moe = load(synth_model("qwen2moe"));
  EXPECT_FALSE(qwen2moe->hp.expert_weights_norm);
  EXPECT_EQ(qwen2moe->hp.n_ff_shared, 768);
  EXPECT_TRUE(qwen2moe->hp.has_qkv_bias);
  EXPECT_TRUE(qwen2moe->layers[0].ffn_gate_inp_shexp);
}

TEST(memory_estimate, sliding_layers_hold_a_window_of_cache) {
  const auto path = synth_model("gemma3");
  const model_info info = read_model_info(path);
  EXPECT_EQ(info.n_swa, 32);
  EXPECT_EQ(info.n_swa_layers, 5);
  EXPECT_EQ(info.head_dim, 64);
  const gguf::header_summary header = gguf::read_header_summary(path);
  EXPECT_EQ(header.sliding_window, 32u);
  EXPECT_EQ(header.sliding_layers, 5u);
  EXPECT_EQ(header.key_length, 64u);
  // Going from 4096 to 8192 positions grows only the global layer's cache: 4096 positions x
  // K and V x 4 KV heads x 64 x f16.
  const uint64_t kv_per_position = 2ull * 4 * 64 * 2;
  EXPECT_EQ(estimate_memory_bytes(info, 8192, 1) - estimate_memory_bytes(info, 4096, 1),
            4096 * kv_per_position);
}

TEST(memory_estimate, wide_heads_count_in_the_cache) {
  const model_info info = read_model_info(synth_model("qwen3"));
  // Every layer holds K and V of 4 KV heads of 64 per position.
  EXPECT_EQ(estimate_memory_bytes(info, 1024, 1) - estimate_memory_bytes(info, 512, 1),
            512ull * 4 * 2 * 4 * 64 * 2);
}

TEST(model_load, a_qwen3_file_without_its_q_norm_is_refused_by_name) {
  // gemma3 and qwen3 need attn_q_norm; a qwen3 file written as llama-shaped lacks it.
  const auto llama = gguf::file::open(synth_model("llama"));
  gguf::writer w;
  for (const auto& e : llama.metadata()) {
    if (e.key == "general.architecture") continue;
    gguf::metadata_entry copy = e;
    if (copy.key.starts_with("llama.")) copy.key = "qwen3." + copy.key.substr(6);
    w.set(copy);
  }
  w.set_string("general.architecture", "qwen3");
  for (const auto& t : llama.tensors())
    w.add_tensor(t.name, t.type, t.shape, {t.data, static_cast<size_t>(t.n_bytes)});
  const auto path = std::filesystem::temp_directory_path() /
                    ("rbee-arch-test-" + std::to_string(::getpid()) + "-no-qnorm.gguf");
  w.write(path.string());
  try {
    load(path.string());
    ADD_FAILURE() << "loaded a qwen3 file without attn_q_norm";
  } catch (const engine_error& e) {
    EXPECT_EQ(e.code, error_code::file_corrupt);
    EXPECT_NE(std::string(e.what()).find("attn_q_norm"), std::string::npos) << e.what();
  }
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace rbee::engine
