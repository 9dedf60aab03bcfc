#pragma once
// OpenAI-compatible edge (POST /v1/chat/completions, POST /v1/completions, GET /v1/models):
// requests are translated into task_requests and the task's events back into OpenAI objects.
// Pure functions, so the translation is unit-tested without a server.

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "queen/tasks.h"

namespace rbee::queen::openai {

enum class endpoint { chat, completion };

struct request {
  task_request task;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
};

// Validates an OpenAI body (400 INVALID_REQUEST naming the field; n must be 1).
request parse_request(endpoint kind, const nlohmann::json& body);

// SPEC stop reasons -> OpenAI finish_reason.
std::string finish_reason(std::string_view stop_reason);

// Accumulates a task's events into the non-streaming response.
struct collector {
  std::string text;
  int prompt_tokens = 0;
  int completion_tokens = 0;
  std::string finish = "stop";
  bool ended = false;
  nlohmann::json error;  // the task's error event, when it failed

  void on_event(const nlohmann::json& event);
};

nlohmann::json usage(int prompt_tokens, int completion_tokens);

nlohmann::json response(endpoint kind, const std::string& id, const std::string& model,
                        int64_t created, const collector& c);
// One streaming chunk; content and finish_reason may be empty/null.
nlohmann::json chunk(endpoint kind, const std::string& id, const std::string& model,
                     int64_t created, const std::string& content,
                     const nlohmann::json& finish_reason, bool first);

// {"error":{"message","type","code","param"}} for a status and rbee error code.
nlohmann::json error_body(int status, std::string_view code, std::string_view message,
                          const nlohmann::json& param = nullptr);
std::string error_type(int status);

}  // namespace rbee::queen::openai
