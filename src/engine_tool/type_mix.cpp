#include "engine_tool/type_mix.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <string>

namespace rbee::engine_tool {

using engine::tensor_type;

namespace {

constexpr std::array<file_kind, 15> kinds{{
    {"f16", tensor_type::f16, 1},
    {"q4_0", tensor_type::q4_0, 2},
    {"q4_1", tensor_type::q4_1, 3},
    {"q8_0", tensor_type::q8_0, 7},
    {"q5_0", tensor_type::q5_0, 8},
    {"q5_1", tensor_type::q5_1, 9},
    {"q2_k", tensor_type::q2_k, 10},
    {"q3_k_s", tensor_type::q3_k, 11},
    {"q3_k_m", tensor_type::q3_k, 12},
    {"q3_k_l", tensor_type::q3_k, 13},
    {"q4_k_m", tensor_type::q4_k, 15},
    {"q5_k_m", tensor_type::q5_k, 17},
    {"q6_k", tensor_type::q6_k, 18},
    {"iq4_nl", tensor_type::iq4_nl, 25},
    {"iq4_xs", tensor_type::iq4_xs, 30},
}};

// llama.cpp's use_more_bits: the first and last eighth of the layers and every third between.
bool use_more_bits(int layer, int n_layer) {
  return layer < n_layer / 8 || layer >= 7 * n_layer / 8 || (layer - n_layer / 8) % 3 == 2;
}

int layer_of(std::string_view name) {
  if (!name.starts_with("blk.")) return -1;
  name.remove_prefix(4);
  int layer = 0;
  for (char c : name) {
    if (c == '.') return layer;
    if (!std::isdigit(static_cast<unsigned char>(c))) return -1;
    layer = layer * 10 + (c - '0');
  }
  return -1;
}

// k-quants need rows in whole super-blocks; llama.cpp falls back to these.
tensor_type fit_row(tensor_type t, int64_t n_cols) {
  if (n_cols % engine::qk_k == 0) return t;
  switch (t) {
    case tensor_type::q2_k:
    case tensor_type::q3_k:
    case tensor_type::iq4_xs:
      return tensor_type::iq4_nl;
    case tensor_type::q4_k:
      return tensor_type::q5_0;
    case tensor_type::q5_k:
      return tensor_type::q5_1;
    case tensor_type::q6_k:
      return tensor_type::q8_0;
    default:
      return t;
  }
}

bool named(std::string_view name, std::string_view part) {
  return name.find(part) != std::string_view::npos;
}

// llama.cpp's choice for the value projection of layer `layer` (-1 when the name has none);
// nullopt keeps the file's base type.
std::optional<tensor_type> attn_v_type(const file_kind& kind, int layer, int n_layer, int n_gqa) {
  const std::string_view k = kind.name;
  if (k == "q2_k") return n_gqa >= 4 ? tensor_type::q4_k : tensor_type::q3_k;
  if (k == "q3_k_m") return layer >= 0 && layer < 2 ? tensor_type::q5_k : tensor_type::q4_k;
  if (k == "q3_k_l") return tensor_type::q5_k;
  if ((k == "iq4_nl" || k == "iq4_xs") && n_gqa >= 4) return tensor_type::q5_k;
  if ((k == "q4_k_m" || k == "q5_k_m") && layer >= 0 && use_more_bits(layer, n_layer))
    return tensor_type::q6_k;
  return std::nullopt;
}

std::optional<tensor_type> ffn_down_type(const file_kind& kind, int layer, int n_layer) {
  const std::string_view k = kind.name;
  if (k == "q2_k") return tensor_type::q3_k;
  if (k == "q3_k_m")
    return layer >= 0 && layer < n_layer / 16 ? tensor_type::q5_k : tensor_type::q4_k;
  if (k == "q3_k_l") return tensor_type::q5_k;
  if ((k == "q4_k_m" || k == "q5_k_m") && layer >= 0 && use_more_bits(layer, n_layer))
    return tensor_type::q6_k;
  if ((k == "iq4_nl" || k == "iq4_xs") && layer >= 0 && layer < n_layer / 8)
    return tensor_type::q5_k;
  return std::nullopt;
}

std::optional<tensor_type> attn_output_type(const file_kind& kind) {
  const std::string_view k = kind.name;
  if (k == "q2_k") return tensor_type::q3_k;
  if (k == "q3_k_m") return tensor_type::q4_k;
  if (k == "q3_k_l") return tensor_type::q5_k;
  return std::nullopt;
}

}  // namespace

std::optional<file_kind> parse_file_kind(std::string_view name) {
  std::string lower(name);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  for (const auto& k : kinds)
    if (k.name == lower) return k;
  return std::nullopt;
}

std::string_view file_kind_names() {
  return "f16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k_s, q3_k_m, q3_k_l, q4_k_m, q5_k_m, q6_k, "
         "iq4_nl, iq4_xs";
}

tensor_type tensor_type_for(const file_kind& kind, std::string_view name, int n_layer, int n_gqa,
                            int64_t n_cols, bool is_output) {
  const tensor_type base = kind.base;
  if (base == tensor_type::f16 || base == tensor_type::q8_0 || base == tensor_type::q6_k)
    return fit_row(base, n_cols);
  if (is_output) return fit_row(tensor_type::q6_k, n_cols);
  std::optional<tensor_type> bumped;
  if (named(name, "attn_v.weight")) {
    bumped = attn_v_type(kind, layer_of(name), n_layer, n_gqa);
  } else if (named(name, "ffn_down")) {
    bumped = ffn_down_type(kind, layer_of(name), n_layer);
  } else if (named(name, "attn_output.weight")) {
    bumped = attn_output_type(kind);
  }
  return fit_row(bumped.value_or(base), n_cols);
}

}  // namespace rbee::engine_tool
