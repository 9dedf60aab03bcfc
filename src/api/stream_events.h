#pragma once
// The token stream's events (SPEC §3.4), worker -> queen -> client: one JSON object per SSE
// `data:`, its "type" also given as the frame's `event:` name, so a relay tells a token from
// the rest by the name alone and forwards it without parsing. The builders here are the only
// places these shapes are written.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace rbee::api {

enum class event_type { started, narration, token, end, error };

std::string_view to_string(event_type t);
// The type an SSE `event:` name (or a "type" value) names; nullopt for anything else.
std::optional<event_type> parse_event_type(std::string_view name);

// {"type":"started","job_id","model","started_at"}
nlohmann::json started_event(std::string_view job_id, std::string_view model, int64_t started_at);
// {"type":"narration","actor","action","human", extra...}: the CLI prints `human` on stderr.
// Extra fields (a progress event's) never override the narration's own.
nlohmann::json narration_event(std::string_view actor, std::string_view action, std::string human,
                               nlohmann::json extra = nlohmann::json::object());
// {"type":"token","t","i"}
nlohmann::json token_event(std::string_view text, int64_t index);

enum class stop_reason { max_tokens, eos, stop_sequence, cancelled };
std::string_view to_string(stop_reason r);

struct end_stats {
  int64_t tokens_in = 0;
  int64_t tokens_out = 0;
  double prompt_ms = 0;
  double decode_ms = 0;
  double tokens_per_sec = 0;
  stop_reason reason = stop_reason::eos;
};
// {"type":"end","tokens_in","tokens_out","prompt_ms","decode_ms","tokens_per_sec","stop_reason"}
nlohmann::json end_event(const end_stats& stats);
// {"type":"error","code","message"[,"details"]}
nlohmann::json error_event(std::string_view code, std::string_view message,
                           const nlohmann::json& details = nullptr);

}  // namespace rbee::api
