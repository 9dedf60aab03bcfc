#pragma once
// The sampling knobs of a request (SPEC §3, §5) and their one set of limits. The CLI checks
// its flags against these limits, the queen and the worker parse request bodies with
// sampling_options::from_json: a value one process accepts, every process accepts.

#include <cstdint>
#include <limits>
#include <optional>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace rbee::api {

template <class T>
struct limits {
  T min;
  T max;
};

inline constexpr limits<double> temperature_limits{0.0, 2.0};
inline constexpr limits<double> top_p_limits{0.0, 1.0};
inline constexpr limits<int64_t> top_k_limits{0, 1'000'000};  // 0 = off
inline constexpr limits<double> min_p_limits{0.0, 1.0};
inline constexpr limits<double> repeat_penalty_limits{0.1, 10.0};  // 1.0 = off
inline constexpr limits<int64_t> seed_limits{0, std::numeric_limits<int64_t>::max()};
inline constexpr limits<int64_t> max_tokens_limits{1, 32768};
// OpenAI's additive penalties and logit_bias (0 and no entries = off).
inline constexpr limits<double> presence_penalty_limits{-2.0, 2.0};
inline constexpr limits<double> frequency_penalty_limits{-2.0, 2.0};
inline constexpr limits<double> logit_bias_limits{-100.0, 100.0};
inline constexpr size_t max_logit_bias_entries = 300;

// Unset fields take the worker's defaults (engine::default_sampling_params).
struct sampling_options {
  std::optional<double> temperature;
  std::optional<double> top_p;
  std::optional<int64_t> top_k;
  std::optional<double> min_p;
  std::optional<double> repeat_penalty;
  std::optional<int64_t> seed;  // unset: a fresh random seed per request
  std::optional<double> presence_penalty;
  std::optional<double> frequency_penalty;
  // (token id, bias) in the body's order; on the wire an object {"<token id>": bias}. Whether
  // an id is in the model's vocabulary only the worker knows (400 naming logit_bias there).
  std::vector<std::pair<int32_t, double>> logit_bias;

  // Reads the fields of a request body; throws common::http_error 400 INVALID_REQUEST naming
  // the field for a wrong type or a value outside its limits. Absent and null are unset.
  static sampling_options from_json(const nlohmann::json& body);
  // Writes the set fields into body.
  void to_json(nlohmann::json& body) const;
};

}  // namespace rbee::api
