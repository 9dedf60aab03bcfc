// libFuzzer target: the queen's POST /v2/tasks body parser, rbee::queen::parse_task_request
// (src/queen/tasks.cpp), after common::parse_body as in the route. Input: the body. An accepted
// request is also turned into the worker's /v1/inference body (rbee::queen::worker_inference_body),
// the queen's next step with it.
#include <cstddef>
#include <cstdint>

#include "common/json.h"
#include "queen/tasks.h"
#include "request_fuzz.h"

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size,
                                          unsigned seed) {
  return rbee::fuzz::mutate_json(data, size, max_size, seed, /*prefix=*/0);
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  rbee::fuzz::accept_or_http_error("parse_task_request", [&] {
    const rbee::queen::task_request request =
        rbee::queen::parse_task_request(rbee::common::parse_body(rbee::fuzz::text(data, size)));
    static_cast<void>(rbee::queen::worker_inference_body(request));
  });
  return 0;
}
