#pragma once
// Model references (SPEC §4): the one grammar of the wire contract, parsed from untrusted input
// at the first process that receives one (CLI, queen, hive):
//   hf:ORG/REPO:FILE.gguf   one file of a Hugging Face repo (FILE may contain '/')
//   hf:ORG/REPO             the repo; a GGUF file is picked by quantization preference
//   file:/abs/path.gguf     a local file, used in place
//   ALIAS                   a catalog id or a reference already in the catalog
// Anything else (URLs, "..", odd characters) is a 400 INVALID_REQUEST naming the field.

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace rbee::api {

enum class ref_kind { hf_file, hf_repo, local_file, alias };

struct model_ref {
  ref_kind kind = ref_kind::alias;
  std::string org;             // hf_*
  std::string repo;            // hf_*
  std::string file;            // hf_file: path inside the repo
  std::filesystem::path path;  // local_file
  std::string alias;           // alias

  // The model's id: the normalized text form ("hf:org/repo:file", "file:/p", alias), case
  // preserved, one per file; the catalog stores it.
  std::string canonical() const;
  // Whether this reference, as a request names a model, is satisfied by `stored` (a catalog
  // entry's or a worker's reference): the same id, or this names a hub repository and stored
  // is a file of it (hub names are case-insensitive: the hub redirects any spelling).
  bool is_satisfied_by(const model_ref& stored) const;
  // Where a hub file is kept below the models dir: hf/ORG/REPO/FILE.
  std::filesystem::path relative_store_path() const;
};

// Throws common::http_error 400 INVALID_REQUEST (details.field = field) for malformed refs.
model_ref parse_model_ref(std::string_view text, std::string_view field = "model_ref");

// The same, for references read back from a catalog or a hive's report: nullopt when malformed.
std::optional<model_ref> try_parse_model_ref(std::string_view text);

// is_satisfied_by on reference texts (a request's, and a catalog entry's or a worker's): equal
// texts, or both parse and the first is satisfied by the second. Malformed text satisfies nothing.
bool reference_satisfied_by(std::string_view wanted, std::string_view stored);

// A file path inside a hub repository, typed after "hf:ORG/REPO:" or listed by the hub:
// relative, '/'-separated segments of letters, digits, '.', '-', '_' (none empty, "." or
// ".."), at most 512 characters. Names from the network pass this before they become paths.
bool is_safe_repo_file(std::string_view file);

// Whether the name ends in ".gguf" (any case).
bool has_gguf_extension(std::string_view file_name);

}  // namespace rbee::api
