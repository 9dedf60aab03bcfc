#include "hive/hub_files.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <filesystem>

#include "api/model_ref.h"

namespace rbee::hive {

using api::has_gguf_extension;
using api::is_safe_repo_file;

std::string quantization_from_name(std::string_view file_name) {
  std::string upper(file_name);
  std::transform(upper.begin(), upper.end(), upper.begin(), ::toupper);
  // Longest tags first so "Q4_K_M" wins over "Q4_K".
  static constexpr std::array<std::string_view, 24> tags = {
      "IQ4_XS", "IQ4_NL", "Q4_K_M", "Q4_K_S", "Q5_K_M", "Q5_K_S", "Q3_K_M", "Q3_K_S",
      "Q3_K_L", "Q2_K_S", "Q8_0",   "Q4_0",   "Q4_1",   "Q5_0",   "Q5_1",   "Q6_K",
      "Q4_K",   "Q5_K",   "Q3_K",   "Q2_K",   "BF16",   "F16",    "F32",    "IQ2_XS"};
  for (auto tag : tags) {
    size_t pos = upper.find(tag);
    while (pos != std::string::npos) {
      // The tag must stand alone: not part of a longer alphanumeric run ("XQ4_0X").
      bool left_ok = pos == 0 || !std::isalnum(static_cast<unsigned char>(upper[pos - 1]));
      size_t end = pos + tag.size();
      bool right_ok = end == upper.size() || !std::isalnum(static_cast<unsigned char>(upper[end]));
      if (left_ok && right_ok) return std::string(tag);
      pos = upper.find(tag, pos + 1);
    }
  }
  return "";
}

std::string pick_gguf_file(const std::vector<std::string>& files) {
  static constexpr std::array<std::string_view, 17> preference = {
      "Q4_K_M", "Q5_K_M", "Q8_0", "Q4_0",   "Q4_K_S", "Q5_K_S", "Q6_K", "Q5_0", "Q4_1",
      "Q5_1",   "Q4_K",   "Q5_K", "Q3_K_M", "Q3_K_L", "F16",    "BF16", "F32"};
  std::string best;
  size_t best_rank = preference.size() + 1;
  for (const auto& f : files) {
    if (!api::has_gguf_extension(f) || !api::is_safe_repo_file(f)) continue;
    if (f.find("-of-0") != std::string::npos) continue;  // split shards need all parts
    std::string q = quantization_from_name(std::filesystem::path(f).filename().string());
    size_t rank = preference.size();  // GGUF with an unknown tag: after the known ones
    for (size_t i = 0; i < preference.size(); ++i) {
      if (q == preference[i]) rank = i;
    }
    if (rank < best_rank || (rank == best_rank && f < best)) {
      best = f;
      best_rank = rank;
    }
  }
  return best;
}

}  // namespace rbee::hive
