// Whole-model CUDA forward passes against the CPU engine: stories260K greedy text and tokens,
// logits of the synthetic models of every tensor type (prefill through cuBLAS, decode
// through the packed kernels and graphs), multi-sequence batches against single sequences,
// and the backend's errors. Tests that need a GPU skip without one.
//
// RBEE_CUDA_BENCH=1 also runs llama-bench-style pp512/tg128 on synthetic 7B and TinyLlama
// shapes (random weights built in host memory, no files).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/engine.h"

#if RBEE_HAVE_CUDA
#include "engine/cuda/cuda_backend.h"
#include "engine/model.h"
#include "engine/quant.h"

namespace rbee::engine::cuda {
namespace {

#define RBEE_REQUIRE_GPU() \
  if (device_count() == 0) GTEST_SKIP() << "no CUDA device"

// The greedy choice from logits row `row`, made on the device.
token_id argmax_on_device(device_context& c, int row) {
  const sampling_step greedy{};
  token_id token = -1;
  sample(c, std::span(&row, 1), std::span(&greedy, 1), std::span(&token, 1));
  return token;
}

// The GPU machine gets copies of the few models it needs; the environment names them.
std::string models_dir() {
  const char* env = std::getenv("RBEE_SHARED_MODELS_DIR");
  return env && *env ? env : RBEE_SHARED_MODELS_DIR;
}

model_ptr load(const std::string& name) {
  model_params mp = model_default_params();
  mp.n_threads = 4;
  return model_load(models_dir() + "/" + name, mp);
}

token_id argmax(const float* v, int n) {
  return static_cast<token_id>(std::max_element(v, v + n) - v);
}

// Greedy decoding (BOS + prompt in one prefill, then one token per step) on the CPU engine
// or on the device; returns the new tokens.
std::vector<token_id> greedy_cpu(model& m, const std::vector<token_id>& prompt, int n_predict) {
  context_params cp = context_default_params();
  cp.n_ctx = static_cast<int>(prompt.size()) + n_predict;
  auto ctx = context_create(m, cp);
  std::vector<batch_entry> batch;
  for (size_t i = 0; i < prompt.size(); ++i)
    batch.push_back({prompt[i], static_cast<int32_t>(i), 0, i + 1 == prompt.size()});
  std::vector<token_id> out;
  int pos = static_cast<int>(prompt.size());
  for (int i = 0; i < n_predict; ++i) {
    decode(*ctx, batch);
    const auto l = logits(*ctx, static_cast<int>(batch.size()) - 1);
    const token_id next = argmax(l.data(), static_cast<int>(l.size()));
    if (token_is_end_of_generation(m, next)) break;
    out.push_back(next);
    batch.assign(1, {next, pos++, 0, true});
  }
  return out;
}

// decode, then the logits rows of the batch (n_vocab each, batch order) into `out`.
void decode_to(device_context& c, std::span<const batch_entry> batch, float* out) {
  decode(c, batch);
  const size_t nv = static_cast<size_t>(n_vocab(c));
  int row = 0;
  for (const batch_entry& e : batch)
    if (e.want_logits) {
      copy_logits(c, row, out + static_cast<size_t>(row) * nv);
      ++row;
    }
}

std::vector<token_id> greedy_cuda(const model& m, device_model& dm,
                                  const std::vector<token_id>& prompt, int n_predict, bool graphs) {
  context_params cp = context_default_params();
  cp.n_ctx = static_cast<int>(prompt.size()) + n_predict;
  auto ctx = create_context(dm, cp);
  set_use_graphs(*ctx, graphs);
  std::vector<batch_entry> batch;
  for (size_t i = 0; i < prompt.size(); ++i)
    batch.push_back({prompt[i], static_cast<int32_t>(i), 0, i + 1 == prompt.size()});
  std::vector<token_id> out;
  int pos = static_cast<int>(prompt.size());
  for (int i = 0; i < n_predict; ++i) {
    decode(*ctx, batch);
    const token_id next = argmax_on_device(*ctx, 0);
    if (token_is_end_of_generation(m, next)) break;
    out.push_back(next);
    batch.assign(1, {next, pos++, 0, true});
  }
  return out;
}

TEST(cuda_model, stories260k_greedy_text_matches_llama_cpp_and_cpu) {
  RBEE_REQUIRE_GPU();
  auto m = load("stories260K.gguf");
  auto dm = upload(*m, 0);
  std::ifstream in(models_dir() + "/golden-stories260K.json");
  ASSERT_TRUE(in) << "missing golden-stories260K.json in " << models_dir();
  const auto cases = nlohmann::json::parse(in)["cases"];
  ASSERT_GE(cases.size(), 3u);
  for (const auto& c : cases) {
    const std::string prompt = c["prompt"];
    const int n_predict = c["n_predict"].get<int>();
    const auto tokens = tokenize(*m, prompt, true);
    const auto gpu = greedy_cuda(*m, *dm, tokens, n_predict, true);
    EXPECT_EQ(gpu, greedy_cpu(*m, tokens, n_predict)) << "prompt: " << prompt;
    detokenizer detok(*m);
    std::string text;
    for (token_id t : gpu) text += detok.push(t);
    EXPECT_EQ(text + detok.flush(), c["continuation"].get<std::string>()) << "prompt: " << prompt;
  }
}

TEST(cuda_model, graphs_replay_the_same_logits_as_launches) {
  RBEE_REQUIRE_GPU();
  auto m = load("synth-tiny-Q4_K_M.gguf");
  auto dm = upload(*m, 0);
  const std::vector<token_id> prompt = {1, 403, 407, 261, 378};
  EXPECT_EQ(greedy_cuda(*m, *dm, prompt, 24, true), greedy_cuda(*m, *dm, prompt, 24, false));
}

// Largest |a - b| over the largest |b|.
double max_rel_error(const float* a, const float* b, size_t n) {
  double err = 0, mag = 0;
  for (size_t i = 0; i < n; ++i) {
    err = std::max(err, std::abs(static_cast<double>(a[i]) - b[i]));
    mag = std::max(mag, std::abs(static_cast<double>(b[i])));
  }
  return err / mag;
}

// Logits of a 12-token prefill (every row, the cuBLAS route) and of 6 single-token steps (the
// packed kernels) against the CPU engine; returns the worst relative error.
double compare_with_cpu(const std::string& name) {
  auto m = load(name);
  auto dm = upload(*m, 0);
  const int nv = model_get_info(*m).n_vocab;
  context_params cp = context_default_params();
  cp.n_ctx = 64;
  auto cpu = context_create(*m, cp);
  auto gpu = create_context(*dm, cp);
  std::vector<batch_entry> batch;
  const token_id prompt[] = {1, 403, 407, 261, 378, 10, 99, 300, 511, 42, 7, 256};
  for (int i = 0; i < 12; ++i) batch.push_back({prompt[i], i, 0, true});
  std::vector<float> l(static_cast<size_t>(12 * nv));
  double worst = 0;
  for (int step = 0; step < 7; ++step) {
    decode(*cpu, batch);
    decode_to(*gpu, batch, l.data());
    for (size_t i = 0; i < batch.size(); ++i)
      worst =
          std::max(worst, max_rel_error(l.data() + i * nv, logits(*cpu, static_cast<int>(i)).data(),
                                        static_cast<size_t>(nv)));
    const auto last = logits(*cpu, static_cast<int>(batch.size()) - 1);
    const token_id next = argmax(last.data(), nv);
    batch.assign(1, {next, 12 + step, 0, true});
  }
  std::printf("  %-24s max |logit error| / max |logit| = %.2e\n", name.c_str(), worst);
  return worst;
}

TEST(cuda_model, logits_match_cpu_for_every_tensor_type) {
  RBEE_REQUIRE_GPU();
  // fp32/fp16 weights differ from the CPU only in rounding (the f16 KV cache and fp16
  // prefill activations); integer types also in how activations are quantized (q8 blocks
  // with fp32 scales here, ggml's q8 types on the CPU).
  EXPECT_LT(compare_with_cpu("stories260K.gguf"), 1e-2);
  EXPECT_LT(compare_with_cpu("synth-tiny-f16.gguf"), 1e-2);
  for (const char* t : {"Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K_M", "Q5_K_M", "Q6_K"})
    EXPECT_LT(compare_with_cpu(std::string("synth-tiny-") + t + ".gguf"), 5e-2) << t;
}

// Three sequences prefilled separately, then decoded together in one batch, give the logits
// each gets alone; a mixed batch (one sequence's prefill with the others' steps) too.
TEST(cuda_model, multi_sequence_batches_equal_single_sequences) {
  RBEE_REQUIRE_GPU();
  auto m = load("synth-tiny-Q4_K_M.gguf");
  auto dm = upload(*m, 0);
  const int nv = model_get_info(*m).n_vocab;
  const std::vector<std::vector<token_id>> prompts = {
      {1, 403, 407, 261, 378}, {1, 20, 30, 40, 50, 60, 70, 80, 90}, {1, 5, 6}};
  context_params cp = context_default_params();
  cp.n_ctx = 32;
  cp.n_seq = 3;
  auto multi = create_context(*dm, cp);
  cp.n_seq = 1;
  std::vector<device_context_ptr> single;
  std::vector<float> l(static_cast<size_t>(16 * nv)), ls(static_cast<size_t>(nv));
  for (int s = 0; s < 3; ++s) {
    single.push_back(create_context(*dm, cp));
    std::vector<batch_entry> b, bs;
    for (size_t i = 0; i < prompts[s].size(); ++i) {
      b.push_back({prompts[s][i], static_cast<int32_t>(i), s, false});
      bs.push_back({prompts[s][i], static_cast<int32_t>(i), 0, false});
    }
    decode_to(*multi, b, l.data());
    decode_to(*single.back(), bs, ls.data());
  }
  std::vector<int> pos = {5, 9, 3};
  for (int step = 0; step < 4; ++step) {
    std::vector<batch_entry> b;
    for (int s = 0; s < 3; ++s)
      b.push_back({static_cast<token_id>(100 + 7 * step + s), pos[s], s, true});
    decode_to(*multi, b, l.data());
    for (int s = 0; s < 3; ++s) {
      const batch_entry e{b[s].token, pos[s]++, 0, true};
      decode_to(*single[static_cast<size_t>(s)], std::span(&e, 1), ls.data());
      EXPECT_LT(max_rel_error(l.data() + s * nv, ls.data(), static_cast<size_t>(nv)), 1e-4)
          << "sequence " << s << " step " << step;
    }
  }
  // Mixed: sequence 2 restarts with an 8-token prefill while 0 and 1 take a step (10 tokens:
  // the cuBLAS route, against the packed route alone: quantization-level differences). A
  // device context keeps no positions (the engine's context does): position 0 restarts.
  std::vector<batch_entry> mixed = {{11, pos[0], 0, true}, {12, pos[1], 1, true}};
  std::vector<batch_entry> alone2;
  for (int i = 0; i < 8; ++i) {
    mixed.push_back({static_cast<token_id>(200 + i), i, 2, i == 7});
    alone2.push_back({static_cast<token_id>(200 + i), i, 0, i == 7});
  }
  decode_to(*multi, mixed, l.data());
  for (int s = 0; s < 2; ++s) {
    const batch_entry e{mixed[static_cast<size_t>(s)].token, pos[s], 0, true};
    decode_to(*single[static_cast<size_t>(s)], std::span(&e, 1), ls.data());
    EXPECT_LT(max_rel_error(l.data() + s * nv, ls.data(), static_cast<size_t>(nv)), 5e-2) << s;
  }
  decode_to(*single[2], alone2, ls.data());
  EXPECT_LT(max_rel_error(l.data() + 2 * nv, ls.data(), static_cast<size_t>(nv)), 5e-2);
}

// Runs with or without a GPU: a device that does not exist is a clear error listing what does.
TEST(cuda_model, missing_device_lists_the_available_backends) {
  auto m = load("stories260K.gguf");
  try {
    upload(*m, device_count());
    FAIL() << "no error for a missing device";
  } catch (const engine_error& e) {
    EXPECT_EQ(e.code, error_code::backend_unavailable);
    EXPECT_NE(std::string(e.what()).find("Available: cpu"), std::string::npos) << e.what();
  }
  EXPECT_EQ(devices().size(), static_cast<size_t>(device_count()));
}

// ---- benchmark on synthetic shapes (RBEE_CUDA_BENCH=1) ----

struct shape {
  const char* name;
  int n_embd, n_layer, n_head, n_head_kv, n_ff, n_vocab;
};

uint64_t splitmix(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Random but valid blocks of `type` (small fp16 scales, random quants) — the speed of a
// product does not depend on the values.
struct host_weights {
  std::vector<std::vector<uint8_t>> buffers;
  uint64_t seed = 1;

  weight make(tensor_type t, int64_t cols, int64_t rows) {
    const size_t bytes = row_size(t, cols) * static_cast<size_t>(rows);
    auto& buf = buffers.emplace_back(bytes);
    for (size_t i = 0; i + 8 <= bytes; i += 8) {
      const uint64_t r = splitmix(seed);
      std::memcpy(buf.data() + i, &r, 8);
    }
    const auto tr = traits_of(t);
    const fp16_t scale = fp32_to_fp16(0.002f);
    if (t == tensor_type::f32) {
      for (size_t i = 0; i < bytes / 4; ++i) reinterpret_cast<float*>(buf.data())[i] = 1.0f;
    } else if (t == tensor_type::f16 || t == tensor_type::bf16) {
      auto* h = reinterpret_cast<uint16_t*>(buf.data());
      for (size_t i = 0; i < bytes / 2; ++i)
        h[i] = t == tensor_type::f16 ? fp32_to_fp16(((h[i] & 0xFFF) / 4096.0f - 0.5f) * 0.05f)
                                     : fp32_to_bf16(((h[i] & 0xFFF) / 4096.0f - 0.5f) * 0.05f);
    } else {
      const size_t scale_at = t == tensor_type::q6_k ? 208 : 0;
      const bool two = t == tensor_type::q4_1 || t == tensor_type::q5_1 || t == tensor_type::q4_k ||
                       t == tensor_type::q5_k;
      for (size_t b = 0; b + tr.type_size <= bytes; b += tr.type_size) {
        std::memcpy(buf.data() + b + scale_at, &scale, 2);
        if (two) std::memcpy(buf.data() + b + 2, &scale, 2);
        // Sub-block scales of the k-quants small too, so 32 random layers stay finite.
        if (t == tensor_type::q4_k || t == tensor_type::q5_k)
          std::memset(buf.data() + b + 4, 0x01, k_scale_size);
        if (t == tensor_type::q6_k) std::memset(buf.data() + b + 192, 0x01, qk_k / 16);
      }
    }
    return {t, buf.data(), cols, rows};
  }
};

model_weights synthetic(const shape& s, tensor_type main, tensor_type output, bool k_mix,
                        host_weights& hw) {
  model_weights w;
  w.hp.architecture = "llama";
  w.hp.n_vocab = s.n_vocab;
  w.hp.n_embd = s.n_embd;
  w.hp.n_layer = s.n_layer;
  w.hp.n_head = s.n_head;
  w.hp.n_head_kv = s.n_head_kv;
  w.hp.n_ff = s.n_ff;
  w.hp.head_dim = s.n_embd / s.n_head;
  w.hp.n_rot = w.hp.head_dim;
  const int64_t d = s.n_embd, kv = static_cast<int64_t>(s.n_head_kv) * w.hp.head_dim;
  w.tok_embd = hw.make(main, d, s.n_vocab);
  w.output_norm = hw.make(tensor_type::f32, d, 1);
  w.output = hw.make(output, d, s.n_vocab);
  for (int i = 0; i < s.n_layer; ++i) {
    // llama.cpp's Q4_K_M gives attn_v and ffn_down of the first and last eighth and of every
    // third layer between Q6_K.
    const int n = s.n_layer;
    const bool more = k_mix && (i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2);
    const tensor_type vt = more ? tensor_type::q6_k : main;
    layer_weights l;
    l.attn_norm = hw.make(tensor_type::f32, d, 1);
    l.wq = hw.make(main, d, d);
    l.wk = hw.make(main, d, kv);
    l.wv = hw.make(vt, d, kv);
    l.wo = hw.make(main, d, d);
    l.ffn_norm = hw.make(tensor_type::f32, d, 1);
    l.ffn_gate = hw.make(main, d, s.n_ff);
    l.ffn_up = hw.make(main, d, s.n_ff);
    l.ffn_down = hw.make(vt, s.n_ff, d);
    w.layers.push_back(l);
  }
  return w;
}

TEST(cuda_bench, synthetic_shapes_pp512_tg128) {
  RBEE_REQUIRE_GPU();
  // RBEE_CUDA_BENCH=1 runs every shape; another value only the runs whose "shape-type"
  // contains it (e.g. "7B-Q4_0").
  const char* filter = std::getenv("RBEE_CUDA_BENCH");
  if (!filter) GTEST_SKIP() << "set RBEE_CUDA_BENCH=1 to run";
  const shape llama7b{"7B", 4096, 32, 32, 32, 11008, 32000};
  const shape tinyllama{"TinyLlama", 2048, 22, 32, 4, 5632, 32000};
  struct run {
    shape s;
    const char* label;
    tensor_type main, output;
    bool k_mix;
  };
  const run runs[] = {
      {llama7b, "Q4_0", tensor_type::q4_0, tensor_type::q6_k, false},
      {llama7b, "Q4_K_M", tensor_type::q4_k, tensor_type::q6_k, true},
      {tinyllama, "Q4_0", tensor_type::q4_0, tensor_type::q6_k, false},
      {tinyllama, "F16", tensor_type::f16, tensor_type::f16, false},
      {tinyllama, "Q8_0", tensor_type::q8_0, tensor_type::q8_0, false},
  };
  const int n_prompt = 512, n_gen = 128;
  for (const auto& r : runs) {
    const std::string id = std::string(r.s.name) + "-" + r.label;
    if (std::string(filter) != "1" && id.find(filter) == std::string::npos) continue;
    host_weights hw;
    const auto w = synthetic(r.s, r.main, r.output, r.k_mix, hw);
    auto dm = upload(w, 0);
    hw.buffers.clear();
    context_params cp = context_default_params();
    cp.n_ctx = n_prompt + n_gen;
    cp.n_batch = n_prompt;
    auto ctx = create_context(*dm, cp);
    // For profilers that time kernels one by one.
    if (std::getenv("RBEE_CUDA_BENCH_NO_GRAPHS")) set_use_graphs(*ctx, false);
    std::vector<float> l(static_cast<size_t>(r.s.n_vocab));
    std::vector<batch_entry> prompt;
    for (int i = 0; i < n_prompt; ++i)
      prompt.push_back({(i * 7919) % r.s.n_vocab, i, 0, i == n_prompt - 1});
    using clock = std::chrono::steady_clock;
    // llama-bench's pp512 and tg128 each start from an empty cache; tg128 after the prompt
    // (depth 512) too.
    auto generate = [&](int start) {
      const auto t0 = clock::now();
      token_id token = 1;
      for (int i = 0; i < n_gen; ++i) {
        const batch_entry e{token, start + i, 0, true};
        decode(*ctx, std::span(&e, 1));
        token = argmax_on_device(*ctx, 0);
      }
      copy_logits(*ctx, 0, l.data());
      return n_gen / std::chrono::duration<double>(clock::now() - t0).count();
    };
    double pp_best = 0, tg_best = 0, tg_deep_best = 0;
    for (int rep = 0; rep < 3; ++rep) {
      const auto t0 = clock::now();
      decode_to(*ctx, prompt, l.data());
      pp_best =
          std::max(pp_best, n_prompt / std::chrono::duration<double>(clock::now() - t0).count());
      tg_deep_best = std::max(tg_deep_best, generate(n_prompt));
      tg_best = std::max(tg_best, generate(0));
    }
    for (float v : l) ASSERT_TRUE(std::isfinite(v)) << r.s.name << " " << r.label;
    std::printf("BENCH %-9s %-6s pp%d %9.0f tok/s   tg%d %7.1f tok/s   tg%d@%d %7.1f tok/s\n",
                r.s.name, r.label, n_prompt, pp_best, n_gen, tg_best, n_gen, n_prompt,
                tg_deep_best);
  }
}

}  // namespace
}  // namespace rbee::engine::cuda

#else
TEST(cuda_model, skipped_without_cuda) {
  GTEST_SKIP() << "built without the CUDA backend";
}
#endif
