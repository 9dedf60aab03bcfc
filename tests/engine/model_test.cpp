// The fast forward pass against the reference oracle (support/reference.h), and determinism
// of generation with every shared model.
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include <gtest/gtest.h>

#include "engine/engine.h"
#include "gguf/gguf.h"
#include "support/reference.h"

namespace rbee::engine {
namespace {

const std::string models_dir = RBEE_SHARED_MODELS_DIR;

// One thread: these tests are about arithmetic; batch_test and golden_test cover threading.
model_ptr load(const std::string& path) {
  model_params mp = model_default_params();
  mp.n_threads = 1;
  return model_load(path, mp);
}

// ||a - b|| / ||b||
double relative_error(std::span<const float> a, std::span<const float> b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    den += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}

token_id argmax(std::span<const float> v) {
  return static_cast<token_id>(std::max_element(v.begin(), v.end()) - v.begin());
}

// The prompt as one batched prefill with logits at every position: the worst relative error
// against the oracle's token-by-token forward pass.
double prefill_error(context& ctx, reference::transformer& ref,
                     const std::vector<token_id>& prompt) {
  std::vector<batch_entry> batch;
  for (size_t i = 0; i < prompt.size(); ++i)
    batch.push_back({prompt[i], static_cast<int32_t>(i), 0, true});
  decode(ctx, batch);
  double worst = 0;
  for (size_t i = 0; i < prompt.size(); ++i)
    worst = std::max(worst, relative_error(logits(ctx, static_cast<int>(i)),
                                           ref.forward(prompt[i], static_cast<int>(i))));
  return worst;
}

struct oracle_case {
  std::string file;
  // Bound on the relative L2 error of the logits. F32/F16 weights: only summation order
  // differs. Quantized weights: the kernels also quantize activations to 8 bits (as ggml
  // does), which the fp32 oracle does not.
  double bound;
};

class fast_vs_reference : public testing::TestWithParam<oracle_case> {};

// Prompt as one batched prefill (logits at every position), then greedy decode steps: each
// position's logits must match the oracle's.
TEST_P(fast_vs_reference, logits_agree) {
  const auto& param = GetParam();
  const std::string path = models_dir + "/" + param.file;
  auto m = load(path);
  for (bool kv_f16 : {false, true}) {
    SCOPED_TRACE(kv_f16 ? "F16 KV cache" : "F32 KV cache");
    context_params cp = context_default_params();
    cp.n_ctx = 64;
    cp.kv_f16 = kv_f16;
    auto ctx = context_create(*m, cp);
    reference::transformer ref(path);
    const auto prompt = tokenize(*m, "Once upon a time, in a big forest", true);
    double worst = prefill_error(*ctx, ref, prompt);
    token_id next = argmax(logits(*ctx, static_cast<int>(prompt.size()) - 1));
    for (int step = 0; step < 4; ++step) {
      const int pos = static_cast<int>(prompt.size()) + step;
      const batch_entry e{next, pos, 0, true};
      decode(*ctx, std::span(&e, 1));
      worst = std::max(worst, relative_error(logits(*ctx, 0), ref.forward(next, pos)));
      next = argmax(logits(*ctx, 0));
    }
    RecordProperty(kv_f16 ? "worst_relative_error_f16_kv" : "worst_relative_error_f32_kv",
                   std::to_string(worst));
    std::printf("%s (%s KV): worst relative logit error %.2e\n", param.file.c_str(),
                kv_f16 ? "F16" : "F32", worst);
    EXPECT_LT(worst, param.bound);
  }
}

INSTANTIATE_TEST_SUITE_P(shared_models, fast_vs_reference,
                         testing::Values(oracle_case{"stories260K.gguf", 1e-3},
                                         oracle_case{"synth-tiny-f16.gguf", 1e-2},
                                         oracle_case{"synth-tiny-Q8_0.gguf", 3e-2},
                                         oracle_case{"synth-tiny-Q6_K.gguf", 3e-2},
                                         oracle_case{"synth-tiny-Q5_K_M.gguf", 3e-2},
                                         oracle_case{"synth-tiny-Q4_K_M.gguf", 3e-2},
                                         oracle_case{"synth-tiny-Q5_0.gguf", 3e-2},
                                         oracle_case{"synth-tiny-Q5_1.gguf", 3e-2},
                                         oracle_case{"synth-tiny-Q4_0.gguf", 3e-2},
                                         oracle_case{"synth-tiny-Q4_1.gguf", 3e-2}),
                         [](const auto& info) {
                           std::string name = info.param.file.substr(0, info.param.file.find('.'));
                           for (char& c : name)
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           return name;
                         });

std::vector<token_id> generate(model& m, const sampling_params& sp, int n) {
  const auto prompt = tokenize(m, "Once upon a time", true);
  context_params cp = context_default_params();
  cp.n_ctx = static_cast<int>(prompt.size()) + n;
  auto ctx = context_create(m, cp);
  std::vector<batch_entry> batch;
  for (size_t i = 0; i < prompt.size(); ++i)
    batch.push_back({prompt[i], static_cast<int32_t>(i), 0, i + 1 == prompt.size()});
  decode(*ctx, batch);
  sampler s(sp, model_get_info(m).n_vocab);
  std::vector<token_id> history = prompt, out;
  for (int i = 0; i < n; ++i) {
    const token_id t = s.sample(logits(*ctx, static_cast<int>(batch.size()) - 1), history);
    out.push_back(t);
    history.push_back(t);
    batch.assign(1, {t, static_cast<int32_t>(history.size() - 1), 0, true});
    if (i + 1 < n) decode(*ctx, batch);
  }
  return out;
}

class determinism : public testing::TestWithParam<std::string> {};

TEST_P(determinism, greedy_twice_gives_the_same_tokens) {
  auto m = load(models_dir + "/" + GetParam());
  sampling_params sp = sampling_default_params();
  sp.temperature = 0;
  const auto first = generate(*m, sp, 16);
  EXPECT_EQ(first.size(), 16u);
  EXPECT_EQ(generate(*m, sp, 16), first);
}

INSTANTIATE_TEST_SUITE_P(shared_models, determinism,
                         testing::Values("synth-tiny-Q8_0.gguf", "synth-tiny-Q6_K.gguf",
                                         "synth-tiny-Q5_K_M.gguf", "synth-tiny-Q4_K_M.gguf",
                                         "synth-tiny-Q5_0.gguf", "synth-tiny-Q5_1.gguf",
                                         "synth-tiny-Q4_0.gguf", "synth-tiny-Q4_1.gguf"),
                         [](const auto& info) {
                           std::string name = info.param.substr(11, info.param.find('.') - 11);
                           return name;
                         });

TEST(seeded_sampling, same_seed_repeats_and_another_seed_differs) {
  auto m = load(models_dir + "/stories260K.gguf");
  sampling_params sp = sampling_default_params();
  sp.temperature = 1.0f;
  sp.top_k = 0;
  sp.top_p = 1.0f;
  sp.min_p = 0.0f;
  sp.seed = 7;
  const auto a = generate(*m, sp, 32);
  EXPECT_EQ(generate(*m, sp, 32), a);
  sp.seed = 8;
  EXPECT_NE(generate(*m, sp, 32), a);
}

// ---- small hand-written models: qwen2, tied embeddings, rope scaling, broken files ----

// A 2-layer f32 model with the stories260K tokenizer (dim 64, 4 heads, 2 KV heads).
struct test_model {
  std::string architecture = "llama";
  bool tied = false;
  float rope_scale = 0;  // linear rope.scaling.factor, 0: none
  std::string drop;      // tensor to leave out
  std::string misshape;  // tensor to write with a wrong shape
};

std::string write_model(const test_model& t, const std::string& name) {
  const auto vocab_src = gguf::file::open(models_dir + "/stories260K.gguf");
  gguf::writer w;
  const std::string a = t.architecture;
  w.set_string("general.architecture", a);
  w.set_string("general.name", "test " + name);
  for (const auto& e : vocab_src.metadata())
    if (e.key.starts_with("tokenizer.")) w.set(e);
  const int64_t d = 64, ff = 128, n_vocab = 512, kv = 32;
  w.set_uint32(a + ".context_length", 256);
  w.set_uint32(a + ".embedding_length", d);
  w.set_uint32(a + ".block_count", 2);
  w.set_uint32(a + ".feed_forward_length", ff);
  w.set_uint32(a + ".attention.head_count", 4);
  w.set_uint32(a + ".attention.head_count_kv", 2);
  w.set_float32(a + ".attention.layer_norm_rms_epsilon", 1e-6f);
  w.set_float32(a + ".rope.freq_base", 1000000.0f);
  if (t.rope_scale > 0) {
    w.set_string(a + ".rope.scaling.type", "linear");
    w.set_float32(a + ".rope.scaling.factor", t.rope_scale);
  }
  std::mt19937 gen(7);
  std::normal_distribution<float> normal(0.0f, 0.1f);
  const auto add = [&](const std::string& n, std::vector<int64_t> shape, float mean) {
    if (n == t.drop) return;
    if (n == t.misshape) shape[0] *= 2;
    int64_t count = 1;
    for (int64_t x : shape) count *= x;
    std::vector<float> v(static_cast<size_t>(count));
    for (float& x : v) x = mean + normal(gen);
    w.add_tensor(n, tensor_type::f32, shape,
                 {reinterpret_cast<const uint8_t*>(v.data()), v.size() * sizeof(float)});
  };
  add("token_embd.weight", {d, n_vocab}, 0);
  for (int i = 0; i < 2; ++i) {
    const std::string b = "blk." + std::to_string(i) + ".";
    add(b + "attn_norm.weight", {d}, 1);
    add(b + "attn_q.weight", {d, d}, 0);
    add(b + "attn_k.weight", {d, kv}, 0);
    add(b + "attn_v.weight", {d, kv}, 0);
    if (a == "qwen2") {
      add(b + "attn_q.bias", {d}, 0);
      add(b + "attn_k.bias", {kv}, 0);
      add(b + "attn_v.bias", {kv}, 0);
    }
    add(b + "attn_output.weight", {d, d}, 0);
    add(b + "ffn_norm.weight", {d}, 1);
    add(b + "ffn_gate.weight", {d, ff}, 0);
    add(b + "ffn_up.weight", {d, ff}, 0);
    add(b + "ffn_down.weight", {ff, d}, 0);
  }
  add("output_norm.weight", {d}, 1);
  if (!t.tied) add("output.weight", {d, n_vocab}, 0);
  const auto path = std::filesystem::temp_directory_path() /
                    ("rbee-model-test-" + std::to_string(::getpid()) + "-" + name + ".gguf");
  w.write(path.string());
  return path.string();
}

test_model with_arch(const std::string& a) {
  test_model t;
  t.architecture = a;
  return t;
}
test_model qwen2_model() {
  return with_arch("qwen2");
}
test_model tied_scaled_model() {
  test_model t;
  t.tied = true;
  t.rope_scale = 4.0f;
  return t;
}
test_model without(const std::string& tensor) {
  test_model t;
  t.drop = tensor;
  return t;
}
test_model misshaped(const std::string& tensor) {
  test_model t;
  t.misshape = tensor;
  return t;
}

// Fast vs reference on a hand-written model, F32 KV cache: prefill + 3 decode steps.
double worst_error_vs_reference(const std::string& path) {
  auto m = load(path);
  reference::transformer ref(path);
  context_params cp = context_default_params();
  cp.n_ctx = 32;
  cp.kv_f16 = false;
  auto ctx = context_create(*m, cp);
  const auto prompt = tokenize(*m, "Once upon a time", true);
  double worst = prefill_error(*ctx, ref, prompt);
  for (int pos = static_cast<int>(prompt.size()); pos < static_cast<int>(prompt.size()) + 3;
       ++pos) {
    const batch_entry e{static_cast<token_id>(100 + pos), pos, 0, true};
    decode(*ctx, std::span(&e, 1));
    worst = std::max(worst, relative_error(logits(*ctx, 0), ref.forward(e.token, pos)));
  }
  return worst;
}

TEST(architectures, qwen2_biases_and_neox_rope_match_the_reference) {
  const auto path = write_model(qwen2_model(), "qwen2");
  EXPECT_LT(worst_error_vs_reference(path), 1e-4);
  EXPECT_EQ(model_get_info(*load(path)).architecture, "qwen2");
  std::filesystem::remove(path);
}

TEST(architectures, tied_embeddings_and_linear_rope_scaling_match_the_reference) {
  const auto path = write_model(tied_scaled_model(), "tied");
  EXPECT_LT(worst_error_vs_reference(path), 1e-4);
  std::filesystem::remove(path);
}

error_code load_error(const std::string& path) {
  try {
    load(path);
  } catch (const engine_error& e) {
    return e.code;
  }
  ADD_FAILURE() << "no error loading " << path;
  return error_code::invalid_argument;
}

std::string load_message(const std::string& path) {
  try {
    load(path);
  } catch (const engine_error& e) {
    return e.what();
  }
  return {};
}

TEST(load_errors, unknown_architecture_lists_the_supported_ones) {
  const auto path = write_model(with_arch("gpt2"), "gpt2");
  EXPECT_EQ(load_error(path), error_code::unsupported_architecture);
  EXPECT_NE(load_message(path).find("llama, qwen2"), std::string::npos) << load_message(path);
  std::filesystem::remove(path);
}

TEST(load_errors, missing_or_misshapen_tensor_is_named) {
  const auto missing = write_model(without("blk.1.ffn_up.weight"), "missing");
  EXPECT_EQ(load_error(missing), error_code::file_corrupt);
  EXPECT_NE(load_message(missing).find("blk.1.ffn_up.weight"), std::string::npos);
  const auto misshapen = write_model(misshaped("blk.0.attn_k.weight"), "misshapen");
  EXPECT_EQ(load_error(misshapen), error_code::file_corrupt);
  EXPECT_NE(load_message(misshapen).find("blk.0.attn_k.weight"), std::string::npos);
  std::filesystem::remove(missing);
  std::filesystem::remove(misshapen);
}

TEST(load_errors, missing_file_and_garbage) {
  EXPECT_EQ(load_error("/nonexistent/model.gguf"), error_code::file_not_found);
  const auto junk = std::filesystem::temp_directory_path() /
                    ("rbee-model-test-" + std::to_string(::getpid()) + "-junk.gguf");
  {
    std::ofstream out(junk);
    out << "GGUF but not really";
  }
  EXPECT_EQ(load_error(junk.string()), error_code::file_corrupt);
  std::filesystem::remove(junk);
}

TEST(model_info, header_facts) {
  const auto info = read_model_info(models_dir + "/stories260K.gguf");
  EXPECT_EQ(info.architecture, "llama");
  EXPECT_EQ(info.n_vocab, 512);
  EXPECT_EQ(info.n_embd, 64);
  EXPECT_EQ(info.n_layer, 5);
  EXPECT_EQ(info.n_head, 8);
  EXPECT_EQ(info.n_head_kv, 4);
  EXPECT_EQ(info.bos, 1);
  EXPECT_EQ(info.eos, 2);
  EXPECT_EQ(info.quantization, "F32");
  EXPECT_GT(info.n_params, 250000u);
  EXPECT_EQ(read_model_info(models_dir + "/synth-tiny-Q4_K_M.gguf").quantization, "Q4_K_M");
  EXPECT_EQ(read_model_info(models_dir + "/synth-tiny-Q8_0.gguf").quantization, "Q8_0");
  EXPECT_EQ(read_model_info(models_dir + "/synth-tiny-f16.gguf").quantization, "F16");
}

// The engine names a file's quantization as the hive does (gguf::summarize): without
// general.file_type the mix is unknown, so a file of mostly Q4_K tensors is "Q4_K".
TEST(model_info, quantization_without_a_file_type_is_the_tensor_type) {
  const auto original = gguf::file::open(models_dir + "/synth-tiny-Q4_K_M.gguf");
  gguf::writer w;
  for (const auto& e : original.metadata()) {
    if (e.key != "general.file_type") w.set(e);
  }
  for (const auto& t : original.tensors())
    w.add_tensor(t.name, t.type, t.shape, {t.data, t.n_bytes});
  const auto path = std::filesystem::temp_directory_path() /
                    ("rbee-model-test-" + std::to_string(::getpid()) + "-no-file-type.gguf");
  w.write(path.string());
  EXPECT_EQ(read_model_info(path.string()).quantization, "Q4_K");
  std::filesystem::remove(path);
}

TEST(model_info, memory_estimate_covers_weights_and_grows_with_the_cache) {
  const auto info = read_model_info(models_dir + "/synth-tiny-Q8_0.gguf");
  const uint64_t small = estimate_memory_bytes(info, 512, 1);
  EXPECT_GT(small, info.size_bytes);
  // KV cache: 2 (K,V) x 4 layers x 128 (kv dim) x 2 bytes per position and sequence.
  EXPECT_EQ(estimate_memory_bytes(info, 1024, 1) - small, 512ull * 2 * 4 * 128 * 2);
  EXPECT_GT(estimate_memory_bytes(info, 512, 4), small);
  // The GPU holds a batch's logits, a dequantized matrix for prefill and the CUDA runtime too.
  const uint64_t on_gpu = estimate_memory_bytes(info, 512, 1, backend_kind::cuda);
  EXPECT_GT(on_gpu, small);
  EXPECT_GT(on_gpu, info.size_bytes + (300ull << 20));
}

TEST(model_load, cpu_models_hold_no_device_memory) {
  auto m = load(models_dir + "/stories260K.gguf");
  auto ctx = context_create(*m, context_default_params());
  EXPECT_EQ(model_device_bytes(*m), 0u);
  EXPECT_EQ(context_device_bytes(*ctx), 0u);
}

TEST(model_load, progress_reaches_the_totals) {
  std::vector<load_progress> seen;
  model_params mp = model_default_params();
  mp.n_threads = 1;
  mp.on_progress = [&](const load_progress& p) { seen.push_back(p); };
  auto m = model_load(models_dir + "/synth-tiny-Q4_0.gguf", mp);
  ASSERT_FALSE(seen.empty());
  for (size_t i = 1; i < seen.size(); ++i) {
    EXPECT_GE(seen[i].bytes_loaded, seen[i - 1].bytes_loaded);
    EXPECT_GE(seen[i].layers_loaded, seen[i - 1].layers_loaded);
  }
  const auto& last = seen.back();
  EXPECT_EQ(last.tensors_loaded, last.tensors_total);
  EXPECT_EQ(last.layers_loaded, 4);
  EXPECT_EQ(last.layers_total, 4);
  EXPECT_EQ(last.bytes_loaded, last.bytes_total);
  EXPECT_GT(last.bytes_total, 1000000u);
}

// Without CUDA in the build, or without that device, the error lists what exists.
TEST(model_load, missing_cuda_device_is_refused_naming_what_exists) {
  model_params mp = model_default_params();
  mp.backend = backend_kind::cuda;
  mp.device = 99;
  try {
    model_load(models_dir + "/stories260K.gguf", mp);
    FAIL() << "no error";
  } catch (const engine_error& e) {
    EXPECT_EQ(e.code, error_code::backend_unavailable);
    EXPECT_NE(std::string(e.what()).find("cpu"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace rbee::engine
