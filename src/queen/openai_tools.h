#pragma once
// Tool calls in a model's reply. Models write calls as text in their family's format; the
// OpenAI edge reads them back into message.tool_calls (and streamed delta.tool_calls):
//   Qwen / Hermes:   <tool_call>{"name": "f", "arguments": {...}}</tool_call>  (one per call)
//   Mistral:         [TOOL_CALLS][{"name": "f", "arguments": {...}}, ...]
//   Llama 3.x:       <|python_tag|>? {"name": "f", "parameters": {...}}  (calls joined by ';')
//   generic:         the whole reply is {"name", "arguments"}, a list of those, or
//                    {"tool_calls": [...]}  (what constrained tool_choice makes the model write)
// A call naming a function the request did not offer is not a call: it stays text.

#include <string>
#include <string_view>
#include <vector>

#include "api/requests.h"

namespace rbee::queen::openai {

struct parsed_reply {
  std::string content;  // the text outside the calls
  std::vector<api::tool_call> calls;
};

// Reads a whole reply. Calls get fresh ids ("call_<random>").
parsed_reply parse_tool_calls(std::string_view text,
                              const std::vector<api::tool_definition>& tools);

// The streamed form: text is passed on as soon as it cannot be the start of a call; once a
// call may have begun, the rest is held and read at the end.
class reply_stream {
 public:
  explicit reply_stream(const std::vector<api::tool_definition>& tools) : tools_(tools) {}

  // Text that is safe to send as content now (may be empty).
  std::string push(std::string_view piece);
  // The held text, read for calls: its content part and the calls.
  parsed_reply finish();

 private:
  const std::vector<api::tool_definition>& tools_;
  std::string pending_;  // not yet sent
  bool sent_any_ = false;
  bool holding_ = false;  // a call may have begun: hold everything to the end
};

}  // namespace rbee::queen::openai
