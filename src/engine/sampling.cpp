#include "engine/sampling.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <limits>

#include "engine/engine.h"
#include "engine/token_choice.h"

namespace rbee::engine {

namespace {

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

}  // namespace

rng::rng(uint64_t seed) {
  for (auto& s : s_) s = splitmix64(seed);
}

uint64_t rng::next() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double rng::uniform() {
  return static_cast<double>(next() >> 11) * 0x1.0p-53;
}

sampling_params sampling_default_params() {
  return {};
}

sampler::sampler(const sampling_params& params, int n_vocab)
    : params_(params), rng_state_(params.seed) {
  assert(n_vocab > 0 && "sampler needs a vocabulary");
  candidates_.reserve(static_cast<size_t>(n_vocab));
  if (params.repeat_last_n > 0)
    penalized_.reserve(static_cast<size_t>(std::min(params.repeat_last_n, n_vocab)));
  const bool counting = params.presence_penalty != 0.0f || params.frequency_penalty != 0.0f;
  if (!counting && params.logit_bias.empty()) return;
  const size_t nv = static_cast<size_t>(n_vocab);
  bias_.assign(nv, 0.0f);
  std::vector<uint8_t> seen(nv, 0);
  for (const auto& [token, bias] : params.logit_bias) {
    assert(token >= 0 && token < n_vocab && "logit_bias: token outside the vocabulary");
    bias_[static_cast<size_t>(token)] = bias;
    if (!seen[static_cast<size_t>(token)]) biased_.push_back(token);
    seen[static_cast<size_t>(token)] = 1;
  }
  offsets_.reserve(nv);
  if (counting) {
    counts_.assign(nv, 0);
    counted_.reserve(nv);
  }
}

void sampler::collect_offsets(std::span<const token_id> generated, int n_vocab) {
  offsets_.clear();
  if (bias_.empty()) return;
  if (!counts_.empty()) {
    for (const token_id t : generated) {
      if (t < 0 || t >= n_vocab) continue;
      if (counts_[static_cast<size_t>(t)]++ == 0) counted_.push_back(t);
    }
  }
  for (const token_id t : biased_)
    if (counts_.empty() || counts_[static_cast<size_t>(t)] == 0)
      offsets_.push_back({.token = t, .offset = bias_[static_cast<size_t>(t)]});
  for (const token_id t : counted_) {
    int& count = counts_[static_cast<size_t>(t)];
    const float penalty =
        params_.presence_penalty + params_.frequency_penalty * static_cast<float>(count);
    offsets_.push_back({.token = t, .offset = bias_[static_cast<size_t>(t)] - penalty});
    count = 0;
  }
  counted_.clear();
}

sampling_step sampler::next_step(std::span<const token_id> history, size_t n_prompt, int n_vocab,
                                 std::span<const uint64_t> allowed) {
  assert(n_prompt <= history.size() && "sampler: prompt longer than the history");
  assert((allowed.empty() || allowed.size() == (static_cast<size_t>(n_vocab) + 63) / 64) &&
         "sampler: the allowed-token mask must have a bit per token");
  penalized_.clear();
  if (params_.repeat_penalty != 1.0f && params_.repeat_last_n != 0) {
    const size_t n = params_.repeat_last_n < 0
                         ? history.size()
                         : std::min(history.size(), static_cast<size_t>(params_.repeat_last_n));
    const auto window = history.subspan(history.size() - n);
    for (size_t i = 0; i < window.size(); ++i) {
      const token_id t = window[i];
      if (t < 0 || t >= n_vocab) continue;
      if (std::find(window.begin(), window.begin() + static_cast<ptrdiff_t>(i), t) !=
          window.begin() + static_cast<ptrdiff_t>(i))
        continue;
      penalized_.push_back(t);
    }
  }
  collect_offsets(history.subspan(n_prompt), n_vocab);
  double uniform = 0.0;
  if (params_.temperature > 0.0f) {
    rng gen(rng_state_);
    rng_state_ = gen.next();
    uniform = gen.uniform();
  }
  return {.knobs = {.temperature = params_.temperature,
                    .top_k = params_.top_k,
                    .top_p = params_.top_p,
                    .min_p = params_.min_p,
                    .repeat_penalty = params_.repeat_penalty,
                    .uniform = uniform},
          .penalized = penalized_,
          .offsets = offsets_,
          .allowed = allowed};
}

token_id sampler::sample(std::span<const float> logits, std::span<const token_id> history,
                         size_t n_prompt, std::span<const uint64_t> allowed) {
  assert(logits.size() <= candidates_.capacity() && "logits larger than vocab");
  return choose_token(
      logits, next_step(history, n_prompt, static_cast<int>(logits.size()), allowed), candidates_);
}

token_id choose_token(std::span<const float> logits, const sampling_step& step,
                      sampling_candidates& candidates) {
  const sampling_knobs& k = step.knobs;
  const int n_vocab = static_cast<int>(logits.size());
  candidates.clear();
  const bool constrained = !step.allowed.empty();
  for (int i = 0; i < n_vocab; ++i)
    if (token_allowed(step.allowed, i)) candidates.emplace_back(logits[i], i);
  assert(!candidates.empty() && "choose_token: the constraint allows no token");

  // Candidates are in id order: a constrained list finds a token by binary search.
  const auto candidate_of = [&](token_id t) -> float* {
    if (!constrained) return &candidates[static_cast<size_t>(t)].first;
    auto it = std::lower_bound(candidates.begin(), candidates.end(), t,
                               [](const auto& c, token_id id) { return c.second < id; });
    return it == candidates.end() || it->second != t ? nullptr : &it->first;
  };
  // Repeat penalty, once per distinct token of the last repeat_last_n (as llama.cpp does).
  for (const token_id t : step.penalized) {
    if (float* l = candidate_of(t)) *l = *l > 0 ? *l / k.repeat_penalty : *l * k.repeat_penalty;
  }
  // Then the additive terms (logit_bias, presence and frequency penalties).
  for (const token_offset& o : step.offsets) {
    if (float* l = candidate_of(o.token)) *l += o.offset;
  }

  if (k.temperature <= 0.0f) {
    // Greedy: the first of equal maxima, like argmax everywhere else.
    size_t best = 0;
    for (size_t i = 1; i < candidates.size(); ++i)
      if (candidates[i].first > candidates[best].first) best = i;
    return candidates[best].second;
  }

  const auto by_logit = [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  size_t n = candidates.size();
  if (k.top_k > 0 && static_cast<size_t>(k.top_k) < n) {
    n = static_cast<size_t>(k.top_k);
    std::partial_sort(candidates.begin(), candidates.begin() + static_cast<ptrdiff_t>(n),
                      candidates.end(), by_logit);
  } else {
    std::sort(candidates.begin(), candidates.end(), by_logit);
  }

  // Softmax over the survivors (sorted, so the first is the maximum).
  const float max_logit = candidates[0].first;
  double sum = 0;
  for (size_t i = 0; i < n; ++i) {
    candidates[i].first = std::exp(candidates[i].first - max_logit);
    sum += candidates[i].first;
  }
  for (size_t i = 0; i < n; ++i)
    candidates[i].first = static_cast<float>(candidates[i].first / sum);

  // Top-p: the smallest prefix whose mass reaches top_p.
  if (k.top_p < 1.0f) {
    double cum = 0;
    for (size_t i = 0; i < n; ++i) {
      cum += candidates[i].first;
      if (cum >= k.top_p) {
        n = i + 1;
        break;
      }
    }
  }
  // Min-p: drop tokens less likely than min_p times the most likely one.
  if (k.min_p > 0.0f) {
    const float threshold = candidates[0].first * k.min_p;
    size_t keep = 1;
    while (keep < n && candidates[keep].first >= threshold) ++keep;
    n = keep;
  }

  // Temperature on the surviving distribution: p^(1/T) is softmax(logit / T) renormalised.
  double total = 0;
  const double inv_t = 1.0 / k.temperature;
  for (size_t i = 0; i < n; ++i) {
    candidates[i].first = static_cast<float>(std::pow(candidates[i].first, inv_t));
    total += candidates[i].first;
  }
  const double r = k.uniform * total;
  double cum = 0;
  for (size_t i = 0; i < n; ++i) {
    cum += candidates[i].first;
    if (r < cum) return candidates[i].second;
  }
  return candidates[n - 1].second;
}

void compute_logprobs(std::span<const float> logits, token_id token, int n_top,
                      sampling_candidates& candidates, token_logprobs& out) {
  const int n_vocab = static_cast<int>(logits.size());
  assert(token >= 0 && token < n_vocab && "logprobs: token outside the vocabulary");
  assert(n_top >= 0 && n_top <= max_top_logprobs && "logprobs: n_top out of range");
  float max_logit = logits[0];
  for (const float l : logits) max_logit = std::max(max_logit, l);
  // exp and the sum in double: the CUDA kernel computes the same.
  double sum = 0.0;
  for (const float l : logits) sum += std::exp(static_cast<double>(l - max_logit));
  const double log_normalizer = static_cast<double>(max_logit) + std::log(sum);
  const auto logprob_of = [&](token_id t) {
    return static_cast<float>(static_cast<double>(logits[static_cast<size_t>(t)]) - log_normalizer);
  };
  out.logprob = logprob_of(token);
  out.n_top = std::min(n_top, n_vocab);
  candidates.clear();
  for (int i = 0; i < n_vocab; ++i) candidates.emplace_back(logits[static_cast<size_t>(i)], i);
  std::partial_sort(candidates.begin(), candidates.begin() + out.n_top, candidates.end(),
                    [](const auto& a, const auto& b) {
                      return a.first > b.first || (a.first == b.first && a.second < b.second);
                    });
  for (int i = 0; i < out.n_top; ++i) {
    const token_id t = candidates[static_cast<size_t>(i)].second;
    out.top[static_cast<size_t>(i)] = {.token = t, .logprob = logprob_of(t)};
  }
}

stop_matcher::stop_matcher(std::vector<std::string> stops) : stops_(std::move(stops)) {
  std::erase_if(stops_, [](const std::string& s) { return s.empty(); });
}

std::string stop_matcher::push(std::string_view text) {
  if (matched_) return {};
  held_.append(text);
  size_t first = std::string::npos;
  for (const auto& stop : stops_) {
    const size_t at = held_.find(stop);
    if (at < first) {
      first = at;
      matched_stop_ = stop;
    }
  }
  if (first != std::string::npos) {
    matched_ = true;
    std::string out = held_.substr(0, first);
    held_.clear();
    return out;
  }
  // Hold back the longest tail that is the start of some stop string.
  size_t hold = 0;
  for (const auto& stop : stops_) {
    for (size_t len = std::min(stop.size() - 1, held_.size()); len > hold; --len) {
      if (std::string_view(held_).substr(held_.size() - len) ==
          std::string_view(stop).substr(0, len)) {
        hold = len;
        break;
      }
    }
  }
  std::string out = held_.substr(0, held_.size() - hold);
  held_.erase(0, held_.size() - hold);
  return out;
}

std::string stop_matcher::flush() {
  std::string out;
  out.swap(held_);
  return out;
}

}  // namespace rbee::engine
