#pragma once
// One sampling choice: engine.h's sampler resolved for one step (its knobs, the draw and the
// penalized tokens), and the host's way of making it. sampler::sample and the CPU backend
// choose with choose_token; the CUDA backend makes the same choice on the device.
#include <cstdint>
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
  // Constrained decoding: bit t (of n_vocab) set when token t may be chosen; empty: any
  // token. Tokens outside it are never candidates (the CUDA backend gives them -inf).
  std::span<const uint64_t> allowed;
};

inline bool token_allowed(std::span<const uint64_t> allowed, token_id t) {
  return allowed.empty() ||
         ((allowed[static_cast<size_t>(t) >> 6] >> (static_cast<unsigned>(t) & 63)) & 1) != 0;
}

// A token's logit (then its probability) and id; reused between choices.
using sampling_candidates = std::vector<std::pair<float, token_id>>;

// Tokens outside `allowed` dropped, repeat penalty on `penalized`, the offsets added, then
// argmax (temperature <= 0) or top-k, softmax, top-p, min-p and temperature, and the token whose
// cumulative weight passes uniform * total. `candidates` is scratch (reserved to the
// vocabulary: no allocation).
token_id choose_token(std::span<const float> logits, const sampling_step& step,
                      sampling_candidates& candidates);

// engine::logprobs on host logits: log-softmax of `logits` at `token` and the n_top most
// likely tokens (logit desc, id asc). `candidates` is scratch as above.
void compute_logprobs(std::span<const float> logits, token_id token, int n_top,
                      sampling_candidates& candidates, token_logprobs& out);

}  // namespace rbee::engine
