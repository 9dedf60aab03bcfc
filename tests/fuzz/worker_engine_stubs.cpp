// Stand-ins for the engine functions that src/worker/inference_request.cpp references from
// prompt_tokens(), which needs a loaded model and is never called by spawn_request_fuzz (it
// fuzzes parse_inference_request only). They keep rbee_engine out of the fuzz build:
// clang 14 rejects src/engine/cpu/dispatch.cpp (__builtin_cpu_supports("f16c")).
#include <cstdio>
#include <cstdlib>

#include "engine/engine.h"

namespace rbee::engine {

namespace {
[[noreturn]] void unreachable(const char* what) {
  std::fprintf(stderr, "spawn_request_fuzz: engine stub %s called\n", what);
  std::abort();
}
}  // namespace

std::vector<token_id> tokenize(const model&, std::string_view, bool, bool) {
  unreachable("tokenize");
}
std::string apply_chat_template(const model&, std::span<const chat_message>, bool,
                                std::string_view) {
  unreachable("apply_chat_template");
}
const model_info& model_get_info(const model&) {
  unreachable("model_get_info");
}

}  // namespace rbee::engine
