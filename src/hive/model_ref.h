#pragma once
// Model references (SPEC §4), parsed from untrusted input:
//   hf:ORG/REPO:FILE.gguf   one file of a Hugging Face repo (FILE may contain '/')
//   hf:ORG/REPO             the repo; a GGUF file is picked by quantization preference
//   file:/abs/path.gguf     a local file, used in place
//   ALIAS                   a catalog id or a reference already in the catalog
// Anything else (URLs, "..", odd characters) is a 400 INVALID_REQUEST naming the field.

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace rbee::hive {

enum class ref_kind { hf_file, hf_repo, local_file, alias };

struct model_ref {
  ref_kind kind = ref_kind::alias;
  std::string org;             // hf_*
  std::string repo;            // hf_*
  std::string file;            // hf_file: path inside the repo
  std::filesystem::path path;  // local_file
  std::string alias;           // alias

  // The normalized text form ("hf:org/repo:file", "file:/p", alias); stored in the catalog.
  std::string canonical() const;
  // Where a hub file is kept below the models dir: hf/ORG/REPO/FILE.
  std::filesystem::path relative_store_path() const;
};

// Throws common::http_error 400 INVALID_REQUEST (details.field = field) for malformed refs.
model_ref parse_model_ref(std::string_view text, std::string_view field = "model_ref");

// A file path inside a hub repository, typed after "hf:ORG/REPO:" or listed by the hub:
// relative, '/'-separated segments of letters, digits, '.', '-', '_' (none empty, "." or
// ".."), at most 512 characters. Names from the network pass this before they become paths.
bool is_safe_repo_file(std::string_view file);

// Whether the name ends in ".gguf" (any case).
bool has_gguf_extension(std::string_view file_name);

// Quantization tag found in a file name ("Q4_K_M"), upper-case; "" when none is recognised.
std::string quantization_from_name(std::string_view file_name);

// Picks the GGUF file to download from a repo listing: Q4_K_M, Q5_K_M, Q8_0, Q4_0, then other
// quantizations, then F16/BF16/F32; split files ("-00001-of-00003") and names that are not
// is_safe_repo_file are skipped. "" when the listing has no usable GGUF.
std::string pick_gguf_file(const std::vector<std::string>& files);

}  // namespace rbee::hive
