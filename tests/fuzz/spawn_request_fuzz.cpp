// libFuzzer target: the parsing behind a worker spawn. The hive's POST /v1/workers/spawn reads
// its body inline, in the route's lambda (src/hive/hive_app.cpp, s.post("/v1/workers/spawn")):
// this target repeats those field reads and fuzzes the standalone parser they run,
// rbee::api::parse_model_ref (src/api/model_ref.cpp), plus the spawned worker's
// POST /v1/inference body parser, rbee::worker::parse_inference_request
// (src/worker/inference_request.cpp).
// Input: byte 0 picks the parser by its value mod 3, the rest is its input:
//   0 ('r'): a model reference, raw bytes -> api::parse_model_ref
//   1 ('s'): a spawn body -> parse_body, the route's field reads, api::parse_model_ref on model_ref
//   2 ('w'): a worker inference body -> parse_body, parse_inference_request
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "api/model_ref.h"
#include "common/json.h"
#include "request_fuzz.h"
#include "worker/inference_request.h"

namespace {

using rbee::api::model_ref;
using rbee::api::ref_kind;

constexpr int worker_n_ctx = 4096;  // the worker's context, bounding max_tokens

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "spawn_request_fuzz: invariant broken: %s\n", what);
    std::abort();
  }
}

bool has_dotdot(const std::filesystem::path& p) {
  for (const auto& part : p) {
    if (part == "..") return true;
  }
  return false;
}

// What the hive relies on in an accepted reference: hub files stay under models/, local
// paths are absolute, and the canonical form (the catalog key) parses back to itself.
void check_ref(const api::model_ref& ref) {
  if (ref.kind == api::ref_kind::hf_file) {
    const std::filesystem::path p = ref.relative_store_path();
    check(p.is_relative() && !has_dotdot(p), "hub store path stays below models/");
  }
  if (ref.kind == api::ref_kind::local_file) {
    check(ref.path.is_absolute() && !has_dotdot(ref.path), "file: path is absolute, no '..'");
  }
  const std::string canonical = ref.canonical();
  check(rbee::api::parse_model_ref(canonical).canonical() == canonical,
        "canonical() parses back to itself");
}

// The field reads of the "/v1/workers/spawn" route, in its order and with its limits.
void spawn_body(const rbee::common::json& body) {
  namespace common = rbee::common;
  const std::string ref_text = common::require_string(body, "model_ref", 1024);
  check_ref(rbee::api::parse_model_ref(ref_text));
  static_cast<void>(common::string_or(body, "backend", "cpu", 32));
  static_cast<void>(common::int_in_range(body, "device", 0, 0, 1024));
  static_cast<void>(common::int_in_range(body, "slots", 1, 1, 256));
  static_cast<void>(common::int_in_range(body, "ctx", 0, 0, 1 << 22));
}

}  // namespace

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size,
                                          unsigned seed) {
  return rbee::fuzz::mutate_json(data, size, max_size, seed, /*prefix=*/1);
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view rest = rbee::fuzz::text(data + 1, size - 1);
  switch (data[0] % 3) {
    case 0:
      rbee::fuzz::accept_or_http_error("api::parse_model_ref",
                                       [&] { check_ref(rbee::api::parse_model_ref(rest)); });
      break;
    case 1:
      rbee::fuzz::accept_or_http_error("spawn body",
                                       [&] { spawn_body(rbee::common::parse_body(rest)); });
      break;
    default:
      rbee::fuzz::accept_or_http_error("parse_inference_request", [&] {
        const auto body = rbee::common::parse_body(rest);
        static_cast<void>(rbee::worker::parse_inference_request(body, worker_n_ctx));
      });
      break;
  }
  return 0;
}
