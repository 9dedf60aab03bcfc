#include "gguf/tensor_types.h"

#include <cassert>
#include <cstdio>
#include <cstdlib>

namespace rbee::gguf {

namespace {

constexpr type_traits traits_table[] = {
    {"f32", 1, 4},
    {"f16", 1, 2},
    {"q4_0", qk4_0, sizeof(block_q4_0)},
    {"q4_1", qk4_1, sizeof(block_q4_1)},
    {"q5_0", qk5_0, sizeof(block_q5_0)},
    {"q5_1", qk5_1, sizeof(block_q5_1)},
    {"q8_0", qk8_0, sizeof(block_q8_0)},
    {"q8_1", qk8_1, sizeof(block_q8_1)},
    {"q4_k", qk_k, sizeof(block_q4_k)},
    {"q5_k", qk_k, sizeof(block_q5_k)},
    {"q6_k", qk_k, sizeof(block_q6_k)},
    {"q8_k", qk_k, sizeof(block_q8_k)},
    {"bf16", 1, 2},
    {"q2_k", qk_k, sizeof(block_q2_k)},
    {"q3_k", qk_k, sizeof(block_q3_k)},
    {"iq4_nl", qk4_nl, sizeof(block_iq4_nl)},
    {"iq4_xs", qk_k, sizeof(block_iq4_xs)},
};

// Index into traits_table, or -1 for an id we do not support.
int table_index(uint32_t type_id) {
  switch (static_cast<tensor_type>(type_id)) {
    case tensor_type::f32:
      return 0;
    case tensor_type::f16:
      return 1;
    case tensor_type::q4_0:
      return 2;
    case tensor_type::q4_1:
      return 3;
    case tensor_type::q5_0:
      return 4;
    case tensor_type::q5_1:
      return 5;
    case tensor_type::q8_0:
      return 6;
    case tensor_type::q8_1:
      return 7;
    case tensor_type::q4_k:
      return 8;
    case tensor_type::q5_k:
      return 9;
    case tensor_type::q6_k:
      return 10;
    case tensor_type::q8_k:
      return 11;
    case tensor_type::bf16:
      return 12;
    case tensor_type::q2_k:
      return 13;
    case tensor_type::q3_k:
      return 14;
    case tensor_type::iq4_nl:
      return 15;
    case tensor_type::iq4_xs:
      return 16;
  }
  return -1;
}

}  // namespace

std::optional<type_traits> traits_of(uint32_t type_id) {
  const int i = table_index(type_id);
  if (i < 0) return std::nullopt;
  return traits_table[i];
}

type_traits traits_of(tensor_type type) {
  const int i = table_index(static_cast<uint32_t>(type));
  if (i < 0) {
    std::fprintf(stderr, "traits_of: invalid tensor_type %u\n", static_cast<unsigned>(type));
    std::abort();
  }
  return traits_table[i];
}

std::string_view to_string(tensor_type type) {
  return traits_of(type).name;
}

size_t row_size(tensor_type type, int64_t n) {
  const type_traits t = traits_of(type);
  assert(n >= 0 && n % t.block_size == 0 && "row length must be a multiple of the block size");
  return static_cast<size_t>(n / t.block_size) * t.type_size;
}

std::string_view file_type_name(uint32_t file_type) {
  switch (file_type) {
    case 0:
      return "F32";
    case 1:
      return "F16";
    case 2:
      return "Q4_0";
    case 3:
      return "Q4_1";
    case 7:
      return "Q8_0";
    case 8:
      return "Q5_0";
    case 9:
      return "Q5_1";
    case 10:
      return "Q2_K";
    case 11:
      return "Q3_K_S";
    case 12:
      return "Q3_K_M";
    case 13:
      return "Q3_K_L";
    case 14:
      return "Q4_K_S";
    case 15:
      return "Q4_K_M";
    case 16:
      return "Q5_K_S";
    case 17:
      return "Q5_K_M";
    case 18:
      return "Q6_K";
    case 21:
      return "Q2_K_S";
    case 25:
      return "IQ4_NL";
    case 30:
      return "IQ4_XS";
    case 32:
      return "BF16";
    default:
      return {};
  }
}

}  // namespace rbee::gguf
