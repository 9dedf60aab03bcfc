#include "api/stream_events.h"

#include <array>
#include <limits>
#include <utility>

#include "common/text.h"

namespace rbee::api {

namespace {

constexpr std::array<std::pair<event_type, std::string_view>, 5> event_names = {{
    {event_type::started, "started"},
    {event_type::narration, "narration"},
    {event_type::token, "token"},
    {event_type::end, "end"},
    {event_type::error, "error"},
}};

// The text of raw bytes: valid UTF-8 sequences as they are, every other byte as U+FFFD
// (JSON strings must be valid UTF-8).
std::string lossy_utf8(std::string_view bytes) {
  std::string out;
  size_t i = 0;
  while (i < bytes.size()) {
    const auto b = static_cast<unsigned char>(bytes[i]);
    size_t len = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // the second byte's range (Unicode table 3-7)
    if (b < 0x80) {
      len = 1;
    } else if (b >= 0xC2 && b <= 0xDF) {
      len = 2;
    } else if (b >= 0xE0 && b <= 0xEF) {
      len = 3;
      if (b == 0xE0) lo = 0xA0;
      if (b == 0xED) hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
      len = 4;
      if (b == 0xF0) lo = 0x90;
      if (b == 0xF4) hi = 0x8F;
    }
    bool valid = len > 0 && i + len <= bytes.size();
    for (size_t k = 1; valid && k < len; ++k) {
      const auto c = static_cast<unsigned char>(bytes[i + k]);
      valid = k == 1 ? c >= lo && c <= hi : c >= 0x80 && c <= 0xBF;
    }
    if (valid) {
      out.append(bytes.substr(i, len));
      i += len;
    } else {
      out.append("\xEF\xBF\xBD");
      ++i;
    }
  }
  return out;
}

nlohmann::json logprob_entry_json(const token_logprob_entry& e) {
  nlohmann::json bytes = nlohmann::json::array();
  for (const char c : e.bytes) bytes.push_back(static_cast<unsigned char>(c));
  return {{"token", lossy_utf8(e.bytes)}, {"bytes", std::move(bytes)}, {"logprob", e.logprob}};
}

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

nlohmann::json started_event(std::string_view job_id, std::string_view model, int64_t started_at,
                             const std::vector<int32_t>* prompt_tokens) {
  nlohmann::json e = {{"type", to_string(event_type::started)},
                      {"job_id", job_id},
                      {"model", model},
                      {"started_at", started_at}};
  if (prompt_tokens) e["prompt_tokens"] = *prompt_tokens;
  return e;
}

std::string resume_mark_id(const resume_mark& mark) {
  std::string id;
  for (size_t i = 0; i < mark.tokens.size(); ++i) {
    if (i > 0) id += ',';
    id += std::to_string(mark.tokens[i]);
  }
  return id + ';' + common::hex_u64(mark.rng_state);
}

std::optional<resume_mark> parse_resume_mark(std::string_view id) {
  const size_t semicolon = id.find(';');
  if (semicolon == std::string_view::npos) return std::nullopt;
  resume_mark mark;
  auto state = common::parse_hex_u64(id.substr(semicolon + 1));
  if (!state) return std::nullopt;
  mark.rng_state = *state;
  std::string_view list = id.substr(0, semicolon);
  while (!list.empty()) {
    const size_t comma = list.find(',');
    const std::string_view digits = list.substr(0, comma);
    if (digits.find_first_not_of("0123456789") != std::string_view::npos) return std::nullopt;
    auto token = common::parse_u64(digits);
    if (!token || *token > static_cast<uint64_t>(std::numeric_limits<int32_t>::max())) {
      return std::nullopt;
    }
    mark.tokens.push_back(static_cast<int32_t>(*token));
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
    if (list.empty()) return std::nullopt;  // a trailing comma
  }
  return mark;
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

nlohmann::json token_event(std::string_view text, int64_t index, int64_t choice,
                           const token_logprobs_fields* logprobs) {
  nlohmann::json e = {
      {"type", to_string(event_type::token)}, {"t", text}, {"i", index}, {"index", choice}};
  if (logprobs) {
    e.update(logprob_entry_json(logprobs->sampled));
    nlohmann::json top = nlohmann::json::array();
    for (const auto& alternative : logprobs->top) top.push_back(logprob_entry_json(alternative));
    e["top_logprobs"] = std::move(top);
  }
  return e;
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
  nlohmann::json choices = nlohmann::json::array();
  for (const auto& c : stats.choices) {
    choices.push_back(
        {{"index", c.index}, {"tokens_out", c.tokens_out}, {"stop_reason", to_string(c.reason)}});
  }
  return {{"type", to_string(event_type::end)},
          {"tokens_in", stats.tokens_in},
          {"tokens_cached", stats.tokens_cached},
          {"tokens_out", stats.tokens_out},
          {"prompt_ms", stats.prompt_ms},
          {"decode_ms", stats.decode_ms},
          {"tokens_per_sec", stats.tokens_per_sec},
          {"stop_reason", to_string(stats.reason)},
          {"choices", choices}};
}

nlohmann::json error_event(std::string_view code, std::string_view message,
                           const nlohmann::json& details) {
  nlohmann::json e = {{"type", to_string(event_type::error)}, {"code", code}, {"message", message}};
  if (!details.is_null()) e["details"] = details;
  return e;
}

}  // namespace rbee::api
