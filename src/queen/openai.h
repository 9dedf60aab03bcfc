#pragma once
// OpenAI-compatible edge (POST /v1/chat/completions, POST /v1/completions, GET /v1/models):
// requests are translated into task_requests (openai_request.cpp) and the task's events back
// into OpenAI objects (openai_response.cpp). Pure functions, so the translation is unit-tested
// without a server. docs/openai.md lists what is supported and how.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "queen/openai_tools.h"
#include "queen/tasks.h"

namespace rbee::queen::openai {

enum class endpoint { chat, completion };

// How a chat reply is read back.
enum class reply_kind {
  text,         // content only
  tool_calls,   // content, or calls in the model's own format (tool_choice auto)
  forced_call,  // tool_choice names a function: the reply is its arguments (constrained)
};

struct request {
  task_request task;
  bool stream = false;
  bool include_usage = false;   // stream_options.include_usage
  int n = 1;                    // choices
  std::optional<int> logprobs;  // top alternatives per token; unset = no logprobs
  reply_kind reply = reply_kind::text;
  std::vector<api::tool_definition> tools;  // offered to the model
  std::string forced_tool;                  // reply_kind::forced_call
};

// Validates an OpenAI body: 400 INVALID_REQUEST naming the parameter for a wrong value and for
// any parameter rbee does not support (never a silent ignore).
request parse_request(endpoint kind, const nlohmann::json& body);

// SPEC stop reasons -> OpenAI finish_reason.
std::string finish_reason(std::string_view stop_reason);

// One token's log probability as the worker reports it.
struct token_logprob {
  std::string token;
  std::vector<int> bytes;
  double logprob = 0;
  nlohmann::json top = nlohmann::json::array();  // [{"token", "bytes", "logprob"}]
};

// One choice as it accumulates.
struct choice_state {
  std::string text;
  int completion_tokens = 0;
  std::string finish = "stop";
  std::vector<token_logprob> logprobs;
};

// Accumulates a task's events into the non-streaming response.
struct collector {
  int n = 1;  // choices asked for
  std::map<int, choice_state> choices;
  int prompt_tokens = 0;
  int cached_tokens = 0;  // of prompt_tokens, those the worker's prefix cache held
  bool ended = false;
  nlohmann::json error;  // the task's error event, when it failed

  void on_event(const nlohmann::json& event);
  int completion_tokens() const;
};

// {"prompt_tokens","completion_tokens","total_tokens","prompt_tokens_details":{"cached_tokens"}}
nlohmann::json usage(int prompt_tokens, int completion_tokens, int cached_tokens = 0);

// "rbee-<version>": which build answered (OpenAI's system_fingerprint).
const std::string& system_fingerprint();

struct response_meta {
  endpoint kind = endpoint::chat;
  std::string id;
  std::string model;
  int64_t created = 0;
};

nlohmann::json response(const response_meta& meta, const request& r, const collector& c);

// A choice's reply read as the request asks: all content (reply_kind::text), content and the
// calls in the model's format, or the forced call's arguments.
parsed_reply read_reply(const request& r, const std::string& text);
// OpenAI's tool_calls list; streamed chunks number the calls (index).
nlohmann::json tool_calls_json(const std::vector<api::tool_call>& calls, bool streamed);

// One streaming chunk with one choice; delta fields are set by the caller.
nlohmann::json chunk(const response_meta& meta, int index, const nlohmann::json& delta_or_text,
                     const nlohmann::json& finish_reason);
// The usage chunk: its own chunk with no choices (stream_options.include_usage).
nlohmann::json usage_chunk(const response_meta& meta, int prompt_tokens, int completion_tokens,
                           int cached_tokens = 0);

// Logprobs in each endpoint's shape.
nlohmann::json chat_logprobs(const std::vector<token_logprob>& lps);
nlohmann::json completion_logprobs(const std::vector<token_logprob>& lps);

// The choice an event of the worker is about (its "index", 0 when absent). Worker output is
// not trusted: an index outside [0, n) throws, and the task ends with an error event.
int choice_index(const nlohmann::json& event, int n);

// The end event's per-choice results [{"index", "tokens_out", "stop_reason"}] (one event ends
// every choice; an event without the list ends choice 0).
nlohmann::json ended_choices(const nlohmann::json& end_event);

// The worker's token event fields as a token_logprob; nullopt when it carries none.
std::optional<token_logprob> logprob_of(const nlohmann::json& token_event);

// {"error":{"message","type","code","param"}} for a status and rbee error code.
nlohmann::json error_body(int status, std::string_view code, std::string_view message,
                          const nlohmann::json& param = nullptr);
std::string error_type(int status);

}  // namespace rbee::queen::openai
