#pragma once
// The models the split tests (split_cases.h, tensor_split_cases.h) load: the shared test
// models and a tiny random gemma2 written once per process.
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>

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

inline token_id argmax(std::span<const float> v) {
  return static_cast<token_id>(std::max_element(v.begin(), v.end()) - v.begin());
}

}  // namespace rbee::engine::split_cases
