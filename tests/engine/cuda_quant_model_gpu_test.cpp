// Models whose every matrix is Q2_K, Q3_K, IQ4_NL or IQ4_XS (synth-tiny-f16.gguf quantized in
// the test) on the CUDA backend against the CPU engine: a 12-token prefill (the cuBLAS route)
// and single-token steps (the packed matrix x vector kernels). Skips without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/engine.h"

#if RBEE_HAVE_CUDA
#include "engine/cuda/cuda_backend.h"
#include "support/quantized_model.h"

namespace rbee::engine::cuda {
namespace {

#define RBEE_REQUIRE_GPU() \
  if (device_count() == 0) GTEST_SKIP() << "no CUDA device"

// The GPU machine gets copies of the few models it needs; the environment names them.
std::string models_dir() {
  const char* env = std::getenv("RBEE_SHARED_MODELS_DIR");
  return env && *env ? env : RBEE_SHARED_MODELS_DIR;
}

// Largest |a - b| over the largest |b|.
double max_rel_error(const float* a, std::span<const float> b) {
  double err = 0, mag = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    err = std::max(err, std::abs(static_cast<double>(a[i]) - b[i]));
    mag = std::max(mag, std::abs(static_cast<double>(b[i])));
  }
  return err / mag;
}

class cuda_quantized_model : public ::testing::TestWithParam<tensor_type> {};

TEST_P(cuda_quantized_model, logits_match_cpu) {
  RBEE_REQUIRE_GPU();
  const std::string path = test_support::write_quantized_model(
      models_dir() + "/synth-tiny-f16.gguf", GetParam(), "cuda-quant-model-test");
  model_params mp = model_default_params();
  mp.n_threads = 4;
  auto m = model_load(path, mp);
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
    decode(*gpu, batch);  // every entry wants logits: row i is entry i
    for (size_t i = 0; i < batch.size(); ++i)
      copy_logits(*gpu, static_cast<int>(i), l.data() + i * nv);
    for (size_t i = 0; i < batch.size(); ++i)
      worst = std::max(worst, max_rel_error(l.data() + i * nv, logits(*cpu, static_cast<int>(i))));
    const auto last = logits(*cpu, static_cast<int>(batch.size()) - 1);
    const auto next =
        static_cast<token_id>(std::max_element(last.begin(), last.end()) - last.begin());
    batch.assign(1, {next, 12 + step, 0, true});
  }
  std::printf("  all %-6s max |logit error| / max |logit| = %.2e\n",
              std::string(to_string(GetParam())).c_str(), worst);
  // As the shared quantized models in cuda_model_gpu_test: both sides quantize activations,
  // each its own way.
  EXPECT_LT(worst, 5e-2);
  std::filesystem::remove(path);
}

INSTANTIATE_TEST_SUITE_P(new_types, cuda_quantized_model,
                         ::testing::Values(tensor_type::q2_k, tensor_type::q3_k,
                                           tensor_type::iq4_nl, tensor_type::iq4_xs),
                         [](const auto& info) { return std::string(to_string(info.param)); });

}  // namespace
}  // namespace rbee::engine::cuda

#else
TEST(cuda_quantized_model, skipped_without_cuda) {
  GTEST_SKIP() << "built without the CUDA backend";
}
#endif
