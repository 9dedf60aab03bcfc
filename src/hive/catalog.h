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

#include "api/model_entry.h"
#include "common/sqlite.h"

namespace rbee::hive {

// A catalog row is the contract's record of a model (api/model_entry.h).
using api::model_entry;

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
