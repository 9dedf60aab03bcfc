// The tensor types `rbee-engine quantize` and `synth` choose per file kind, against
// llama-quantize's choices (llama.cpp c392e50, no importance matrix) for a TinyLlama-shape
// model: 22 layers, 32 query heads on 4 KV heads (GQA 8), rows of 2048 and 5632.
#include <gtest/gtest.h>

#include <string>

#include "engine_tool/type_mix.h"

namespace rbee::engine_tool {
namespace {

using engine::tensor_type;

constexpr int n_layer = 22, n_gqa = 8;

tensor_type type_of(const std::string& kind, const std::string& name, int64_t n_cols = 2048) {
  const auto k = parse_file_kind(kind);
  EXPECT_TRUE(k) << kind;
  return tensor_type_for(*k, name, n_layer, n_gqa, n_cols, name == "output.weight");
}

TEST(type_mix, q2_k_gives_value_projections_q4_k_with_wide_gqa) {
  EXPECT_EQ(type_of("q2_k", "output.weight"), tensor_type::q6_k);
  EXPECT_EQ(type_of("q2_k", "token_embd.weight"), tensor_type::q2_k);
  EXPECT_EQ(type_of("q2_k", "blk.0.attn_q.weight"), tensor_type::q2_k);
  EXPECT_EQ(type_of("q2_k", "blk.2.attn_v.weight"), tensor_type::q4_k);
  EXPECT_EQ(type_of("q2_k", "blk.21.ffn_down.weight", 5632), tensor_type::q3_k);
  EXPECT_EQ(type_of("q2_k", "blk.7.attn_output.weight"), tensor_type::q3_k);
  // With few query heads per KV head the value projection gets Q3_K.
  const auto q2 = *parse_file_kind("q2_k");
  EXPECT_EQ(tensor_type_for(q2, "blk.0.attn_v.weight", 4, 2, 256, false), tensor_type::q3_k);
}

TEST(type_mix, q3_k_m_bumps_the_first_layers_most) {
  EXPECT_EQ(type_of("q3_k_m", "blk.0.attn_q.weight"), tensor_type::q3_k);
  EXPECT_EQ(type_of("q3_k_m", "blk.0.attn_v.weight"), tensor_type::q5_k);
  EXPECT_EQ(type_of("q3_k_m", "blk.1.attn_v.weight"), tensor_type::q5_k);
  EXPECT_EQ(type_of("q3_k_m", "blk.2.attn_v.weight"), tensor_type::q4_k);
  EXPECT_EQ(type_of("q3_k_m", "blk.0.ffn_down.weight", 5632), tensor_type::q5_k);
  EXPECT_EQ(type_of("q3_k_m", "blk.1.ffn_down.weight", 5632), tensor_type::q4_k);
  EXPECT_EQ(type_of("q3_k_m", "blk.9.attn_output.weight"), tensor_type::q4_k);
  EXPECT_EQ(type_of("q3_k_s", "blk.9.attn_output.weight"), tensor_type::q3_k);
  EXPECT_EQ(type_of("q3_k_l", "blk.9.attn_output.weight"), tensor_type::q5_k);
}

TEST(type_mix, iq4_kinds_bump_value_projections_and_the_first_eighth_of_ffn_down) {
  for (const char* kind : {"iq4_xs", "iq4_nl"}) {
    const tensor_type base =
        std::string(kind) == "iq4_xs" ? tensor_type::iq4_xs : tensor_type::iq4_nl;
    EXPECT_EQ(type_of(kind, "token_embd.weight"), base) << kind;
    EXPECT_EQ(type_of(kind, "blk.21.attn_v.weight"), tensor_type::q5_k) << kind;
    EXPECT_EQ(type_of(kind, "blk.1.ffn_down.weight", 5632), tensor_type::q5_k) << kind;
    EXPECT_EQ(type_of(kind, "blk.2.ffn_down.weight", 5632), base) << kind;
    EXPECT_EQ(type_of(kind, "blk.3.attn_output.weight"), base) << kind;
  }
}

// Rows that are no whole number of 256-element super-blocks fall back as llama.cpp does.
TEST(type_mix, short_rows_fall_back_to_iq4_nl) {
  EXPECT_EQ(type_of("q2_k", "blk.0.attn_q.weight", 96), tensor_type::iq4_nl);
  EXPECT_EQ(type_of("q3_k_s", "blk.0.attn_q.weight", 96), tensor_type::iq4_nl);
  EXPECT_EQ(type_of("iq4_xs", "blk.0.attn_q.weight", 96), tensor_type::iq4_nl);
  EXPECT_EQ(type_of("iq4_nl", "blk.0.attn_q.weight", 96), tensor_type::iq4_nl);
}

TEST(type_mix, kinds_parse_case_insensitively) {
  EXPECT_EQ(parse_file_kind("Q3_K_M")->file_type, 12u);
  EXPECT_EQ(parse_file_kind("IQ4_XS")->file_type, 30u);
  EXPECT_FALSE(parse_file_kind("q3_k"));
}

}  // namespace
}  // namespace rbee::engine_tool
