// Models whose every matrix is Q2_K, Q3_K, IQ4_NL or IQ4_XS (the synthetic F16 model
// quantized in the test): the CPU backend's forward pass against the reference oracle.
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/engine.h"
#include "support/quantized_model.h"
#include "support/reference.h"

namespace rbee::engine {
namespace {

const std::string models_dir = RBEE_SHARED_MODELS_DIR;

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

class quantized_model : public testing::TestWithParam<tensor_type> {};

// A batched prefill (logits at every position), then greedy decode steps: every position's
// logits match the oracle's, which dequantizes the same weights in fp32. The kernels quantize
// activations to 8 bits (as ggml does), the oracle does not: the bound of the other
// quantized models (model_test).
TEST_P(quantized_model, cpu_logits_agree_with_the_reference) {
  const std::string path = test_support::write_quantized_model(models_dir + "/synth-tiny-f16.gguf",
                                                               GetParam(), "quant-model-test");
  model_params mp = model_default_params();
  mp.n_threads = 1;
  auto m = model_load(path, mp);
  context_params cp = context_default_params();
  cp.n_ctx = 64;
  auto ctx = context_create(*m, cp);
  reference::transformer ref(path);
  const auto prompt = tokenize(*m, "Once upon a time, in a big forest", true);
  std::vector<batch_entry> batch;
  for (size_t i = 0; i < prompt.size(); ++i)
    batch.push_back({prompt[i], static_cast<int32_t>(i), 0, true});
  decode(*ctx, batch);
  double worst = 0;
  for (size_t i = 0; i < prompt.size(); ++i)
    worst = std::max(worst, relative_error(logits(*ctx, static_cast<int>(i)),
                                           ref.forward(prompt[i], static_cast<int>(i))));
  token_id next = argmax(logits(*ctx, static_cast<int>(prompt.size()) - 1));
  for (int step = 0; step < 4; ++step) {
    const int pos = static_cast<int>(prompt.size()) + step;
    const batch_entry e{next, pos, 0, true};
    decode(*ctx, std::span(&e, 1));
    worst = std::max(worst, relative_error(logits(*ctx, 0), ref.forward(next, pos)));
    next = argmax(logits(*ctx, 0));
  }
  std::printf("  all %s: worst relative logit error %.2e\n",
              std::string(to_string(GetParam())).c_str(), worst);
  EXPECT_LT(worst, 3e-2);
  std::filesystem::remove(path);
}

INSTANTIATE_TEST_SUITE_P(new_types, quantized_model,
                         testing::Values(tensor_type::q2_k, tensor_type::q3_k, tensor_type::iq4_nl,
                                         tensor_type::iq4_xs),
                         [](const auto& info) { return std::string(to_string(info.param)); });

}  // namespace
}  // namespace rbee::engine
