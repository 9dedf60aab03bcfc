#include "engine_tool/type_mix.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <string>

namespace rbee::engine_tool {

using engine::tensor_type;

namespace {

constexpr std::array<file_kind, 9> kinds{{
    {"f16", tensor_type::f16, 1},
    {"q4_0", tensor_type::q4_0, 2},
    {"q4_1", tensor_type::q4_1, 3},
    {"q8_0", tensor_type::q8_0, 7},
    {"q5_0", tensor_type::q5_0, 8},
    {"q5_1", tensor_type::q5_1, 9},
    {"q4_k_m", tensor_type::q4_k, 15},
    {"q5_k_m", tensor_type::q5_k, 17},
    {"q6_k", tensor_type::q6_k, 18},
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
  return "f16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k_m, q5_k_m, q6_k";
}

tensor_type tensor_type_for(const file_kind& kind, std::string_view name, int n_layer,
                            int64_t n_cols, bool is_output) {
  const tensor_type base = kind.base;
  if (base == tensor_type::f16 || base == tensor_type::q8_0 || base == tensor_type::q6_k)
    return fit_row(base, n_cols);
  if (is_output) return fit_row(tensor_type::q6_k, n_cols);
  const bool k_mix = base == tensor_type::q4_k || base == tensor_type::q5_k;
  if (k_mix && (name.find("attn_v.weight") != std::string_view::npos ||
                name.find("ffn_down.weight") != std::string_view::npos)) {
    const int layer = layer_of(name);
    if (layer >= 0 && use_more_bits(layer, n_layer)) return fit_row(tensor_type::q6_k, n_cols);
  }
  return fit_row(base, n_cols);
}

}  // namespace rbee::engine_tool
