#include "api/hub_access.h"

#include <algorithm>

#include "common/json.h"

namespace rbee::api {

namespace {

bool is_visible_ascii(char c) {
  return c > ' ' && c < 0x7f;
}

// A string member of the "hub" object, named in errors as "hub.<key>" (never quoted).
std::string member(const nlohmann::json& hub, const char* key, size_t max_length) {
  auto it = hub.find(key);
  if (it == hub.end() || it->is_null()) return {};
  const std::string field = std::string("hub.") + key;
  if (!it->is_string() || it->get_ref<const std::string&>().size() > max_length) {
    throw common::invalid_request(
        field, field + " must be a string of at most " + std::to_string(max_length) + " bytes");
  }
  return it->get<std::string>();
}

}  // namespace

hub_access hub_access::from_json(const nlohmann::json& body) {
  hub_access hub;
  if (!common::present(body, "hub")) return hub;
  const auto& object = common::require_object(body, "hub");
  hub.endpoint = member(object, "endpoint", max_hub_endpoint_length);
  hub.token = member(object, "token", max_hub_token_length);
  if (!hub.endpoint.empty()) {
    bool scheme = hub.endpoint.starts_with("http://") || hub.endpoint.starts_with("https://");
    if (!scheme || !std::all_of(hub.endpoint.begin(), hub.endpoint.end(), is_visible_ascii)) {
      throw common::invalid_request(
          "hub.endpoint", "hub.endpoint must be an http:// or https:// URL without spaces");
    }
    while (hub.endpoint.ends_with('/')) hub.endpoint.pop_back();
  }
  // Checked without quoting it: the value is a secret.
  if (!std::all_of(hub.token.begin(), hub.token.end(), is_visible_ascii)) {
    throw common::invalid_request("hub.token",
                                  "hub.token must be printable ASCII without spaces (HF_TOKEN)");
  }
  return hub;
}

nlohmann::json hub_access::to_json() const {
  nlohmann::json out = nlohmann::json::object();
  if (!endpoint.empty()) out["endpoint"] = endpoint;
  if (!token.empty()) out["token"] = token;
  return out;
}

}  // namespace rbee::api
