#pragma once
// The node's model catalog (SPEC §4) in SQLite: $RBEE_HOME/models.db, WAL, schema versioned by
// PRAGMA user_version with forward-only migrations.

#include <cstdint>
#include <filesystem>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/sqlite.h"

namespace rbee::hive {

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
};

// The schema, one entry per version (exposed for the migration tests).
std::span<const std::string_view> catalog_migrations();

class catalog {
 public:
  // Opens (creating) the database and applies pending migrations.
  explicit catalog(const std::filesystem::path& db_path);

  // Inserts or replaces the row for entry.reference; entry.id is assigned when empty (derived
  // from the file name, made unique). Returns the stored row.
  model_entry upsert(model_entry entry);
  std::optional<model_entry> find_by_id(std::string_view id);
  std::optional<model_entry> find_by_reference(std::string_view reference);
  // An alias matches an id or a reference.
  std::optional<model_entry> find(std::string_view id_or_reference);
  std::vector<model_entry> list();
  bool remove(std::string_view id);
  int schema_version();

 private:
  std::mutex mutex_;
  common::database db_;
};

// The id a file name suggests: lower-case stem, characters outside [a-z0-9._-] replaced by '-'.
std::string id_from_file_name(std::string_view file_name);

}  // namespace rbee::hive
