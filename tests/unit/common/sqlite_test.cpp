#include "common/sqlite.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <array>

namespace rbee::common {
namespace {

namespace fs = std::filesystem;

class SqliteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::temp_directory_path() /
          ("rbee-sqlite-test-" + std::to_string(::getpid()) + "-" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir);
  }
  void TearDown() override { fs::remove_all(dir); }
  fs::path dir;
};

constexpr std::array<std::string_view, 2> v2 = {
    "CREATE TABLE nodes (name TEXT PRIMARY KEY, port INTEGER NOT NULL)",
    "ALTER TABLE nodes ADD COLUMN last_seen INTEGER",
};

TEST_F(SqliteTest, MigrationsRunOnceInOrder) {
  auto path = dir / "db.sqlite";
  {
    auto db = database::open(path);
    EXPECT_EQ(db.user_version(), 0);
    migrate(db, std::span(v2).first(1));
    EXPECT_EQ(db.user_version(), 1);
    db.exec("INSERT INTO nodes (name, port) VALUES ('a', 22)");
  }
  {
    auto db = database::open(path);
    migrate(db, v2);  // applies only the second
    EXPECT_EQ(db.user_version(), 2);
    migrate(db, v2);  // no-op
    auto st = db.prepare("SELECT name, port, last_seen FROM nodes");
    ASSERT_TRUE(st.step());
    EXPECT_EQ(st.column_text(0), "a");
    EXPECT_EQ(st.column_int64(1), 22);
    EXPECT_TRUE(st.column_is_null(2));
    EXPECT_FALSE(st.step());
  }
}

TEST_F(SqliteTest, NewerDatabaseThanCodeIsRejected) {
  auto db = database::open(dir / "db.sqlite");
  migrate(db, v2);
  EXPECT_THROW(migrate(db, std::span(v2).first(1)), sqlite_error);
}

TEST_F(SqliteTest, FailedMigrationRollsBackAndKeepsVersion) {
  auto db = database::open(dir / "db.sqlite");
  constexpr std::array<std::string_view, 2> bad = {
      "CREATE TABLE t (x INTEGER)",
      "INSERT INTO t VALUES (1); CREATE TABLE broken (",
  };
  try {
    migrate(db, bad);
    FAIL();
  } catch (const sqlite_error& e) {
    EXPECT_NE(std::string(e.what()).find("migration 2"), std::string::npos) << e.what();
  }
  EXPECT_EQ(db.user_version(), 1);
  auto st = db.prepare("SELECT COUNT(*) FROM t");
  ASSERT_TRUE(st.step());
  EXPECT_EQ(st.column_int64(0), 0);  // the insert of the failed migration was rolled back
}

TEST_F(SqliteTest, BindTypesAndReuse) {
  auto db = database::open(dir / "db.sqlite");
  db.exec("CREATE TABLE m (id INTEGER PRIMARY KEY, name TEXT, size INTEGER, ratio REAL)");
  auto ins = db.prepare("INSERT INTO m (name, size, ratio) VALUES (?, ?, ?)");
  ins.bind(1, "tiny").bind(2, size_t{1} << 40).bind(3, 0.5).run();
  EXPECT_EQ(db.last_insert_rowid(), 1);
  ins.reset();
  ins.bind(1, std::optional<std::string>{}).bind(2, -3).bind(3, nullptr).run();
  EXPECT_EQ(db.changes(), 1);

  auto sel = db.prepare("SELECT name, size, ratio FROM m ORDER BY id");
  ASSERT_TRUE(sel.step());
  EXPECT_EQ(sel.column_optional_text(0), "tiny");
  EXPECT_EQ(sel.column_int64(1), int64_t{1} << 40);
  EXPECT_DOUBLE_EQ(sel.column_double(2), 0.5);
  ASSERT_TRUE(sel.step());
  EXPECT_EQ(sel.column_optional_text(0), std::nullopt);
  EXPECT_EQ(sel.column_optional_int64(1), -3);
  EXPECT_TRUE(sel.column_is_null(2));
  EXPECT_FALSE(sel.step());
  EXPECT_EQ(sel.column_count(), 3);
}

TEST_F(SqliteTest, ErrorsCarrySqliteMessage) {
  auto db = database::open(dir / "db.sqlite");
  db.exec("CREATE TABLE u (k TEXT PRIMARY KEY)");
  db.exec("INSERT INTO u VALUES ('x')");
  auto ins = db.prepare("INSERT INTO u VALUES (?)");
  ins.bind(1, "x");
  try {
    ins.step();
    FAIL();
  } catch (const sqlite_error& e) {
    EXPECT_NE(std::string(e.what()).find("UNIQUE constraint failed"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(db.prepare("SELEC nonsense"), sqlite_error);
  EXPECT_THROW(database::open(dir / "missing-dir" / "db.sqlite"), sqlite_error);
}

TEST_F(SqliteTest, WalForeignKeysAndTransactions) {
  auto db = database::open(dir / "db.sqlite");
  {
    auto mode = db.prepare("PRAGMA journal_mode");
    ASSERT_TRUE(mode.step());
    EXPECT_EQ(mode.column_text(0), "wal");
  }  // finalized: a pending read would pin an old snapshot for the statements below
  db.exec("CREATE TABLE p (id INTEGER PRIMARY KEY); CREATE TABLE c (p INTEGER REFERENCES p(id))");
  EXPECT_THROW(db.exec("INSERT INTO c VALUES (99)"), sqlite_error);
  {
    transaction tx(db);
    db.exec("INSERT INTO p VALUES (1)");
  }  // rolled back
  {
    transaction tx(db);
    db.exec("INSERT INTO p VALUES (2)");
    tx.commit();
  }
  auto st = db.prepare("SELECT id FROM p");
  ASSERT_TRUE(st.step());
  EXPECT_EQ(st.column_int64(0), 2);
  EXPECT_FALSE(st.step());
}

}  // namespace
}  // namespace rbee::common
