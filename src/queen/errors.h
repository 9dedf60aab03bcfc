#pragma once
// Errors of the queen's own work (scheduling, hive management, dispatch): an error code of
// SPEC §3, a message for people and structured details. They carry no HTTP status: only the
// HTTP edge (queen/http_edge.h) gives a code its status and writes the one JSON error shape,
// or turns the error into a stream's error event.

#include <exception>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/http_client.h"

namespace rbee::queen {

struct error : std::exception {
  std::string code;  // one of common::codes
  std::string message;
  nlohmann::json details;            // null = no details
  std::optional<int> retry_after_s;  // when trying again later may work

  error(std::string_view code, std::string message, nlohmann::json details = nullptr,
        std::optional<int> retry_after_s = std::nullopt);

  const char* what() const noexcept override { return what_.c_str(); }

 private:
  std::string what_;  // "CODE: message"
};

// A request value the queen cannot use; details.field names it.
error invalid_field(std::string_view field, std::string message,
                    nlohmann::json extra_details = nlohmann::json::object());
// Not possible now; trying again after retry_after_s may work.
error unavailable(std::string_view code, std::string message, int retry_after_s,
                  nlohmann::json details = nullptr);
// A broken expectation about another process's answer, or a failure without a better code.
error internal(std::string message, nlohmann::json details = nullptr);

// The error another rbee process (a hive, a worker) answered with, under its own code.
error error_from_response(const common::http_response& response);

// The error as a task stream's event: {"type":"error","code","message","details"?}.
nlohmann::json error_event(const error& e);

}  // namespace rbee::queen
