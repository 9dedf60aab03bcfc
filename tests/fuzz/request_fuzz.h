#pragma once
// Shared by the request-parser fuzz targets (task_request, openai_request, spawn_request).
// The input is an HTTP request body, read as the routes read it: common::parse_body, then the
// parser under test. Either accepts it or throws common::http_error (a 4xx the server sends);
// any other exception escaping, e.g. a nlohmann::json::type_error from get<>()/value() on the
// wrong type, would reach the client as 500 INTERNAL and is reported as a finding, like a
// crash or a sanitizer report.

#include <cxxabi.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <random>
#include <string>
#include <string_view>
#include <typeinfo>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/errors.h"

// libFuzzer's own mutations (bytes, dictionary, cross-over), for the custom mutator below.
extern "C" size_t LLVMFuzzerMutate(uint8_t* data, size_t size, size_t max_size);

namespace rbee::fuzz {

inline std::string_view text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Runs parse(); an http_error is the expected rejection and is rendered the way http_server
// sends it. Anything else escaping is a finding: named on stderr, then abort(). (For where it
// was thrown: gdb -batch -ex 'catch throw' -ex run -ex bt --args <target> <crash file>.)
template <typename F>
void accept_or_http_error(const char* parser, F&& parse) {
  try {
    parse();
  } catch (const common::http_error& e) {
    static_cast<void>(e.body().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  } catch (const std::exception& e) {
    char* type = abi::__cxa_demangle(typeid(e).name(), nullptr, nullptr, nullptr);
    std::fprintf(stderr, "%s: %s escaped (the server would answer 500): %s\n", parser,
                 type ? type : typeid(e).name(), e.what());
    std::abort();
  }
}

// Structure-aware mutation, for LLVMFuzzerCustomMutator: byte mutations rarely turn a valid
// body into one with a value of another type in the right place (the get<>()/value() type
// errors this is after). Half the time, when the input after `prefix` (a selector byte) is
// JSON, one value in it is replaced by an edge value or another type, or an object gets a
// field added or removed; otherwise, and for non-JSON input, libFuzzer's own mutations run.
inline size_t mutate_json(uint8_t* data, size_t size, size_t max_size, unsigned seed,
                          size_t prefix) {
  using nlohmann::json;
  std::minstd_rand rng(seed);
  if (size > prefix && rng() % 2 == 0) {
    json doc = json::parse(text(data + prefix, size - prefix), nullptr, false);
    if (!doc.is_discarded()) {
      static const std::vector<json> edges = {nullptr,
                                              true,
                                              false,
                                              0,
                                              -1,
                                              1,
                                              2,
                                              3.0,
                                              0.5,
                                              -0.0,
                                              1e308,
                                              -1e308,
                                              1e-320,
                                              std::numeric_limits<int64_t>::max(),
                                              std::numeric_limits<int64_t>::min(),
                                              std::numeric_limits<uint64_t>::max(),
                                              int64_t{1} << 31,
                                              int64_t{1} << 32,
                                              "",
                                              "x",
                                              "text",
                                              "user",
                                              "system",
                                              "cuda",
                                              std::string(600, 'a'),
                                              "hf:o/r:f.gguf",
                                              "file:/m.gguf",
                                              "../x.gguf",
                                              json::array(),
                                              json::array({""}),
                                              json::array({1}),
                                              json::object(),
                                              json::object({{"type", "text"}, {"text", "t"}}),
                                              json::object({{"role", "user"}, {"content", "c"}})};
      static const char* const fields[] = {"model",
                                           "prompt",
                                           "messages",
                                           "role",
                                           "content",
                                           "type",
                                           "text",
                                           "node",
                                           "chat_template",
                                           "max_tokens",
                                           "max_completion_tokens",
                                           "temperature",
                                           "top_p",
                                           "top_k",
                                           "min_p",
                                           "repeat_penalty",
                                           "seed",
                                           "stop",
                                           "backend",
                                           "device",
                                           "n",
                                           "stream",
                                           "stream_options",
                                           "include_usage",
                                           "frequency_penalty",
                                           "model_ref",
                                           "slots",
                                           "ctx",
                                           "job_id"};
      std::vector<json*> nodes;
      std::vector<json*> stack = {&doc};
      while (!stack.empty()) {
        json* v = stack.back();
        stack.pop_back();
        nodes.push_back(v);
        if (v->is_structured()) {
          for (auto& child : *v) stack.push_back(&child);
        }
      }
      json& target = *nodes[rng() % nodes.size()];
      const json& edge = edges[rng() % edges.size()];
      const char* field = fields[rng() % std::size(fields)];
      switch (rng() % 4) {
        case 0:
        case 1:
          target = edge;
          break;
        case 2:
          if (target.is_object()) {
            target[field] = edge;
          } else {
            target = json::array({target});
          }
          break;
        default:
          if (target.is_object() && !target.empty()) {
            target.erase(target.begin());
          } else if (target.is_array() && !target.empty()) {
            target.push_back(target.front());
          } else {
            target = edge;
          }
          break;
      }
      const std::string out = doc.dump(-1, ' ', false, json::error_handler_t::replace);
      if (prefix + out.size() <= max_size) {
        std::memcpy(data + prefix, out.data(), out.size());
        return prefix + out.size();
      }
    }
  }
  return LLVMFuzzerMutate(data, size, max_size);
}

}  // namespace rbee::fuzz
