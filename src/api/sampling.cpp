#include "api/sampling.h"

#include "common/json.h"

namespace rbee::api {

namespace {

bool present(const nlohmann::json& body, const char* field) {
  return body.contains(field) && !body[field].is_null();
}

std::optional<double> number(const nlohmann::json& body, const char* field,
                             limits<double> allowed) {
  if (!present(body, field)) return std::nullopt;
  return common::number_in_range(body, field, 0, allowed.min, allowed.max);
}

std::optional<int64_t> integer(const nlohmann::json& body, const char* field,
                               limits<int64_t> allowed) {
  return common::optional_int(body, field, allowed.min, allowed.max);
}

}  // namespace

sampling_options sampling_options::from_json(const nlohmann::json& body) {
  sampling_options s;
  s.temperature = number(body, "temperature", temperature_limits);
  s.top_p = number(body, "top_p", top_p_limits);
  s.top_k = integer(body, "top_k", top_k_limits);
  s.min_p = number(body, "min_p", min_p_limits);
  s.repeat_penalty = number(body, "repeat_penalty", repeat_penalty_limits);
  s.seed = integer(body, "seed", seed_limits);
  return s;
}

void sampling_options::to_json(nlohmann::json& body) const {
  if (temperature) body["temperature"] = *temperature;
  if (top_p) body["top_p"] = *top_p;
  if (top_k) body["top_k"] = *top_k;
  if (min_p) body["min_p"] = *min_p;
  if (repeat_penalty) body["repeat_penalty"] = *repeat_penalty;
  if (seed) body["seed"] = *seed;
}

}  // namespace rbee::api
