#include "common/errors.h"

#include <utility>

namespace rbee::common {

nlohmann::json error_body(std::string_view code, std::string_view message,
                          const nlohmann::json& details) {
  // SPEC §3: every error carries code, message and details (an empty object when none).
  nlohmann::json error = {{"code", code},
                          {"message", message},
                          {"details", details.is_null() ? nlohmann::json::object() : details}};
  return {{"error", std::move(error)}};
}

http_error::http_error(int status, std::string_view code, std::string message,
                       nlohmann::json details, std::optional<int> retry_after_s)
    : status(status),
      code(code),
      message(std::move(message)),
      details(std::move(details)),
      retry_after_s(retry_after_s),
      what_(std::string(code) + ": " + this->message) {}

http_error invalid_request(std::string_view field, std::string message,
                           nlohmann::json extra_details) {
  nlohmann::json details =
      extra_details.is_object() ? std::move(extra_details) : nlohmann::json::object();
  details["field"] = field;
  return http_error(400, codes::INVALID_REQUEST, std::move(message), std::move(details));
}

http_error bad_request(std::string message, nlohmann::json details) {
  return http_error(400, codes::INVALID_REQUEST, std::move(message), std::move(details));
}

http_error missing_api_key() {
  return http_error(401, codes::MISSING_API_KEY,
                    "missing API key: send 'Authorization: Bearer <token>'");
}

http_error invalid_api_key() {
  return http_error(401, codes::INVALID_API_KEY, "invalid API key");
}

http_error not_found(std::string_view code, std::string message, nlohmann::json details) {
  return http_error(404, code, std::move(message), std::move(details));
}

http_error conflict(std::string_view code, std::string message, nlohmann::json details) {
  return http_error(409, code, std::move(message), std::move(details));
}

http_error unavailable(std::string_view code, std::string message, int retry_after_s,
                       nlohmann::json details) {
  return http_error(503, code, std::move(message), std::move(details), retry_after_s);
}

http_error insufficient_storage(std::string_view code, std::string message,
                                nlohmann::json details) {
  return http_error(507, code, std::move(message), std::move(details));
}

http_error payload_too_large(size_t limit_bytes) {
  return http_error(413, codes::PAYLOAD_TOO_LARGE,
                    "request body exceeds " + std::to_string(limit_bytes) + " bytes",
                    {{"limit_bytes", limit_bytes}});
}

http_error gateway_timeout(std::string_view code, std::string message, nlohmann::json details) {
  return http_error(504, code, std::move(message), std::move(details));
}

http_error internal_error(std::string message, nlohmann::json details) {
  return http_error(500, codes::INTERNAL, std::move(message), std::move(details));
}

int status_for_code(std::string_view code) {
  struct mapping {
    std::string_view code;
    int status;
  };
  static constexpr mapping table[] = {
      {codes::INVALID_REQUEST, 400},
      {codes::CHAT_TEMPLATE_UNKNOWN, 400},
      {codes::MISSING_API_KEY, 401},
      {codes::INVALID_API_KEY, 401},
      {codes::NODE_NOT_FOUND, 404},
      {codes::MODEL_NOT_FOUND, 404},
      {codes::WORKER_NOT_FOUND, 404},
      {codes::NOT_FOUND, 404},
      {codes::METHOD_NOT_ALLOWED, 405},
      {codes::NODE_EXISTS, 409},
      {codes::VERSION_MISMATCH, 409},
      {codes::JOB_EXISTS, 409},
      {codes::MODEL_IN_USE, 409},
      {codes::REQUEST_TIMEOUT, 408},
      {codes::PAYLOAD_TOO_LARGE, 413},
      {codes::INVALID_MODEL, 422},
      {codes::MODEL_CORRUPT, 422},
      {codes::UNSUPPORTED_ARCHITECTURE, 422},
      {codes::UNSUPPORTED_TENSOR_TYPE, 422},
      {codes::TOO_MANY_CONNECTIONS, 429},
      {codes::ALL_SLOTS_BUSY, 503},
      {codes::SERVER_BUSY, 503},
      {codes::QUEUE_FULL, 503},
      {codes::NODE_UNREACHABLE, 503},
      {codes::BACKEND_UNAVAILABLE, 503},
      {codes::LOADING, 503},
      {codes::SHUTTING_DOWN, 503},
      {codes::MODEL_LOAD_FAILED, 503},
      {codes::LOADING_TIMEOUT, 504},
      {codes::INSUFFICIENT_RAM, 507},
      {codes::INSUFFICIENT_VRAM, 507},
      {codes::DISK_FULL, 507},
      {codes::DOWNLOAD_FAILED, 502},
      {codes::INTERNAL, 500},
  };
  for (const auto& m : table) {
    if (m.code == code) return m.status;
  }
  return 500;
}

}  // namespace rbee::common
