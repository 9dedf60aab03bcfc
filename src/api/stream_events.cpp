#include "api/stream_events.h"

#include <array>
#include <utility>

namespace rbee::api {

namespace {

constexpr std::array<std::pair<event_type, std::string_view>, 5> event_names = {{
    {event_type::started, "started"},
    {event_type::narration, "narration"},
    {event_type::token, "token"},
    {event_type::end, "end"},
    {event_type::error, "error"},
}};

}  // namespace

std::string_view to_string(event_type t) {
  for (const auto& [type, name] : event_names) {
    if (type == t) return name;
  }
  return "error";
}

std::optional<event_type> parse_event_type(std::string_view name) {
  for (const auto& [type, known] : event_names) {
    if (known == name) return type;
  }
  return std::nullopt;
}

nlohmann::json started_event(std::string_view job_id, std::string_view model, int64_t started_at) {
  return {{"type", to_string(event_type::started)},
          {"job_id", job_id},
          {"model", model},
          {"started_at", started_at}};
}

nlohmann::json narration_event(std::string_view actor, std::string_view action, std::string human,
                               nlohmann::json extra) {
  nlohmann::json e = extra.is_object() ? std::move(extra) : nlohmann::json::object();
  e["type"] = to_string(event_type::narration);
  e["actor"] = actor;
  e["action"] = action;
  e["human"] = std::move(human);
  return e;
}

nlohmann::json token_event(std::string_view text, int64_t index) {
  return {{"type", to_string(event_type::token)}, {"t", text}, {"i", index}};
}

std::string_view to_string(stop_reason r) {
  switch (r) {
    case stop_reason::max_tokens:
      return "max_tokens";
    case stop_reason::eos:
      return "eos";
    case stop_reason::stop_sequence:
      return "stop_sequence";
    case stop_reason::cancelled:
      return "cancelled";
  }
  return "eos";
}

nlohmann::json end_event(const end_stats& stats) {
  return {{"type", to_string(event_type::end)},    {"tokens_in", stats.tokens_in},
          {"tokens_out", stats.tokens_out},        {"prompt_ms", stats.prompt_ms},
          {"decode_ms", stats.decode_ms},          {"tokens_per_sec", stats.tokens_per_sec},
          {"stop_reason", to_string(stats.reason)}};
}

nlohmann::json error_event(std::string_view code, std::string_view message,
                           const nlohmann::json& details) {
  nlohmann::json e = {{"type", to_string(event_type::error)}, {"code", code}, {"message", message}};
  if (!details.is_null()) e["details"] = details;
  return e;
}

}  // namespace rbee::api
