#include "api/model_entry.h"

#include <type_traits>

namespace rbee::api {

namespace {

std::string text_or_empty(const nlohmann::json& j, const char* field) {
  auto it = j.find(field);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

template <class Number>
Number number_or_zero(const nlohmann::json& j, const char* field) {
  auto it = j.find(field);
  if (it == j.end() || !it->is_number_integer()) return 0;
  if constexpr (std::is_unsigned_v<Number>) {
    if (!it->is_number_unsigned() && it->get<int64_t>() < 0) return 0;  // a negative size
  }
  return it->get<Number>();
}

}  // namespace

nlohmann::json model_entry::to_json() const {
  return {{"id", id},
          {"provider", provider},
          {"reference", reference},
          {"file", file},
          {"local_path", local_path},
          {"size_bytes", size_bytes},
          {"sha256", sha256},
          {"architecture", architecture},
          {"quantization", quantization},
          {"parameters", parameters},
          {"context_length", context_length},
          {"downloaded_at_unix", downloaded_at_unix}};
}

model_entry model_entry::from_json(const nlohmann::json& j) {
  if (!j.is_object()) return {};
  return {.id = text_or_empty(j, "id"),
          .provider = text_or_empty(j, "provider"),
          .reference = text_or_empty(j, "reference"),
          .file = text_or_empty(j, "file"),
          .local_path = text_or_empty(j, "local_path"),
          .size_bytes = number_or_zero<uint64_t>(j, "size_bytes"),
          .sha256 = text_or_empty(j, "sha256"),
          .architecture = text_or_empty(j, "architecture"),
          .quantization = text_or_empty(j, "quantization"),
          .parameters = number_or_zero<uint64_t>(j, "parameters"),
          .context_length = number_or_zero<uint64_t>(j, "context_length"),
          .downloaded_at_unix = number_or_zero<int64_t>(j, "downloaded_at_unix")};
}

}  // namespace rbee::api
