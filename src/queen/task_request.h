#pragma once
// A task as the queen receives it (POST /v2/tasks, or translated from the OpenAI routes),
// checked once where it enters, and what the worker gets of it. The sinks a running task
// reports to are declared here too: the dispatch, the relay and the edge share them.

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/sampling.h"

namespace rbee::queen {

struct task_request {
  std::string task_id;
  std::optional<std::string> node;
  std::string model;
  std::string prompt;                          // "" when messages are given
  nlohmann::json messages = nlohmann::json();  // null, or [{role, content}, ...]
  std::string chat_template;  // template family override for messages; "" = the model's
  int max_tokens = 256;
  api::sampling_options sampling;
  std::vector<std::string> stop;
  std::string backend;  // "" = any
  std::string device;   // "" = any
};

// Validates a /v2/tasks body (400 INVALID_REQUEST naming the field) and assigns a task id.
task_request parse_task_request(const nlohmann::json& body);
// The worker's POST /v1/inference body. Chat messages are sent as `messages`: the worker
// renders them with the model's chat template (ChatML when the model has none).
nlohmann::json worker_inference_body(const task_request& request);

// Returns false when the consumer is gone (the task is then cancelled).
using task_sink = std::function<bool(const nlohmann::json& event)>;
// Takes the worker's token events as the worker wrote them (compact JSON text), for relays
// that forward them unchanged: no parse and re-serialisation per token.
using token_text_sink = std::function<bool(std::string_view event_json)>;
// Whether the consumer is still there, asked while nothing is sent (queued, a silent worker):
// a consumer that left cancels the task without waiting for the next event.
using consumer_probe = std::function<bool()>;

}  // namespace rbee::queen
