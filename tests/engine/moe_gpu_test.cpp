// The CUDA backend's mixture of experts reads only the experts its router chose: with one
// expert's matrices made NaN in one layer, a token's logits stay those of the intact model
// unless that expert is among the layer's chosen, so exactly n_expert_used experts per layer
// may matter. Checked for a single token (the grouped matrix x vector kernels, in a graph)
// and for a batch of nine copies of one token (the grouped cuBLAS products of larger batches):
// copies of one token have the same hidden state at every position (their keys differ only
// by rotation, their values not at all), so they choose the same experts. The logits
// themselves are checked against the CPU by architectures_gpu_test. Skips without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "engine/engine.h"

#if RBEE_HAVE_CUDA
#include <unistd.h>

#include "engine/cuda/cuda_backend.h"
#include "engine/model.h"
#include "engine_tool/engine_tool.h"

namespace rbee::engine::cuda {
namespace {

std::string synth_model(const std::string& arch, const std::string& type) {
  const auto path =
      std::filesystem::temp_directory_path() /
      ("rbee-moe-gpu-test-" + std::to_string(::getpid()) + "-" + arch + "-" + type + ".gguf");
  engine_tool::synth_options opts;
  opts.arch = arch;
  opts.type = type;
  opts.output = path.string();
  std::ostringstream log;
  engine_tool::synth(opts, log);
  return path.string();
}

constexpr token_id token = 77;
constexpr int n_copies = 9;  // above max_matvec_tokens: the batched route

// The logits of `token` alone (sequence 0) and of the last of n_copies copies (sequence 1).
std::vector<std::vector<float>> run(const model_weights& w) {
  auto dm = upload(w, 0);
  context_params cp = context_default_params();
  cp.n_ctx = 32;
  cp.n_seq = 2;
  cp.n_batch = 16;
  auto ctx = create_context(*dm, cp);
  std::vector<std::vector<float>> out(2, std::vector<float>(static_cast<size_t>(w.hp.n_vocab)));
  const batch_entry one{token, 0, 0, true};
  decode(*ctx, std::span(&one, 1));
  copy_logits(*ctx, 0, out[0].data());
  std::vector<batch_entry> copies;
  for (int p = 0; p < n_copies; ++p) copies.push_back({token, p, 1, p == n_copies - 1});
  decode(*ctx, copies);
  copy_logits(*ctx, 0, out[1].data());
  return out;
}

class moe_gpu : public testing::TestWithParam<std::pair<std::string, std::string>> {};

TEST_P(moe_gpu, only_the_chosen_experts_are_read) {
  if (device_count() == 0) GTEST_SKIP() << "no CUDA device";
  const auto& [arch, type] = GetParam();
  const std::string path = synth_model(arch, type);
  model_params mp = model_default_params();
  auto m = model_load(path, mp);
  const model_weights intact = weights_of(*m);
  const auto expected = run(intact);
  for (const auto& logits : expected)
    for (const float v : logits) ASSERT_TRUE(std::isfinite(v));
  const hparams& hp = intact.hp;
  for (size_t l = 0; l < intact.layers.size(); ++l) {
    int mattered[2] = {0, 0};  // experts whose NaN reached the logits: single token, copies
    for (int e = 0; e < hp.n_expert; ++e) {
      model_weights poisoned = intact;
      auto& layer = poisoned.layers[l];
      std::vector<std::vector<uint8_t>> nan_bytes;  // all ones: NaN in every float and scale
      for (auto* experts : {&layer.expert_gate, &layer.expert_up, &layer.expert_down}) {
        weight& x = (*experts)[static_cast<size_t>(e)];
        nan_bytes.emplace_back(x.row_bytes() * static_cast<size_t>(x.n_rows), 0xFF);
        x.data = nan_bytes.back().data();
      }
      const auto got = run(poisoned);
      for (int i = 0; i < 2; ++i) mattered[i] += got[i] != expected[i] ? 1 : 0;
    }
    EXPECT_EQ(mattered[0], hp.n_expert_used) << "layer " << l << ", one token";
    EXPECT_EQ(mattered[1], hp.n_expert_used) << "layer " << l << ", " << n_copies << " copies";
  }
  std::filesystem::remove(path);
}

INSTANTIATE_TEST_SUITE_P(synth_tiny, moe_gpu,
                         testing::Values(std::pair{"mixtral", "q8_0"}, std::pair{"mixtral", "f16"},
                                         std::pair{"qwen2moe", "q8_0"},
                                         std::pair{"qwen3moe", "q4_k_m"}));

}  // namespace
}  // namespace rbee::engine::cuda

#else
TEST(moe_gpu, skipped_without_cuda) {
  GTEST_SKIP() << "built without the CUDA backend";
}
#endif
