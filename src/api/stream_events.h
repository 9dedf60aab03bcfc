#pragma once
// The token stream's events (SPEC §3.4), worker -> queen -> client: one JSON object per SSE
// `data:`, its "type" also given as the frame's `event:` name, so a relay tells a token from
// the rest by the name alone and forwards it without parsing. The builders here are the only
// places these shapes are written.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace rbee::api {

enum class event_type { started, narration, token, end, error };

std::string_view to_string(event_type t);
// The type an SSE `event:` name (or a "type" value) names; nullopt for anything else.
std::optional<event_type> parse_event_type(std::string_view name);

// {"type":"started","job_id","model","started_at"[,"prompt_tokens"]}: the prompt's tokens when
// the request was resumable (inference_request::resumable).
nlohmann::json started_event(std::string_view job_id, std::string_view model, int64_t started_at,
                             const std::vector<int32_t>* prompt_tokens = nullptr);

// Where a resumable generation stands after a token event: the ids of the tokens generated
// since the previous token event (text held back emits no event) and the sampler's state after
// the last of them. The worker writes it as the event's SSE `id:` line, "17,4,902;<16 hex
// digits>", so a relay reads it without parsing the event, and the queen's own clients never
// see it.
struct resume_mark {
  std::vector<int32_t> tokens;
  uint64_t rng_state = 0;
};
std::string resume_mark_id(const resume_mark& mark);
// nullopt for anything but what resume_mark_id writes.
std::optional<resume_mark> parse_resume_mark(std::string_view id);
// {"type":"narration","actor","action","human", extra...}: the CLI prints `human` on stderr.
// Extra fields (a progress event's) never override the narration's own.
nlohmann::json narration_event(std::string_view actor, std::string_view action, std::string human,
                               nlohmann::json extra = nlohmann::json::object());
// A token and its log-probability. `bytes` is the token's raw piece, which may be part of a
// UTF-8 character: on the wire "token" is its text (an incomplete or invalid sequence as
// U+FFFD) and "bytes" the exact bytes.
struct token_logprob_entry {
  std::string bytes;
  double logprob = 0;
};
// The sampled token's entry and its most likely alternatives (most likely first).
struct token_logprobs_fields {
  token_logprob_entry sampled;
  std::vector<token_logprob_entry> top;
};
// {"type":"token","t","i","index"}: text `t` released by the i-th token (0-based) of choice
// `index`. With logprobs also {"token","bytes","logprob","top_logprobs":[{"token","bytes",
// "logprob"}]} for that token (then `t` may be "": text held back, see docs/sampling.md).
nlohmann::json token_event(std::string_view text, int64_t index, int64_t choice = 0,
                           const token_logprobs_fields* logprobs = nullptr);

enum class stop_reason { max_tokens, eos, stop_sequence, cancelled };
std::string_view to_string(stop_reason r);

// How one choice of an n > 1 request (or the only one) ended.
struct choice_end {
  int64_t index = 0;
  int64_t tokens_out = 0;
  stop_reason reason = stop_reason::eos;
};

struct end_stats {
  int64_t tokens_in = 0;
  int64_t tokens_cached = 0;  // of tokens_in, those the worker's prefix cache already held
  int64_t tokens_out = 0;
  double prompt_ms = 0;
  double decode_ms = 0;
  double tokens_per_sec = 0;
  stop_reason reason = stop_reason::eos;  // choice 0's
  std::vector<choice_end> choices;        // every choice, by index
};
// {"type":"end","tokens_in","tokens_cached","tokens_out","prompt_ms","decode_ms",
//  "tokens_per_sec","stop_reason","choices":[{"index","tokens_out","stop_reason"}]}: one per
// stream, after every choice ended; tokens_out counts the tokens of all choices, stop_reason
// is choice 0's.
nlohmann::json end_event(const end_stats& stats);
// {"type":"error","code","message"[,"details"]}
nlohmann::json error_event(std::string_view code, std::string_view message,
                           const nlohmann::json& details = nullptr);

}  // namespace rbee::api
