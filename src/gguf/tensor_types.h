#pragma once
// Tensor element types and their packed block layouts, byte-exact to GGUF/ggml so files
// quantized by llama.cpp load as they are. A block of `block_size` elements occupies
// `type_size` bytes; a row of n elements (n a multiple of block_size) is
// n / block_size * type_size bytes.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace rbee::gguf {

// Values are the ggml type ids stored in GGUF tensor infos.
enum class tensor_type : uint32_t {
  f32 = 0,
  f16 = 1,
  q4_0 = 2,
  q4_1 = 3,
  q5_0 = 6,
  q5_1 = 7,
  q8_0 = 8,
  q8_1 = 9,
  q2_k = 10,
  q3_k = 11,
  q4_k = 12,
  q5_k = 13,
  q6_k = 14,
  q8_k = 15,
  iq4_nl = 20,
  iq4_xs = 23,
  bf16 = 30,
};

struct type_traits {
  std::string_view name;  // "f32", "q4_k", ... as llama.cpp prints them (upper case there)
  uint32_t block_size;    // elements per block
  uint32_t type_size;     // bytes per block
};

// Traits of a known type id, or nullopt for an id rbee does not support.
std::optional<type_traits> traits_of(uint32_t type_id);
type_traits traits_of(tensor_type type);
std::string_view to_string(tensor_type type);

// Bytes of a row of n elements; n must be a multiple of the block size (asserted).
size_t row_size(tensor_type type, int64_t n);

// llama.cpp's label of a file type id (general.file_type), e.g. 15 → "Q4_K_M"; empty if unknown.
std::string_view file_type_name(uint32_t file_type);

using fp16_t = uint16_t;  // IEEE half, raw bits
using bf16_t = uint16_t;  // bfloat16, raw bits

inline constexpr int qk4_0 = 32;
inline constexpr int qk4_1 = 32;
inline constexpr int qk5_0 = 32;
inline constexpr int qk5_1 = 32;
inline constexpr int qk8_0 = 32;
inline constexpr int qk8_1 = 32;
inline constexpr int qk_k = 256;  // super-block size of the k-quants
inline constexpr int k_scale_size = 12;
inline constexpr int qk4_nl = 32;

// The 16 levels of the non-linear 4-bit types (iq4_nl, iq4_xs): a 4-bit index q reads back as
// d * iq4_levels[q], denser near zero where most weights are.
inline constexpr int8_t iq4_levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                          1,    13,   25,  38,  53,  69,  89,  113};

// x[j] = (nibble - 8) * d; low nibbles hold elements 0..15, high nibbles 16..31.
struct block_q4_0 {
  fp16_t d;
  uint8_t qs[qk4_0 / 2];
};
static_assert(sizeof(block_q4_0) == 18);

// x[j] = nibble * d + m
struct block_q4_1 {
  fp16_t d;
  fp16_t m;
  uint8_t qs[qk4_1 / 2];
};
static_assert(sizeof(block_q4_1) == 20);

// 5-bit: low 4 bits in qs as in q4_0, the 5th bit of element j is bit j of qh; x = (q - 16) * d
struct block_q5_0 {
  fp16_t d;
  uint8_t qh[4];
  uint8_t qs[qk5_0 / 2];
};
static_assert(sizeof(block_q5_0) == 22);

// x = q * d + m
struct block_q5_1 {
  fp16_t d;
  fp16_t m;
  uint8_t qh[4];
  uint8_t qs[qk5_1 / 2];
};
static_assert(sizeof(block_q5_1) == 24);

// x = q * d
struct block_q8_0 {
  fp16_t d;
  int8_t qs[qk8_0];
};
static_assert(sizeof(block_q8_0) == 34);

// s = d * sum(qs): used for activations against q4_1/q5_1 weights
struct block_q8_1 {
  fp16_t d;
  fp16_t s;
  int8_t qs[qk8_1];
};
static_assert(sizeof(block_q8_1) == 36);

// 16 sub-blocks of 16; byte j of `scales` holds sub-block j's scale (low nibble) and min (high
// nibble); x = d*sc*q - dmin*m with 2-bit q. Element 32*s + l of each 128-element half sits in
// bits 2s..2s+1 of qs[l] (of that half's 32 bytes).
struct block_q2_k {
  uint8_t scales[qk_k / 16];
  uint8_t qs[qk_k / 4];
  fp16_t d;
  fp16_t dmin;
};
static_assert(sizeof(block_q2_k) == 84);

// 16 sub-blocks of 16 with 6-bit signed scales (stored + 32): the low 4 bits of scale j in
// nibble j/8 of scales[j%8], the high 2 bits in bits 2*(j/4).. of scales[8 + j%4]. 3-bit q:
// 2 low bits in qs as in q2_k, the high bit of element i in bit i/32 of hmask[i%32]; a clear
// high bit means q - 4. x = d * (scale - 32) * q.
struct block_q3_k {
  uint8_t hmask[qk_k / 8];
  uint8_t qs[qk_k / 4];
  uint8_t scales[k_scale_size];
  fp16_t d;
};
static_assert(sizeof(block_q3_k) == 110);

// 8 sub-blocks of 32; 6-bit scales and mins packed in `scales`; x = d*sc*q - dmin*m
struct block_q4_k {
  fp16_t d;
  fp16_t dmin;
  uint8_t scales[k_scale_size];
  uint8_t qs[qk_k / 2];
};
static_assert(sizeof(block_q4_k) == 144);

struct block_q5_k {
  fp16_t d;
  fp16_t dmin;
  uint8_t scales[k_scale_size];
  uint8_t qh[qk_k / 8];
  uint8_t qs[qk_k / 2];
};
static_assert(sizeof(block_q5_k) == 176);

// 16 sub-blocks of 16 with 8-bit scales; x = d * scale * (q - 32)
struct block_q6_k {
  uint8_t ql[qk_k / 2];
  uint8_t qh[qk_k / 4];
  int8_t scales[qk_k / 16];
  fp16_t d;
};
static_assert(sizeof(block_q6_k) == 210);

// x[j] = d * iq4_levels[nibble]; nibbles as in q4_0.
struct block_iq4_nl {
  fp16_t d;
  uint8_t qs[qk4_nl / 2];
};
static_assert(sizeof(block_iq4_nl) == 18);

// 8 sub-blocks of 32 as iq4_nl with 6-bit scales (stored + 32): low 4 bits of sub-block j in
// nibble j%2 of scales_l[j/2], high 2 bits in bits 2j.. of scales_h. x = d*(scale - 32)*level.
struct block_iq4_xs {
  fp16_t d;
  uint16_t scales_h;
  uint8_t scales_l[qk_k / 64];
  uint8_t qs[qk_k / 2];
};
static_assert(sizeof(block_iq4_xs) == 136);

// Activations against k-quant weights; bsums are sums of groups of 16.
struct block_q8_k {
  float d;
  int8_t qs[qk_k];
  int16_t bsums[qk_k / 16];
};
static_assert(sizeof(block_q8_k) == 292);

}  // namespace rbee::gguf
