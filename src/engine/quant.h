#pragma once
// Reference (plain, obviously-correct) conversions between fp32 and every tensor type.
// The quantizers follow the quantizers llama-quantize uses without an importance matrix, so
// Q4_0/Q8_0/Q2_K/IQ4_XS/... rows come out byte for byte as llama.cpp writes them.
// These are the oracle for the SIMD kernels in cpu/ and are used by `quantize` and `synth`.
#include <cstdint>

#include "engine/tensor_types.h"

namespace rbee::engine {

// IEEE half <-> float, round to nearest even (as F16C does).
float fp16_to_fp32(fp16_t h);
fp16_t fp32_to_fp16(float f);
// bfloat16: the upper half of a float; rounding to nearest even, NaN stays NaN.
float bf16_to_fp32(bf16_t h);
bf16_t fp32_to_bf16(float f);

// n elements (a multiple of the type's block size) of `src` in `type` to fp32.
void dequantize_row_reference(tensor_type type, const void* src, float* dst, int64_t n);

// n fp32 values into `type`'s packed blocks (row_size(type, n) bytes at dst). Supported for
// f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q8_1, q2_k, q3_k, q4_k, q5_k, q6_k, q8_k,
// iq4_nl, iq4_xs.
void quantize_row(tensor_type type, const float* src, void* dst, int64_t n);

// Whether quantize_row supports `type` (all types of tensor_type do).
bool can_quantize(tensor_type type);

// Scale and min (6 bits each) of sub-block j (0..7) from the 12 packed scale bytes of a
// q4_k or q5_k block.
void scale_min_k4(int j, const uint8_t* scales, uint8_t& sc, uint8_t& m);

// Dequantize-then-dot in double precision: the oracle for the fast matmul kernels.
float dot_reference(tensor_type type, const void* w_row, const float* x, int64_t n);

}  // namespace rbee::engine
