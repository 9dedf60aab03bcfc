#pragma once
// A model split by layers into parts (docs/multi-gpu.md) against the same model in one part,
// for one backend per test binary (split_model_test: the CPU, parts on the host;
// split_model_gpu_test: CUDA, two parts on device 0): through prefill, batched decode of
// several sequences, a copied sequence (each part copies its own layers' blocks), sampling on
// the last part and the rings of sliding-window layers. A backend this machine lacks skips.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "split_test_models.h"

namespace rbee::engine::split_cases {

class split_model : public testing::TestWithParam<backend_kind> {
 protected:
  // The model whole (no devices) or split by layers across `devices`.
  model_ptr load(const std::string& path, std::vector<int> devices = {},
                 std::vector<float> tensor_split = {}) {
    return load_model(path, GetParam(), split_mode::layer, std::move(devices),
                      std::move(tensor_split));
  }

  // The CPU parts run the same kernels on the same rows: the same bits. CUDA's too, but a
  // relative bound keeps the GPU test about the hand-over, not about which cuBLAS algorithm
  // a context's run picks (as kv_cache_cases.h).
  void expect_same(std::span<const float> got, std::span<const float> want, size_t entry) const {
    ASSERT_EQ(got.size(), want.size());
    if (GetParam() == backend_kind::cpu) {
      ASSERT_TRUE(std::equal(got.begin(), got.end(), want.begin(),
                             [](float a, float b) {
                               return std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b);
                             }))
          << "logits of batch entry " << entry << " differ";
      return;
    }
    double err = 0, mag = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      err = std::max(err, std::abs(static_cast<double>(got[i]) - want[i]));
      mag = std::max(mag, std::abs(static_cast<double>(want[i])));
    }
    ASSERT_LE(err, 1e-5 * mag) << "logits of batch entry " << entry;
  }

  void expect_same_decode(context& whole, context& split, std::span<const batch_entry> batch) {
    decode(whole, batch);
    decode(split, batch);
    for (size_t i = 0; i < batch.size(); ++i) {
      if (!batch[i].want_logits) continue;
      expect_same(logits(split, static_cast<int>(i)), logits(whole, static_cast<int>(i)), i);
      if (testing::Test::HasFatalFailure()) return;
    }
  }

  // run_split_scenario (split_test_models.h): the split gives the whole model's logits.
  void expect_split_matches(const std::string& path, std::vector<int> devices,
                            std::vector<float> tensor_split = {}) {
    const auto whole_model = load(path);
    if (!whole_model) GTEST_SKIP() << "no such backend here";
    const size_t n_parts = devices.size();
    const auto split_model = load(path, std::move(devices), std::move(tensor_split));
    ASSERT_EQ(model_get_parts(*split_model).size(), n_parts);
    context_params cp = context_default_params();
    cp.n_ctx = 96;
    cp.n_seq = 2;
    cp.n_batch = 32;
    run_split_scenario(*whole_model, *split_model, cp,
                       [this](context& whole, context& split, std::span<const batch_entry> b) {
                         expect_same_decode(whole, split, b);
                       });
  }
};

inline std::string backend_name(const testing::TestParamInfo<backend_kind>& info) {
  return info.param == backend_kind::cpu ? "cpu" : "cuda";
}

TEST_P(split_model, stories260k_in_two_parts) {
  expect_split_matches(models_dir() + "/stories260K.gguf", {0, 0});
}

TEST_P(split_model, stories260k_in_three_uneven_parts) {
  expect_split_matches(models_dir() + "/stories260K.gguf", {0, 0, 0}, {1, 2, 1});
}

TEST_P(split_model, quantized_synth_tiny_in_two_parts) {
  expect_split_matches(models_dir() + "/synth-tiny-Q4_0.gguf", {0, 0}, {3, 1});
}

TEST_P(split_model, sliding_window_rings_split_with_their_layers) {
  expect_split_matches(synth_gemma2(), {0, 0});
}

TEST_P(split_model, parts_report_their_devices_and_layers) {
  const auto m = load(models_dir() + "/stories260K.gguf", {0, 0}, {1, 1});
  if (!m) GTEST_SKIP() << "no such backend here";
  const int n_layer = model_get_info(*m).n_layer;
  const auto& parts = model_get_parts(*m);
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[0].first_layer, 0);
  EXPECT_EQ(parts[0].end_layer, parts[1].first_layer);
  EXPECT_EQ(parts[1].end_layer, n_layer);
  EXPECT_EQ(parts[0].device, 0);
  const auto whole = load(models_dir() + "/stories260K.gguf");
  ASSERT_EQ(model_get_parts(*whole).size(), 1u);
  EXPECT_EQ(model_get_parts(*whole)[0].end_layer, n_layer);
}

}  // namespace rbee::engine::split_cases
