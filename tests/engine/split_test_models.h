#pragma once
// The models the split tests (split_cases.h, tensor_split_cases.h) load: the shared test
// models and a tiny random gemma2 written once per process.
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "engine_tool/engine_tool.h"

namespace rbee::engine::split_cases {

inline std::string models_dir() {
  const char* env = std::getenv("RBEE_SHARED_MODELS_DIR");
  return env && *env ? env : RBEE_SHARED_MODELS_DIR;
}

inline std::string synth_gemma2_path() {
  return (std::filesystem::temp_directory_path() /
          ("rbee-split-test-" + std::to_string(::getpid()) + "-gemma2.gguf"))
      .string();
}

// A tiny random gemma2 (sliding-window layers with ring caches), written once per process.
inline std::string synth_gemma2() {
  const std::string path = synth_gemma2_path();
  if (!std::filesystem::exists(path)) {
    engine_tool::synth_options opts;
    opts.arch = "gemma2";
    opts.output = path;
    opts.n_threads = 1;
    std::ostringstream log;
    engine_tool::synth(opts, log);
  }
  return path;
}

class synth_model_cleanup : public testing::Environment {
 public:
  void TearDown() override { std::filesystem::remove(synth_gemma2_path()); }
};

// The model on `backend`, whole (no devices) or split `mode` across `devices`; null when this
// machine has no such backend.
inline model_ptr load_model(const std::string& path, backend_kind backend, split_mode mode,
                            std::vector<int> devices = {}, std::vector<float> tensor_split = {}) {
  model_params mp = model_default_params();
  mp.n_threads = 2;
  mp.backend = backend;
  if (!devices.empty()) {
    mp.split = mode;
    mp.devices = std::move(devices);
    mp.tensor_split = std::move(tensor_split);
  }
  try {
    return model_load(path, mp);
  } catch (const engine_error& e) {
    if (e.code != error_code::backend_unavailable) throw;
    return nullptr;
  }
}

inline token_id argmax(std::span<const float> v) {
  return static_cast<token_id>(std::max_element(v.begin(), v.end()) - v.begin());
}

// What both split tests run against the whole model: a prompt prefilled on sequence 0 (logits
// at every position), copied to sequence 1, then greedy decode of both together past the synth
// models' sliding window (32), so the rings wrap. `expect_decode(whole, split, batch)` decodes
// the batch in both and compares their logits; the split must follow the whole model's greedy
// tokens, chosen on the host and by the backend's sampler.
inline void run_split_scenario(
    model& whole_model, model& split_model, const context_params& cp,
    const std::function<void(context&, context&, std::span<const batch_entry>)>& expect_decode) {
  auto whole = context_create(whole_model, cp);
  auto split = context_create(split_model, cp);
  const int n_vocab = model_get_info(whole_model).n_vocab;
  std::vector<batch_entry> batch;
  for (int i = 0; i < 21; ++i)  // not a whole block: the copy copies the partial one
    batch.push_back({static_cast<token_id>(1 + (i * 37) % (n_vocab - 1)), i, 0, true});
  ASSERT_NO_FATAL_FAILURE(expect_decode(*whole, *split, batch));
  sequence_copy(*whole, 0, 1);
  sequence_copy(*split, 0, 1);
  sampling_params greedy = sampling_default_params();
  greedy.temperature = 0;
  sampler whole_sampler(greedy, n_vocab), split_sampler(greedy, n_vocab);
  token_id next[2] = {argmax(logits(*whole, 20)), 5};
  for (int step = 0; step < 40; ++step) {
    const int pos = 21 + step;
    const std::vector<batch_entry> both{{next[0], pos, 0, true}, {next[1], pos, 1, true}};
    ASSERT_NO_FATAL_FAILURE(expect_decode(*whole, *split, both));
    for (int s = 0; s < 2; ++s) {
      next[s] = argmax(logits(*whole, s));
      ASSERT_EQ(argmax(logits(*split, s)), next[s]) << "greedy token of sequence " << s;
    }
    ASSERT_EQ(sample(*split, 0, split_sampler, {}), sample(*whole, 0, whole_sampler, {}));
  }
}

}  // namespace rbee::engine::split_cases
