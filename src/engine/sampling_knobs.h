#pragma once
// The knobs of one sampling choice (engine.h's sampling_params resolved for one step). Plain
// C++17 and no CUDA types: the host code and the CUDA kernels both include it.
#include <cstdint>

namespace rbee::engine {

struct sampling_knobs {
  float temperature = 0.0f;  // <= 0: argmax
  int top_k = 0;             // 0: off
  float top_p = 1.0f;        // 1: off
  float min_p = 0.0f;        // 0: off
  float repeat_penalty = 1.0f;
  double uniform = 0.0;  // the draw in [0, 1); unused when greedy
};

// An additive term on one token's logit (logit_bias and the presence and frequency
// penalties, summed on the host so every backend adds the same float).
struct token_offset {
  int32_t token = 0;
  float offset = 0.0f;
};

}  // namespace rbee::engine
