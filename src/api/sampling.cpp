#include "api/sampling.h"

#include <limits>
#include <string>

#include "common/errors.h"
#include "common/json.h"

namespace rbee::api {

namespace {

std::optional<double> number(const nlohmann::json& body, const char* field,
                             limits<double> allowed) {
  if (!common::present(body, field)) return std::nullopt;
  return common::number_in_range(body, field, 0, allowed.min, allowed.max);
}

std::optional<int64_t> integer(const nlohmann::json& body, const char* field,
                               limits<int64_t> allowed) {
  return common::optional_int(body, field, allowed.min, allowed.max);
}

// {"<token id>": bias, ...}: ids written in decimal (no sign, no leading zeros), biases in
// [-100, 100], at most max_logit_bias_entries.
std::vector<std::pair<int32_t, double>> logit_bias_from_json(const nlohmann::json& body) {
  if (!common::present(body, "logit_bias")) return {};
  const nlohmann::json& bias = body["logit_bias"];
  if (!bias.is_object()) {
    throw common::invalid_request(
        "logit_bias",
        "logit_bias must be an object of token id to bias, not " + common::json_type_name(bias));
  }
  if (bias.size() > max_logit_bias_entries) {
    throw common::invalid_request(
        "logit_bias", "logit_bias holds " + std::to_string(bias.size()) + " entries; at most " +
                          std::to_string(max_logit_bias_entries) + " are accepted");
  }
  std::vector<std::pair<int32_t, double>> out;
  out.reserve(bias.size());
  for (const auto& [key, value] : bias.items()) {
    const bool decimal = !key.empty() && key.size() <= 10 &&
                         key.find_first_not_of("0123456789") == std::string::npos &&
                         (key == "0" || key[0] != '0') &&
                         std::stoll(key) <= std::numeric_limits<int32_t>::max();
    if (!decimal) {
      throw common::invalid_request(
          "logit_bias",
          "logit_bias keys must be token ids such as \"50256\", not '" + key.substr(0, 32) + "'");
    }
    if (!value.is_number() || value.get<double>() < logit_bias_limits.min ||
        value.get<double>() > logit_bias_limits.max) {
      throw common::invalid_request("logit_bias",
                                    "logit_bias[\"" + key + "\"] must be a number in [-100, 100]");
    }
    out.emplace_back(static_cast<int32_t>(std::stoll(key)), value.get<double>());
  }
  return out;
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
  s.presence_penalty = number(body, "presence_penalty", presence_penalty_limits);
  s.frequency_penalty = number(body, "frequency_penalty", frequency_penalty_limits);
  s.logit_bias = logit_bias_from_json(body);
  return s;
}

void sampling_options::to_json(nlohmann::json& body) const {
  if (temperature) body["temperature"] = *temperature;
  if (top_p) body["top_p"] = *top_p;
  if (top_k) body["top_k"] = *top_k;
  if (min_p) body["min_p"] = *min_p;
  if (repeat_penalty) body["repeat_penalty"] = *repeat_penalty;
  if (seed) body["seed"] = *seed;
  if (presence_penalty) body["presence_penalty"] = *presence_penalty;
  if (frequency_penalty) body["frequency_penalty"] = *frequency_penalty;
  if (!logit_bias.empty()) {
    nlohmann::json bias = nlohmann::json::object();
    for (const auto& [token, value] : logit_bias) bias[std::to_string(token)] = value;
    body["logit_bias"] = std::move(bias);
  }
}

}  // namespace rbee::api
