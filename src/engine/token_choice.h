#pragma once
// One sampling choice: engine.h's sampler resolved for one step (its knobs, the draw and the
// penalized tokens), and the host's way of making it. sampler::sample and the CPU backend
// choose with choose_token; the CUDA backend makes the same choice on the device.
#include <span>
#include <utility>
#include <vector>

#include "engine/engine.h"
#include "engine/sampling_knobs.h"

namespace rbee::engine {

struct sampling_step {
  sampling_knobs knobs;
  std::span<const token_id> penalized;    // distinct tokens in [0, n_vocab)
  std::span<const token_offset> offsets;  // distinct tokens in [0, n_vocab)
};

// A token's logit (then its probability) and id; reused between choices.
using sampling_candidates = std::vector<std::pair<float, token_id>>;

// Repeat penalty on `penalized`, the offsets added, then argmax (temperature <= 0) or top-k,
// softmax, top-p, min-p and temperature, and the token whose cumulative weight passes uniform *
// total. `candidates` is scratch (reserved to the vocabulary: no allocation).
token_id choose_token(std::span<const float> logits, const sampling_step& step,
                      sampling_candidates& candidates);

// engine::logprobs on host logits: log-softmax of `logits` at `token` and the n_top most
// likely tokens (logit desc, id asc). `candidates` is scratch as above.
void compute_logprobs(std::span<const float> logits, token_id token, int n_top,
                      sampling_candidates& candidates, token_logprobs& out);

}  // namespace rbee::engine
