#pragma once
// Choosing a file from a hub repository's listing (names from the network: each passes
// api::is_safe_repo_file before it is used).

#include <string>
#include <string_view>
#include <vector>

namespace rbee::hive {

// Quantization tag found in a file name ("Q4_K_M"), upper-case; "" when none is recognised.
std::string quantization_from_name(std::string_view file_name);

// Picks the GGUF file to download from a repo listing: Q4_K_M, Q5_K_M, Q8_0, Q4_0, then other
// quantizations, then F16/BF16/F32; split files ("-00001-of-00003") and names that are not
// api::is_safe_repo_file are skipped. "" when the listing has no usable GGUF.
std::string pick_gguf_file(const std::vector<std::string>& files);

}  // namespace rbee::hive
