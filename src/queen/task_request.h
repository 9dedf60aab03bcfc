#pragma once
// A task as the queen runs it (POST /v2/tasks, or translated from the OpenAI routes), and the
// sinks a running task reports to: the dispatch, the relay and the edge share them.

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/requests.h"

namespace rbee::queen {

// A task as the contract defines it (api/requests.h): validated once, by its from_json where
// it enters; the worker's request is its for_worker().
using task_request = api::task_request;

// Returns false when the consumer is gone (the task is then cancelled).
using task_sink = std::function<bool(const nlohmann::json& event)>;
// Takes the worker's token events as the worker wrote them (compact JSON text), for relays
// that forward them unchanged: no parse and re-serialisation per token.
using token_text_sink = std::function<bool(std::string_view event_json)>;
// Whether the consumer is still there, asked while nothing is sent (queued, a silent worker):
// a consumer that left cancels the task without waiting for the next event.
using consumer_probe = std::function<bool()>;

}  // namespace rbee::queen
