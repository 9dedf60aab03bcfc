// libFuzzer target: the POST /v2/tasks body parser of the contract, rbee::api::task_request::
// from_json (src/api/requests.cpp), after common::parse_body as in the queen's route. Input: the
// body. An accepted request is also written as the worker's /v1/inference body and read back
// there, the next hops it takes.
#include <cstddef>
#include <cstdint>

#include "api/requests.h"
#include "common/json.h"
#include "request_fuzz.h"

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size,
                                          unsigned seed) {
  return rbee::fuzz::mutate_json(data, size, max_size, seed, /*prefix=*/0);
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  rbee::fuzz::accept_or_http_error("task_request::from_json", [&] {
    const auto request =
        rbee::api::task_request::from_json(rbee::common::parse_body(rbee::fuzz::text(data, size)));
    const auto forwarded = rbee::api::inference_request::from_json(request.for_worker().to_json());
    if (forwarded.job_id != request.task_id) __builtin_trap();  // a hop changed the request
  });
  return 0;
}
