#pragma once
// One model of a hive's catalog (GET /v1/models/list): what the hive stores and reports, and
// what the queen reads back to decide whether a model must be downloaded.

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace rbee::api {

struct model_entry {
  std::string id;         // short, URL-safe, unique ("synth-tiny-q4_k_m"); usable as an alias
  std::string provider;   // "hf" or "file"
  std::string reference;  // canonical model reference ("hf:org/repo:file")
  std::string file;       // file name inside the repo (or the local file's name)
  std::string local_path;
  uint64_t size_bytes = 0;
  std::string sha256;  // lower-case hex; "" when unknown (local files are hashed on add)
  std::string architecture;
  std::string quantization;
  uint64_t parameters = 0;
  uint64_t context_length = 0;
  int64_t downloaded_at_unix = 0;

  nlohmann::json to_json() const;
  // Reads a hive's entry: a field that is absent or of another type keeps its default (an
  // entry is information, never acted on beyond its reference and id).
  static model_entry from_json(const nlohmann::json& j);
};

}  // namespace rbee::api
