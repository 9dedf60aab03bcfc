#pragma once
// Small RAII wrapper over SQLite3 for the hive's catalog and the queen's registry.
// Every failure throws sqlite_error carrying SQLite's message.

#include <chrono>
#include <concepts>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>

struct sqlite3;
struct sqlite3_stmt;

namespace rbee::common {

class sqlite_error : public std::runtime_error {
 public:
  sqlite_error(const std::string& what, int code) : std::runtime_error(what), code_(code) {}
  int code() const { return code_; }  // SQLite result code

 private:
  int code_;
};

class database;

class statement {
 public:
  statement(database& db, std::string_view sql);
  ~statement();
  statement(statement&& other) noexcept;
  statement& operator=(statement&& other) noexcept;
  statement(const statement&) = delete;
  statement& operator=(const statement&) = delete;

  // Parameters are 1-based, as in SQLite.
  statement& bind_int64(int index, int64_t value);
  template <std::integral T>
  statement& bind(int index, T value) {
    return bind_int64(index, static_cast<int64_t>(value));
  }
  statement& bind(int index, double value);
  statement& bind(int index, std::string_view value);
  statement& bind(int index, const char* value) { return bind(index, std::string_view(value)); }
  statement& bind(int index, const std::string& value) {
    return bind(index, std::string_view(value));
  }
  statement& bind(int index, std::nullptr_t);
  template <class T>
  statement& bind(int index, const std::optional<T>& value) {
    return value ? bind(index, *value) : bind(index, nullptr);
  }

  // True when a row is available; false when done. A statement stepped but neither finished
  // nor reset pins its read snapshot: reset() it (or let it go out of scope) when done reading.
  bool step();
  // Steps to completion (for statements returning no rows).
  void run();
  void reset();  // also clears bindings

  // Columns are 0-based, as in SQLite.
  int64_t column_int64(int index) const;
  double column_double(int index) const;
  std::string column_text(int index) const;
  bool column_is_null(int index) const;
  std::optional<std::string> column_optional_text(int index) const;
  std::optional<int64_t> column_optional_int64(int index) const;
  int column_count() const;

 private:
  sqlite3* db_ = nullptr;
  sqlite3_stmt* stmt_ = nullptr;
};

class database {
 public:
  // Opens (creating) the file with WAL, a busy timeout and foreign keys on. ":memory:" works.
  static database open(const std::filesystem::path& path,
                       std::chrono::milliseconds busy_timeout = std::chrono::milliseconds(5000));
  ~database();
  database(database&& other) noexcept;
  database& operator=(database&& other) noexcept;
  database(const database&) = delete;
  database& operator=(const database&) = delete;

  // Runs one or more statements without results.
  void exec(std::string_view sql);
  statement prepare(std::string_view sql) { return statement(*this, sql); }
  int64_t last_insert_rowid() const;
  int changes() const;  // rows changed by the last statement
  int user_version();
  sqlite3* handle() const { return db_; }
  const std::string& path() const { return path_; }

 private:
  database(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  sqlite3* db_ = nullptr;
  std::string path_;
};

// BEGIN IMMEDIATE on construction, ROLLBACK in the destructor unless commit() was called.
class transaction {
 public:
  explicit transaction(database& db);
  ~transaction();
  transaction(const transaction&) = delete;
  transaction& operator=(const transaction&) = delete;
  void commit();

 private:
  database& db_;
  bool done_ = false;
};

// Applies migrations[user_version..] in order, each in its own transaction, bumping
// PRAGMA user_version after each. A database newer than the code (user_version >
// migrations.size()) is a sqlite_error.
void migrate(database& db, std::span<const std::string_view> migrations);

}  // namespace rbee::common
