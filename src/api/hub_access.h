#pragma once
// The Hugging Face hub one request downloads from: the caller's HF_ENDPOINT and HF_TOKEN,
// carried by the CLI's task and download requests to the queen, and by the queen to the hive
// that downloads the model. An empty field leaves the hive's own setting.
//
// The token is a secret: it travels in request bodies only, from_json's errors never quote it,
// and no process logs, narrates or stores it (the hive hands it to libcurl as a header).

#include <string>

#include <nlohmann/json.hpp>

namespace rbee::api {

inline constexpr size_t max_hub_endpoint_length = 2048;
inline constexpr size_t max_hub_token_length = 1024;

struct hub_access {
  std::string endpoint;  // "http(s)://host[:port][/path]", no trailing '/'
  std::string token;

  bool empty() const { return endpoint.empty() && token.empty(); }
  // The "hub" object of a body ({"endpoint","token"}, both optional); absent or null gives
  // an empty one. Throws 400 INVALID_REQUEST naming hub.endpoint or hub.token.
  static hub_access from_json(const nlohmann::json& body);
  // {"endpoint","token"} with the fields that are set: for the next hop's body only.
  nlohmann::json to_json() const;
};

}  // namespace rbee::api
