#include "hive/catalog.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include "common/sqlite.h"
#include "hive/downloader.h"

namespace rbee::hive {
namespace {

class Catalog : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("hive-catalog-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path db() const { return dir_ / "models.db"; }
  std::filesystem::path dir_;
};

model_entry sample(std::string reference, std::string file) {
  model_entry e;
  e.provider = "hf";
  e.reference = std::move(reference);
  e.file = std::move(file);
  e.local_path = "/models/" + e.file;
  e.size_bytes = 1234;
  e.sha256 = std::string(64, 'a');
  e.architecture = "llama";
  e.quantization = "Q4_K_M";
  e.parameters = 1'100'000'000;
  e.context_length = 2048;
  e.downloaded_at_unix = 1'700'000'000;
  return e;
}

TEST_F(Catalog, FreshDatabaseIsAtTheLatestSchema) {
  catalog c(db());
  EXPECT_EQ(c.schema_version(), static_cast<int>(catalog_migrations().size()));
  EXPECT_TRUE(c.list().empty());
}

TEST_F(Catalog, MigratesAVersionOneDatabaseKeepingItsRows) {
  {
    // A catalog written by the first schema.
    auto d = common::database::open(db());
    common::migrate(d, catalog_migrations().subspan(0, 1));
    d.exec(
        "INSERT INTO models (id, provider, reference, file, local_path, size_bytes, sha256, "
        "architecture, "
        "quantization, parameters, downloaded_at_unix) VALUES ('old', 'hf', 'hf:o/r:old.gguf', "
        "'old.gguf', "
        "'/m/old.gguf', 42, '', 'llama', 'Q8_0', 7, 1)");
    EXPECT_EQ(d.user_version(), 1);
  }
  catalog c(db());
  EXPECT_EQ(c.schema_version(), 2);
  auto old = c.find_by_id("old");
  ASSERT_TRUE(old);
  EXPECT_EQ(old->size_bytes, 42u);
  EXPECT_EQ(old->quantization, "Q8_0");
  EXPECT_EQ(old->context_length, 0u);  // the column the second migration added
}

TEST_F(Catalog, RefusesADatabaseNewerThanTheCode) {
  {
    auto d = common::database::open(db());
    d.exec("PRAGMA user_version = 99");
  }
  EXPECT_THROW(catalog c(db()), common::sqlite_error);
}

TEST_F(Catalog, UpsertAssignsUniqueIdsAndKeepsThemAcrossUpdates) {
  catalog c(db());
  auto a = c.upsert(sample("hf:org/a:model.Q4_K_M.gguf", "model.Q4_K_M.gguf"));
  auto b = c.upsert(sample("hf:org/b:model.Q4_K_M.gguf", "model.Q4_K_M.gguf"));
  EXPECT_EQ(a.id, "model.q4_k_m");
  EXPECT_EQ(b.id, "model.q4_k_m-2");

  auto changed = sample("hf:org/a:model.Q4_K_M.gguf", "model.Q4_K_M.gguf");
  changed.size_bytes = 999;
  auto again = c.upsert(changed);
  EXPECT_EQ(again.id, a.id);
  EXPECT_EQ(c.list().size(), 2u);
  EXPECT_EQ(c.find_by_id(a.id)->size_bytes, 999u);
}

TEST_F(Catalog, FindsByIdOrReferenceAndRemoves) {
  {
    catalog c(db());
    c.upsert(sample("hf:org/a:x.gguf", "x.gguf"));
  }
  catalog c(db());  // persisted
  auto by_id = c.find("x");
  ASSERT_TRUE(by_id);
  EXPECT_EQ(by_id->reference, "hf:org/a:x.gguf");
  EXPECT_EQ(by_id->to_json()["sha256"], std::string(64, 'a'));
  EXPECT_TRUE(c.find("hf:org/a:x.gguf"));
  EXPECT_FALSE(c.find("y"));
  EXPECT_TRUE(c.remove("x"));
  EXPECT_FALSE(c.remove("x"));
  EXPECT_TRUE(c.list().empty());
}

TEST(CatalogIds, DerivedFromFileNames) {
  EXPECT_EQ(id_from_file_name("TinyLlama-1.1B.Q4_K_M.gguf"), "tinyllama-1.1b.q4_k_m");
  EXPECT_EQ(id_from_file_name("sub/dir/Model Name.gguf"), "model-name");
  EXPECT_EQ(id_from_file_name("..gguf"), "model");
  EXPECT_EQ(id_from_file_name(".hidden.gguf"), "hidden");
}

TEST(Etags, Sha256OnlyWhenItIsOne) {
  std::string sha(64, 'A');
  EXPECT_EQ(sha256_from_etag("\"" + sha + "\""), std::string(64, 'a'));
  EXPECT_EQ(sha256_from_etag("W/\"" + sha + "\""), std::string(64, 'a'));
  EXPECT_EQ(sha256_from_etag("\"d41d8cd98f00b204e9800998ecf8427e\""), "");  // md5-like git etag
  EXPECT_EQ(sha256_from_etag("\"" + std::string(63, 'a') + "g\""), "");
}

}  // namespace
}  // namespace rbee::hive
