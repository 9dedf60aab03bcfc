#include "queen/errors.h"

#include <utility>

#include "common/errors.h"

namespace rbee::queen {

error::error(std::string_view code, std::string message, nlohmann::json details,
             std::optional<int> retry_after_s)
    : code(code),
      message(std::move(message)),
      details(std::move(details)),
      retry_after_s(retry_after_s),
      what_(std::string(code) + ": " + this->message) {}

error invalid_field(std::string_view field, std::string message, nlohmann::json extra_details) {
  nlohmann::json details =
      extra_details.is_object() ? std::move(extra_details) : nlohmann::json::object();
  details["field"] = field;
  return error(common::codes::INVALID_REQUEST, std::move(message), std::move(details));
}

error unavailable(std::string_view code, std::string message, int retry_after_s,
                  nlohmann::json details) {
  return error(code, std::move(message), std::move(details), retry_after_s);
}

error internal(std::string message, nlohmann::json details) {
  return error(common::codes::INTERNAL, std::move(message), std::move(details));
}

error error_from_response(const common::http_response& response) {
  auto e = response.to_http_error();
  return error(e.code, e.message, e.details, e.retry_after_s);
}

nlohmann::json error_event(const error& e) {
  nlohmann::json ev = {{"type", "error"}, {"code", e.code}, {"message", e.message}};
  if (!e.details.is_null()) ev["details"] = e.details;
  return ev;
}

}  // namespace rbee::queen
