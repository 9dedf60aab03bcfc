#pragma once
// The one error shape of every rbee HTTP API (SPEC §3):
//   status + {"error":{"code":"UPPER_SNAKE","message":"human text","details":{...}}}
// Handlers throw http_error; http_server turns it into that response.

#include <exception>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace rbee::common {

// Error codes of SPEC §3 (plain strings: they travel in JSON and across processes).
namespace codes {
inline constexpr std::string_view INVALID_REQUEST = "INVALID_REQUEST";
inline constexpr std::string_view MISSING_API_KEY = "MISSING_API_KEY";
inline constexpr std::string_view INVALID_API_KEY = "INVALID_API_KEY";
inline constexpr std::string_view NODE_NOT_FOUND = "NODE_NOT_FOUND";
inline constexpr std::string_view MODEL_NOT_FOUND = "MODEL_NOT_FOUND";
inline constexpr std::string_view WORKER_NOT_FOUND = "WORKER_NOT_FOUND";
inline constexpr std::string_view NOT_FOUND = "NOT_FOUND";
inline constexpr std::string_view NODE_EXISTS = "NODE_EXISTS";
inline constexpr std::string_view ALL_SLOTS_BUSY = "ALL_SLOTS_BUSY";
inline constexpr std::string_view QUEUE_FULL = "QUEUE_FULL";
inline constexpr std::string_view NODE_UNREACHABLE = "NODE_UNREACHABLE";
inline constexpr std::string_view INSUFFICIENT_RAM = "INSUFFICIENT_RAM";
inline constexpr std::string_view INSUFFICIENT_VRAM = "INSUFFICIENT_VRAM";
inline constexpr std::string_view DISK_FULL = "DISK_FULL";
inline constexpr std::string_view VERSION_MISMATCH = "VERSION_MISMATCH";
// `rbee setup install`: the node's OS, CPU or kernel cannot run the binaries this queen has.
inline constexpr std::string_view UNSUPPORTED_PLATFORM = "UNSUPPORTED_PLATFORM";
inline constexpr std::string_view LOADING_TIMEOUT = "LOADING_TIMEOUT";
inline constexpr std::string_view INTERNAL = "INTERNAL";
inline constexpr std::string_view BACKEND_UNAVAILABLE = "BACKEND_UNAVAILABLE";
inline constexpr std::string_view DOWNLOAD_FAILED = "DOWNLOAD_FAILED";
inline constexpr std::string_view PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE";
inline constexpr std::string_view METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED";
// Worker: requests it cannot serve now, and why its model failed to load.
inline constexpr std::string_view CHAT_TEMPLATE_UNKNOWN = "CHAT_TEMPLATE_UNKNOWN";
inline constexpr std::string_view JOB_EXISTS = "JOB_EXISTS";
inline constexpr std::string_view LOADING = "LOADING";
inline constexpr std::string_view SHUTTING_DOWN = "SHUTTING_DOWN";
inline constexpr std::string_view MODEL_LOAD_FAILED = "MODEL_LOAD_FAILED";
inline constexpr std::string_view MODEL_CORRUPT = "MODEL_CORRUPT";
inline constexpr std::string_view UNSUPPORTED_ARCHITECTURE = "UNSUPPORTED_ARCHITECTURE";
inline constexpr std::string_view UNSUPPORTED_TENSOR_TYPE = "UNSUPPORTED_TENSOR_TYPE";
// Hive: a model file it will not serve, or one it may not delete.
inline constexpr std::string_view INVALID_MODEL = "INVALID_MODEL";
inline constexpr std::string_view MODEL_IN_USE = "MODEL_IN_USE";
inline constexpr std::string_view REQUEST_TIMEOUT = "REQUEST_TIMEOUT";            // 408
inline constexpr std::string_view TOO_MANY_CONNECTIONS = "TOO_MANY_CONNECTIONS";  // 429
inline constexpr std::string_view SERVER_BUSY = "SERVER_BUSY";                    // 503
}  // namespace codes

// {"error":{"code":...,"message":...,"details":...}}; details is omitted when null.
nlohmann::json error_body(std::string_view code, std::string_view message,
                          const nlohmann::json& details = nullptr);

struct http_error : std::exception {
  int status = 500;
  std::string code;
  std::string message;
  nlohmann::json details;            // null = no details
  std::optional<int> retry_after_s;  // sent as Retry-After (503s)

  http_error(int status, std::string_view code, std::string message,
             nlohmann::json details = nullptr, std::optional<int> retry_after_s = std::nullopt);

  const char* what() const noexcept override { return what_.c_str(); }
  nlohmann::json body() const { return error_body(code, message, details); }

 private:
  std::string what_;  // "CODE: message"
};

// Factories for the common cases; the code decides the status where the SPEC fixes it.
http_error invalid_request(std::string_view field, std::string message,
                           nlohmann::json extra_details = nlohmann::json::object());
http_error bad_request(std::string message, nlohmann::json details = nullptr);  // 400, no field
http_error missing_api_key();                                                   // 401
http_error invalid_api_key();                                                   // 401
http_error not_found(std::string_view code, std::string message,
                     nlohmann::json details = nullptr);  // 404
http_error conflict(std::string_view code, std::string message,
                    nlohmann::json details = nullptr);  // 409
http_error unavailable(std::string_view code, std::string message, int retry_after_s,
                       nlohmann::json details = nullptr);  // 503 + Retry-After
http_error insufficient_storage(std::string_view code, std::string message,
                                nlohmann::json details = nullptr);  // 507
http_error payload_too_large(size_t limit_bytes);                   // 413
http_error gateway_timeout(std::string_view code, std::string message,
                           nlohmann::json details = nullptr);                      // 504
http_error internal_error(std::string message, nlohmann::json details = nullptr);  // 500

// Status the SPEC gives a code (e.g. QUEUE_FULL -> 503); 500 for unknown codes.
int status_for_code(std::string_view code);

}  // namespace rbee::common
