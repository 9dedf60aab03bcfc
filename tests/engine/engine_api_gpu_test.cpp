// The public API (engine.h) on the CUDA backend: model_load/context_create/decode dispatch
// to the device and give the CPU engine's results. Skips where no CUDA device exists.
#include <algorithm>
#include <cmath>
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "batched_sampling_case.h"
#include "engine/engine.h"
#include "engine/token_choice.h"
#if RBEE_HAVE_CUDA
#include "engine/cuda/cuda_backend.h"
#endif

namespace rbee::engine {
namespace {

std::string models_dir() {
  const char* env = std::getenv("RBEE_SHARED_MODELS_DIR");
  return env && *env ? env : RBEE_SHARED_MODELS_DIR;
}

// The model on device 0, or null (test skipped) when this build or machine has none.
model_ptr load_on_gpu(const std::string& file) {
  model_params mp = model_default_params();
  mp.backend = backend_kind::cuda;
  try {
    return model_load(models_dir() + "/" + file, mp);
  } catch (const engine_error& e) {
    if (e.code == error_code::backend_unavailable) return nullptr;
    throw;
  }
}

TEST(engine_api_on_cuda, golden_greedy_text) {
  auto m = load_on_gpu("stories260K.gguf");
  if (!m) GTEST_SKIP() << "no CUDA device";
  std::ifstream in(models_dir() + "/golden-stories260K.json");
  ASSERT_TRUE(in);
  const auto c = nlohmann::json::parse(in)["cases"].at(0);
  const auto prompt = tokenize(*m, c["prompt"].get<std::string>(), true);
  const int n_predict = c["n_predict"].get<int>();
  context_params cp = context_default_params();
  cp.n_ctx = static_cast<int>(prompt.size()) + n_predict;
  auto ctx = context_create(*m, cp);
  std::vector<batch_entry> batch;
  for (size_t i = 0; i < prompt.size(); ++i)
    batch.push_back({prompt[i], static_cast<int32_t>(i), 0, i + 1 == prompt.size()});
  sampling_params sp = sampling_default_params();
  sp.temperature = 0;
  sp.repeat_penalty = 1;
  sampler s(sp, model_get_info(*m).n_vocab);
  detokenizer detok(*m);
  std::vector<token_id> history = prompt;
  std::string text;
  for (int i = 0; i < n_predict; ++i) {
    decode(*ctx, batch);
    const token_id next = sample(*ctx, static_cast<int>(batch.size()) - 1, s, history);
    if (token_is_end_of_generation(*m, next)) break;
    text += detok.push(next);
    history.push_back(next);
    batch.assign(1, {next, static_cast<int32_t>(history.size() - 1), 0, true});
  }
  EXPECT_EQ(text + detok.flush(), c["continuation"].get<std::string>());
}

TEST(engine_api_on_cuda, two_sequences_match_the_cpu) {
  auto gpu = load_on_gpu("synth-tiny-Q8_0.gguf");
  if (!gpu) GTEST_SKIP() << "no CUDA device";
  auto cpu = model_load(models_dir() + "/synth-tiny-Q8_0.gguf", model_default_params());
  context_params cp = context_default_params();
  cp.n_ctx = 32;
  cp.n_seq = 2;
  auto gctx = context_create(*gpu, cp);
  auto cctx = context_create(*cpu, cp);
  const std::vector<batch_entry> batch{
      {1, 0, 0, false}, {50, 1, 0, true}, {1, 0, 1, false}, {60, 1, 1, false}, {70, 2, 1, true}};
  decode(*gctx, batch);
  decode(*cctx, batch);
  for (int i : {1, 4}) {
    const auto a = logits(*gctx, i), b = logits(*cctx, i);
    double num = 0, den = 0;
    for (size_t j = 0; j < b.size(); ++j) {
      num += (a[j] - b[j]) * (a[j] - b[j]);
      den += b[j] * b[j];
    }
    EXPECT_LT(std::sqrt(num / den), 3e-2) << "entry " << i;
  }
  sequence_clear(*gctx, 1);
  const batch_entry again{1, 0, 1, true};
  decode(*gctx, std::span(&again, 1));
  EXPECT_EQ(logits(*gctx, 0).size(), static_cast<size_t>(model_get_info(*gpu).n_vocab));
}

// The context checks batches once for every backend: on the device the errors are the CPU
// engine's. A context too large for the GPU is a clear out-of-memory error.
TEST(engine_api_on_cuda, context_errors_match_the_cpu_engine) {
  auto m = load_on_gpu("stories260K.gguf");
  if (!m) GTEST_SKIP() << "no CUDA device";
  context_params cp = context_default_params();
  cp.n_ctx = 4;
  auto ctx = context_create(*m, cp);
  const batch_entry over{1, 4, 0, true};
  try {
    decode(*ctx, std::span(&over, 1));
    FAIL() << "no error past the context";
  } catch (const engine_error& e) {
    EXPECT_EQ(e.code, error_code::context_overflow);
  }
  const batch_entry bad_token{100000, 0, 0, true};
  EXPECT_THROW(decode(*ctx, std::span(&bad_token, 1)), engine_error);
  // 2^30 positions: addressable by the pool, far beyond any device's memory.
  cp.n_ctx = 1 << 20;
  cp.n_seq = 1 << 10;
  try {
    context_create(*m, cp);
    FAIL() << "no error for an impossible context";
  } catch (const engine_error& e) {
    EXPECT_EQ(e.code, error_code::out_of_memory);
    EXPECT_NE(std::string(e.what()).find("VRAM required"), std::string::npos) << e.what();
  }
}

#if RBEE_HAVE_CUDA
// What the engine says it holds on the device is what the device lost: at least that much,
// and beyond it only the runtime's and cuBLAS's share.
TEST(engine_api_on_cuda, reports_the_device_memory_it_holds) {
  if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device";
  const uint64_t free_before = cuda::devices()[0].vram_free;
  auto m = load_on_gpu("synth-tiny-Q8_0.gguf");
  ASSERT_TRUE(m);
  context_params cp = context_default_params();
  cp.n_ctx = 1024;
  cp.n_seq = 4;
  auto ctx = context_create(*m, cp);
  const uint64_t free_after = cuda::devices()[0].vram_free;
  const uint64_t weights = model_device_bytes(*m), buffers = context_device_bytes(*ctx);
  EXPECT_GT(weights, model_get_info(*m).size_bytes / 2);
  EXPECT_LE(weights, model_get_info(*m).size_bytes);
  // The KV cache alone: 2 x 4 layers x 4 sequences x 1024 positions x 128 (kv dim) x 2 bytes.
  EXPECT_GE(buffers, 2ull * 4 * 4 * 1024 * 128 * 2);
  ASSERT_GT(free_before, free_after);
  EXPECT_GE(free_before - free_after, weights + buffers);
  EXPECT_LE(free_before - free_after, weights + buffers + (256ull << 20));
  // The hive's preflight estimate covers what loading took from the device.
  EXPECT_GE(estimate_memory_bytes(model_get_info(*m), cp.n_ctx, cp.n_seq, backend_kind::cuda),
            free_before - free_after);
}
#endif

// The prompt as one batch of sequence 0, logits for its last token only.
std::vector<batch_entry> prompt_batch(const std::vector<token_id>& prompt) {
  std::vector<batch_entry> batch;
  for (size_t i = 0; i < prompt.size(); ++i)
    batch.push_back({prompt[i], static_cast<int32_t>(i), 0, i + 1 == prompt.size()});
  return batch;
}

// engine::sample on the device makes the choices the CPU sampler makes from the same logits,
// through generation with penalties, truncations and seeded draws.
TEST(engine_api_on_cuda, device_sampling_matches_the_cpu_sampler) {
  auto m = load_on_gpu("synth-tiny-Q8_0.gguf");
  if (!m) GTEST_SKIP() << "no CUDA device";
  const int n_vocab = model_get_info(*m).n_vocab;
  context_params cp = context_default_params();
  cp.n_ctx = 96;
  auto ctx = context_create(*m, cp);
  sampling_params variants[3] = {sampling_default_params(), sampling_default_params(),
                                 sampling_default_params()};
  variants[0].seed = 7;  // the defaults: top-k 40, top-p 0.95, min-p 0.05, penalty 1.1
  variants[1].temperature = 1.3f;
  variants[1].top_k = 0;
  variants[1].min_p = 0.0f;
  variants[1].seed = 8;
  variants[2].temperature = 0.0f;
  variants[2].repeat_penalty = 1.5f;
  for (const sampling_params& sp : variants) {
    sampler on_device(sp, n_vocab), on_host(sp, n_vocab);
    sequence_clear(*ctx, 0);
    std::vector<token_id> history{1, 45, 300};
    std::vector<batch_entry> batch = prompt_batch(history);
    for (int step = 0; step < 64; ++step) {
      decode(*ctx, batch);
      const int last = static_cast<int>(batch.size()) - 1;
      const token_id want = on_host.sample(logits(*ctx, last), history);
      const token_id got = sample(*ctx, last, on_device, history);
      ASSERT_EQ(got, want) << "step " << step << " temperature " << sp.temperature;
      history.push_back(got);
      batch.assign(1, {got, static_cast<int32_t>(history.size() - 1), 0, true});
    }
  }
}

// A step's rows sampled together on the device (bringing tokens back in several copies when
// their penalties and masks do not fit one staging) make the CPU sampler's choices.
TEST(engine_api_on_cuda, batched_sampling_matches_the_cpu_sampler) {
  auto m = load_on_gpu("synth-tiny-Q8_0.gguf");
  if (!m) GTEST_SKIP() << "no CUDA device";
  expect_batched_choices_match_the_host(*m);
}

// OpenAI's penalties and logit_bias, and the log-probabilities: the device makes the CPU
// sampler's choices from the same logits and computes the CPU's log-softmax, through a
// generation whose penalties change every step.
TEST(engine_api_on_cuda, penalties_bias_and_logprobs_match_the_cpu) {
  auto m = load_on_gpu("synth-tiny-Q8_0.gguf");
  if (!m) GTEST_SKIP() << "no CUDA device";
  const int n_vocab = model_get_info(*m).n_vocab;
  context_params cp = context_default_params();
  cp.n_ctx = 96;
  auto ctx = context_create(*m, cp);
  sampling_params variants[3] = {sampling_default_params(), sampling_default_params(),
                                 sampling_default_params()};
  variants[0].temperature = 0.0f;
  variants[0].presence_penalty = 1.5f;
  variants[0].frequency_penalty = 0.5f;
  variants[0].logit_bias = {{3, -100.0f}, {17, 3.0f}};
  variants[1].seed = 11;
  variants[1].presence_penalty = -0.5f;
  variants[1].frequency_penalty = 1.0f;
  variants[1].repeat_penalty = 1.2f;
  variants[2].temperature = 1.2f;
  variants[2].top_k = 0;
  variants[2].seed = 12;
  variants[2].logit_bias = {{100, 5.0f}, {200, -100.0f}};
  sampling_candidates scratch;
  scratch.reserve(static_cast<size_t>(n_vocab));
  for (const sampling_params& sp : variants) {
    sampler on_device(sp, n_vocab), on_host(sp, n_vocab);
    sequence_clear(*ctx, 0);
    std::vector<token_id> history{1, 45, 300};
    const size_t n_prompt = history.size();
    std::vector<batch_entry> batch = prompt_batch(history);
    for (int step = 0; step < 48; ++step) {
      decode(*ctx, batch);
      const int last = static_cast<int>(batch.size()) - 1;
      const auto row = logits(*ctx, last);
      const token_id want = on_host.sample(row, history, n_prompt);
      const token_id got = sample(*ctx, last, on_device, history, n_prompt);
      ASSERT_EQ(got, want) << "step " << step << " temperature " << sp.temperature;
      token_logprobs host, device;
      compute_logprobs(row, got, max_top_logprobs, scratch, host);
      logprobs(*ctx, last, got, max_top_logprobs, device);
      EXPECT_NEAR(device.logprob, host.logprob, 1e-5) << "step " << step;
      ASSERT_EQ(device.n_top, host.n_top);
      for (int j = 0; j < host.n_top; ++j) {
        EXPECT_EQ(device.top[j].token, host.top[j].token) << "step " << step << " rank " << j;
        EXPECT_NEAR(device.top[j].logprob, host.top[j].logprob, 1e-5);
      }
      history.push_back(got);
      batch.assign(1, {got, static_cast<int32_t>(history.size() - 1), 0, true});
    }
  }
}

// n > 1 choices: a sequence copied on the device continues exactly as its source.
TEST(engine_api_on_cuda, a_copied_sequence_continues_like_its_source) {
  auto m = load_on_gpu("stories260K.gguf");
  if (!m) GTEST_SKIP() << "no CUDA device";
  const auto prompt = tokenize(*m, "Once upon a time, there was", true);
  context_params cp = context_default_params();
  cp.n_ctx = 64;
  cp.n_seq = 3;
  auto ctx = context_create(*m, cp);
  std::vector<batch_entry> batch;
  for (size_t i = 0; i < prompt.size(); ++i)
    batch.push_back({prompt[i], static_cast<int32_t>(i), 0, i + 1 == prompt.size()});
  decode(*ctx, batch);
  sequence_copy(*ctx, 0, 2);
  const int32_t pos = static_cast<int32_t>(prompt.size());
  const std::vector<batch_entry> two{{403, pos, 0, true}, {403, pos, 2, true}};
  decode(*ctx, two);
  const auto a = logits(*ctx, 0), b = logits(*ctx, 1);
  EXPECT_TRUE(std::equal(a.begin(), a.end(), b.begin()));
}

}  // namespace
}  // namespace rbee::engine
