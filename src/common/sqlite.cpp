#include "common/sqlite.h"

#include <sqlite3.h>

#include <utility>

namespace rbee::common {

namespace {

[[noreturn]] void raise(sqlite3* db, int rc, std::string_view context) {
  std::string msg = std::string(context) + ": " + (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  throw sqlite_error(msg, rc);
}

void check(sqlite3* db, int rc, std::string_view context) {
  if (rc != SQLITE_OK) raise(db, rc, context);
}

}  // namespace

statement::statement(database& db, std::string_view sql) : db_(db.handle()) {
  int rc = sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &stmt_, nullptr);
  if (rc != SQLITE_OK) {
    raise(db_, rc, "prepare '" + std::string(sql.substr(0, 200)) + "'");
  }
}

statement::~statement() {
  sqlite3_finalize(stmt_);
}

statement::statement(statement&& other) noexcept
    : db_(std::exchange(other.db_, nullptr)), stmt_(std::exchange(other.stmt_, nullptr)) {}

statement& statement::operator=(statement&& other) noexcept {
  if (this != &other) {
    sqlite3_finalize(stmt_);
    db_ = std::exchange(other.db_, nullptr);
    stmt_ = std::exchange(other.stmt_, nullptr);
  }
  return *this;
}

statement& statement::bind_int64(int index, int64_t value) {
  check(db_, sqlite3_bind_int64(stmt_, index, value), "bind");
  return *this;
}

statement& statement::bind(int index, double value) {
  check(db_, sqlite3_bind_double(stmt_, index, value), "bind");
  return *this;
}

statement& statement::bind(int index, std::string_view value) {
  check(
      db_,
      sqlite3_bind_text64(stmt_, index, value.data(), value.size(), SQLITE_TRANSIENT, SQLITE_UTF8),
      "bind");
  return *this;
}

statement& statement::bind(int index, std::nullptr_t) {
  check(db_, sqlite3_bind_null(stmt_, index), "bind");
  return *this;
}

bool statement::step() {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  raise(db_, rc, "step '" + std::string(sqlite3_sql(stmt_)).substr(0, 200) + "'");
}

void statement::run() {
  while (step()) {
  }
}

void statement::reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

int64_t statement::column_int64(int index) const {
  return sqlite3_column_int64(stmt_, index);
}
double statement::column_double(int index) const {
  return sqlite3_column_double(stmt_, index);
}

std::string statement::column_text(int index) const {
  const unsigned char* text = sqlite3_column_text(stmt_, index);
  int len = sqlite3_column_bytes(stmt_, index);
  return text ? std::string(reinterpret_cast<const char*>(text), static_cast<size_t>(len))
              : std::string();
}

bool statement::column_is_null(int index) const {
  return sqlite3_column_type(stmt_, index) == SQLITE_NULL;
}

std::optional<std::string> statement::column_optional_text(int index) const {
  if (column_is_null(index)) return std::nullopt;
  return column_text(index);
}

std::optional<int64_t> statement::column_optional_int64(int index) const {
  if (column_is_null(index)) return std::nullopt;
  return column_int64(index);
}

int statement::column_count() const {
  return sqlite3_column_count(stmt_);
}

database database::open(const std::filesystem::path& path, std::chrono::milliseconds busy_timeout) {
  sqlite3* db = nullptr;
  int rc =
      sqlite3_open_v2(path.c_str(), &db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg =
        "open " + path.string() + ": " + (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    sqlite3_close(db);
    throw sqlite_error(msg, rc);
  }
  database out(db, path.string());
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, static_cast<int>(busy_timeout.count()));
  if (path != ":memory:") out.exec("PRAGMA journal_mode=WAL");
  out.exec("PRAGMA foreign_keys=ON");
  return out;
}

database::~database() {
  sqlite3_close_v2(db_);
}

database::database(database&& other) noexcept
    : db_(std::exchange(other.db_, nullptr)), path_(std::move(other.path_)) {}

database& database::operator=(database&& other) noexcept {
  if (this != &other) {
    sqlite3_close_v2(db_);
    db_ = std::exchange(other.db_, nullptr);
    path_ = std::move(other.path_);
  }
  return *this;
}

void database::exec(std::string_view sql) {
  std::string text(sql);
  char* err = nullptr;
  int rc = sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string msg =
        "exec '" + text.substr(0, 200) + "' on " + path_ + ": " + (err ? err : sqlite3_errstr(rc));
    sqlite3_free(err);
    throw sqlite_error(msg, rc);
  }
}

int64_t database::last_insert_rowid() const {
  return sqlite3_last_insert_rowid(db_);
}
int database::changes() const {
  return sqlite3_changes(db_);
}

int database::user_version() {
  statement st(*this, "PRAGMA user_version");
  st.step();
  return static_cast<int>(st.column_int64(0));
}

transaction::transaction(database& db) : db_(db) {
  db_.exec("BEGIN IMMEDIATE");
}

transaction::~transaction() {
  if (done_) return;
  // A failed rollback leaves nothing to do from a destructor; SQLite rolls back on close.
  sqlite3_exec(db_.handle(), "ROLLBACK", nullptr, nullptr, nullptr);
}

void transaction::commit() {
  db_.exec("COMMIT");
  done_ = true;
}

void migrate(database& db, std::span<const std::string_view> migrations) {
  int version = db.user_version();
  if (version < 0 || static_cast<size_t>(version) > migrations.size()) {
    throw sqlite_error(db.path() + " has schema version " + std::to_string(version) +
                           " but this rbee knows only " + std::to_string(migrations.size()) +
                           ": it was written by a newer rbee",
                       SQLITE_ERROR);
  }
  for (size_t i = static_cast<size_t>(version); i < migrations.size(); ++i) {
    transaction tx(db);
    try {
      db.exec(migrations[i]);
    } catch (const sqlite_error& e) {
      throw sqlite_error("migration " + std::to_string(i + 1) + " failed: " + e.what(), e.code());
    }
    db.exec("PRAGMA user_version = " + std::to_string(i + 1));
    tx.commit();
  }
}

}  // namespace rbee::common
