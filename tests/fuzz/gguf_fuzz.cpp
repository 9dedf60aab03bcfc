// libFuzzer target: any byte string either parses or raises gguf::format_error; a crash,
// sanitizer report, hang or huge allocation is a bug.
#include <cstddef>
#include <cstdint>

#include "gguf/gguf.h"

namespace gguf = rbee::gguf;

namespace {

// Reads what a model loader reads, so an entry or tensor the parser accepted but left
// inconsistent shows up under the sanitizers.
void touch(const gguf::file& f) {
  for (const gguf::metadata_entry& e : f.metadata()) {
    try {
      f.get_string(e.key);
    } catch (const gguf::format_error&) {
      // Type mismatches are expected here; the lookup itself must not misbehave.
    }
    try {
      f.get_uint(e.key);
      f.get_int(e.key);
    } catch (const gguf::format_error&) {
      // As above: other types and out-of-range integers.
    }
    if (e.type == gguf::value_type::array) static_cast<void>(f.get_array(e.key)->size());
  }
  volatile uint8_t sink = 0;
  for (const gguf::tensor_info& t : f.tensors()) {
    sink = sink ^ t.data[0] ^ t.data[t.n_bytes - 1];
    if (f.find_tensor(t.name) == nullptr) __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    touch(gguf::file::parse({data, size}));
  } catch (const gguf::format_error&) {
    // Rejected input: the expected outcome for most mutations.
  }
  return 0;
}
