#pragma once
// Which type each tensor gets in a quantized file, following llama.cpp's llama-quantize mixes
// (without an importance matrix) so files look like the ones people download.
#include <cstdint>
#include <optional>
#include <string_view>

#include "engine/tensor_types.h"

namespace rbee::engine_tool {

struct file_kind {
  std::string_view name;     // "q4_k_m"
  engine::tensor_type base;  // most 2-D weights
  uint32_t file_type;        // general.file_type (llama_ftype)
};

// q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k_s, q3_k_m, q3_k_l, q4_k_m, q5_k_m, q6_k, iq4_nl,
// iq4_xs, f16 (case-insensitive); nullopt otherwise.
std::optional<file_kind> parse_file_kind(std::string_view name);
std::string_view file_kind_names();

// The type of a 2-D weight `name` ("blk.3.attn_v.weight") with rows of n_cols elements, in a
// model of n_layer layers with n_gqa query heads per KV head. `is_output`: the output
// projection (token_embd when the model ties them).
engine::tensor_type tensor_type_for(const file_kind& kind, std::string_view name, int n_layer,
                                    int n_gqa, int64_t n_cols, bool is_output);

}  // namespace rbee::engine_tool
