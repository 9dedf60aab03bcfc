#include "engine/cpu/dispatch.h"

#include <array>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace rbee::engine::cpu {

namespace {

isa detect() {
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("f16c");
  if (!avx2) return isa::scalar;
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                      __builtin_cpu_supports("avx512vnni");
  return avx512 ? isa::avx512 : isa::avx2;
}

// RBEE_CPU_ISA=scalar|avx2|avx512: caps the instruction set the kernels use (for comparing
// levels and for working around a misbehaving CPU); unknown values are ignored with a warning.
isa initial_isa() {
  const isa best = detect();
  const char* env = std::getenv("RBEE_CPU_ISA");
  if (!env || !*env) return best;
  const std::string_view v(env);
  isa want = best;
  if (v == "scalar") {
    want = isa::scalar;
  } else if (v == "avx2") {
    want = isa::avx2;
  } else if (v == "avx512") {
    want = isa::avx512;
  } else {
    std::fprintf(stderr, "RBEE_CPU_ISA=%s is not scalar|avx2|avx512; using %s\n", env,
                 std::string(to_string(best)).c_str());
  }
  return want < best ? want : best;
}

std::atomic<isa>& active() {
  static std::atomic<isa> level{initial_isa()};
  return level;
}

// Only the levels this CPU runs are filled: the fill functions are compiled with their level's
// instruction set, so even filling a higher level's table may use instructions it lacks.
struct tables {
  std::array<kernel_table, 3> by_level;
  tables() {
    fill_scalar_kernels(by_level[0]);
    if (detected_isa() < isa::avx2) return;
    by_level[1] = by_level[0];
    fill_avx2_kernels(by_level[1]);
    if (detected_isa() < isa::avx512) return;
    by_level[2] = by_level[1];
    fill_avx512_kernels(by_level[2]);
  }
};

}  // namespace

std::string_view to_string(isa level) {
  switch (level) {
    case isa::scalar:
      return "scalar";
    case isa::avx2:
      return "avx2";
    case isa::avx512:
      return "avx512";
  }
  return "?";
}

isa detected_isa() {
  static const isa level = detect();
  return level;
}

isa active_isa() {
  return active().load(std::memory_order_relaxed);
}

isa set_active_isa(isa level) {
  if (level > detected_isa()) level = detected_isa();
  return active().exchange(level);
}

const kernel_table& kernels_for(isa level) {
  static const tables t;
  if (level > detected_isa()) {
    std::fprintf(stderr, "kernels_for: %s is not supported by this CPU\n",
                 std::string(to_string(level)).c_str());
    std::abort();
  }
  return t.by_level[static_cast<int>(level)];
}

act_format act_format_of(tensor_type t) {
  switch (t) {
    case tensor_type::q4_0:
    case tensor_type::q4_1:
    case tensor_type::q5_0:
    case tensor_type::q5_1:
    case tensor_type::q8_0:
    case tensor_type::iq4_nl:
      return act_format::q8_32;
    case tensor_type::q2_k:
    case tensor_type::q3_k:
    case tensor_type::q4_k:
    case tensor_type::q5_k:
    case tensor_type::q6_k:
    case tensor_type::iq4_xs:
      return act_format::q8_k;
    default:
      return act_format::f32;
  }
}

size_t act_row_bytes(act_format f, int64_t n) {
  size_t bytes = 0;
  switch (f) {
    case act_format::f32:
      bytes = n * sizeof(float);
      break;
    case act_format::q8_32:
      bytes = n + (n / 32) * 8 + 64;  // + room to pad to whole block pairs
      break;
    case act_format::q8_k:
      bytes = n + (n / qk_k) * 4 + (n / 16) * 2;
      break;
  }
  return (bytes + 63) / 64 * 64;
}

int weight_slot_of(tensor_type t) {
  switch (t) {
    case tensor_type::f32:
      return slot_f32;
    case tensor_type::f16:
      return slot_f16;
    case tensor_type::bf16:
      return slot_bf16;
    case tensor_type::q4_0:
      return slot_q4_0;
    case tensor_type::q4_1:
      return slot_q4_1;
    case tensor_type::q5_0:
      return slot_q5_0;
    case tensor_type::q5_1:
      return slot_q5_1;
    case tensor_type::q8_0:
      return slot_q8_0;
    case tensor_type::q4_k:
      return slot_q4_k;
    case tensor_type::q5_k:
      return slot_q5_k;
    case tensor_type::q6_k:
      return slot_q6_k;
    case tensor_type::q2_k:
      return slot_q2_k;
    case tensor_type::q3_k:
      return slot_q3_k;
    case tensor_type::iq4_nl:
      return slot_iq4_nl;
    case tensor_type::iq4_xs:
      return slot_iq4_xs;
    default:
      return -1;
  }
}

}  // namespace rbee::engine::cpu
