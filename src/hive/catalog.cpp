#include "hive/catalog.h"

#include <array>
#include <cctype>

namespace rbee::hive {
namespace {

// Forward-only: never edit a released entry, append a new one.
constexpr std::array<std::string_view, 2> migrations = {
    R"sql(
CREATE TABLE models (
  id TEXT PRIMARY KEY,
  provider TEXT NOT NULL,
  reference TEXT NOT NULL UNIQUE,
  file TEXT NOT NULL,
  local_path TEXT NOT NULL,
  size_bytes INTEGER NOT NULL,
  sha256 TEXT NOT NULL DEFAULT '',
  architecture TEXT NOT NULL DEFAULT '',
  quantization TEXT NOT NULL DEFAULT '',
  parameters INTEGER NOT NULL DEFAULT 0,
  downloaded_at_unix INTEGER NOT NULL
);)sql",
    R"sql(
ALTER TABLE models ADD COLUMN context_length INTEGER NOT NULL DEFAULT 0;
CREATE INDEX models_local_path ON models(local_path);)sql",
};

constexpr std::string_view columns =
    "id, provider, reference, file, local_path, size_bytes, sha256, architecture, quantization, "
    "parameters, context_length, downloaded_at_unix";

model_entry read_row(const common::statement& st) {
  model_entry e;
  e.id = st.column_text(0);
  e.provider = st.column_text(1);
  e.reference = st.column_text(2);
  e.file = st.column_text(3);
  e.local_path = st.column_text(4);
  e.size_bytes = static_cast<uint64_t>(st.column_int64(5));
  e.sha256 = st.column_text(6);
  e.architecture = st.column_text(7);
  e.quantization = st.column_text(8);
  e.parameters = static_cast<uint64_t>(st.column_int64(9));
  e.context_length = static_cast<uint64_t>(st.column_int64(10));
  e.downloaded_at_unix = st.column_int64(11);
  return e;
}

}  // namespace

std::span<const std::string_view> catalog_migrations() {
  return migrations;
}

std::string id_from_file_name(std::string_view file_name) {
  std::string stem(file_name);
  if (auto slash = stem.rfind('/'); slash != std::string::npos) stem = stem.substr(slash + 1);
  if (stem.size() > 5 && (stem.ends_with(".gguf") || stem.ends_with(".GGUF"))) {
    stem.resize(stem.size() - 5);
  }
  std::string id;
  for (char c : stem) {
    char l = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    bool ok = std::isalnum(static_cast<unsigned char>(l)) || l == '.' || l == '-' || l == '_';
    id += ok ? l : '-';
  }
  while (id.starts_with('.')) id.erase(0, 1);  // no hidden-file or ".." look-alikes
  if (id.empty()) id = "model";
  return id.substr(0, 96);
}

catalog::catalog(const std::filesystem::path& db_path) : db_(common::database::open(db_path)) {
  common::migrate(db_, migrations);
}

int catalog::schema_version() {
  std::lock_guard lock(mutex_);
  return db_.user_version();
}

model_entry catalog::upsert(model_entry entry) {
  std::lock_guard lock(mutex_);
  common::transaction tx(db_);
  {
    auto st = db_.prepare("SELECT id FROM models WHERE reference = ?");
    st.bind(1, entry.reference);
    if (st.step()) entry.id = st.column_text(0);
  }
  if (entry.id.empty()) {
    std::string base = id_from_file_name(entry.file);
    for (int n = 1;; ++n) {
      std::string candidate = n == 1 ? base : base + "-" + std::to_string(n);
      auto st = db_.prepare("SELECT 1 FROM models WHERE id = ?");
      st.bind(1, candidate);
      if (!st.step()) {
        entry.id = candidate;
        break;
      }
    }
  }
  auto st = db_.prepare("INSERT OR REPLACE INTO models (" + std::string(columns) +
                        ") VALUES (?,?,?,?,?,?,?,?,?,?,?,?)");
  st.bind(1, entry.id)
      .bind(2, entry.provider)
      .bind(3, entry.reference)
      .bind(4, entry.file)
      .bind(5, entry.local_path)
      .bind(6, static_cast<int64_t>(entry.size_bytes))
      .bind(7, entry.sha256)
      .bind(8, entry.architecture)
      .bind(9, entry.quantization)
      .bind(10, static_cast<int64_t>(entry.parameters))
      .bind(11, static_cast<int64_t>(entry.context_length))
      .bind(12, entry.downloaded_at_unix);
  st.run();
  tx.commit();
  return entry;
}

std::optional<model_entry> catalog::find_by_id(std::string_view id) {
  std::lock_guard lock(mutex_);
  auto st = db_.prepare("SELECT " + std::string(columns) + " FROM models WHERE id = ?");
  st.bind(1, id);
  if (!st.step()) return std::nullopt;
  return read_row(st);
}

std::optional<model_entry> catalog::find_by_reference(std::string_view reference) {
  std::lock_guard lock(mutex_);
  auto st = db_.prepare("SELECT " + std::string(columns) + " FROM models WHERE reference = ?");
  st.bind(1, reference);
  if (!st.step()) return std::nullopt;
  return read_row(st);
}

std::optional<model_entry> catalog::find(std::string_view id_or_reference) {
  if (auto e = find_by_id(id_or_reference)) return e;
  return find_by_reference(id_or_reference);
}

std::vector<model_entry> catalog::list() {
  std::lock_guard lock(mutex_);
  auto st = db_.prepare("SELECT " + std::string(columns) + " FROM models ORDER BY id");
  std::vector<model_entry> out;
  while (st.step()) out.push_back(read_row(st));
  return out;
}

bool catalog::remove(std::string_view id) {
  std::lock_guard lock(mutex_);
  auto st = db_.prepare("DELETE FROM models WHERE id = ?");
  st.bind(1, id);
  st.run();
  return db_.changes() > 0;
}

}  // namespace rbee::hive
