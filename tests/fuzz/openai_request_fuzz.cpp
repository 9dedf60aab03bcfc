// libFuzzer target: the queen's OpenAI request translation, rbee::queen::openai::parse_request
// (src/queen/openai.cpp), after common::parse_body as in the routes; it validates the body
// and ends in api::task_request::from_json.
// Input: byte 0 picks the endpoint (odd, e.g. 'c': /v1/chat/completions; even, e.g. 'p':
// /v1/completions), the rest is the body.
#include <cstddef>
#include <cstdint>

#include "common/json.h"
#include "queen/openai.h"
#include "request_fuzz.h"

namespace openai = rbee::queen::openai;

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size,
                                          unsigned seed) {
  return rbee::fuzz::mutate_json(data, size, max_size, seed, /*prefix=*/1);
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const openai::endpoint kind =
      (data[0] & 1) ? openai::endpoint::chat : openai::endpoint::completion;
  rbee::fuzz::accept_or_http_error("openai::parse_request", [&] {
    const auto body = rbee::common::parse_body(rbee::fuzz::text(data + 1, size - 1));
    static_cast<void>(openai::parse_request(kind, body));
  });
  return 0;
}
