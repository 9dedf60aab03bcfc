#pragma once
// Narration (SPEC §2.6): every phase of a task is told to the client as an SSE event
// {"type":"narration","actor","action","human",...}; the CLI prints `human` on stderr.

#include <functional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace rbee::queen {

using event_fn = std::function<void(const nlohmann::json& event)>;

inline nlohmann::json narration(std::string_view actor, std::string_view action, std::string human,
                                nlohmann::json extra = nlohmann::json::object()) {
  // Extra fields (e.g. a progress event's) never override the narration's own.
  nlohmann::json e = extra.is_object() ? std::move(extra) : nlohmann::json::object();
  e["type"] = "narration";
  e["actor"] = actor;
  e["action"] = action;
  e["human"] = std::move(human);
  return e;
}

}  // namespace rbee::queen
