#include "hive/model_store.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

namespace rbee::hive {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

class ModelStore : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("hive-model-store-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(models_dir());
    catalog_ = std::make_unique<catalog>(dir_ / "models.db");
    model_store_options o;
    o.models_dir = models_dir();
    // Nothing listens on port 1: every hub request fails at once.
    o.download.hf_endpoint = "http://127.0.0.1:1";
    o.download.attempts = 1;
    o.download.connect_timeout = 1s;
    o.disk_free = [](const fs::path&) { return uint64_t{1} << 40; };
    store_ = std::make_unique<model_store>(*catalog_, o);
  }
  void TearDown() override {
    store_.reset();
    catalog_.reset();
    fs::remove_all(dir_);
  }
  fs::path models_dir() const { return dir_ / "models"; }

  // A catalog row for a hub download kept at local_path.
  model_entry add_hub_row(const std::string& id, const fs::path& local_path) {
    std::ofstream(local_path) << "not really a model";
    model_entry e;
    e.id = id;
    e.provider = "hf";
    e.reference = "hf:org/repo:" + id + ".gguf";
    e.file = id + ".gguf";
    e.local_path = local_path.string();
    e.size_bytes = fs::file_size(local_path);
    return catalog_->upsert(e);
  }

  static void wait_until_finished(const download_job& job) {
    download_job::snapshot snap;
    for (uint64_t seen = 0;; seen = snap.version) {
      snap = job.wait_change(seen, 1s);
      if (snap.stage == download_stage::complete || snap.stage == download_stage::error) return;
    }
  }

  fs::path dir_;
  std::unique_ptr<catalog> catalog_;
  std::unique_ptr<model_store> store_;
};

TEST(IsInsideDir, JudgesTheTextAndTheRealLocation) {
  const fs::path root = fs::temp_directory_path() / ("hive-inside-" + std::to_string(::getpid()));
  fs::remove_all(root);
  fs::create_directories(root / "models/hf/org");
  fs::create_directories(root / "elsewhere");
  fs::create_directory_symlink(root / "elsewhere", root / "models/hf/org/link");
  const fs::path models = root / "models";

  EXPECT_TRUE(is_inside_dir(models, models / "hf/org/repo/m.gguf"));  // need not exist yet
  EXPECT_TRUE(is_inside_dir(models / "", models / "hf/m.gguf"));
  EXPECT_TRUE(is_inside_dir(models, models / "hf/org/../m.gguf"));
  EXPECT_FALSE(is_inside_dir(models, models));
  EXPECT_FALSE(is_inside_dir(models, models / "."));
  EXPECT_FALSE(is_inside_dir(models, models / "hf/org/repo/../../../../x.gguf"));
  EXPECT_FALSE(is_inside_dir(models, models / "hf" / "/tmp/x.gguf"));  // "/" replaces the base
  EXPECT_FALSE(is_inside_dir(models, root / "models-other/x.gguf"));
  EXPECT_FALSE(is_inside_dir(models, "relative/x.gguf"));
  // A symlink below the models dir that points out of it.
  EXPECT_FALSE(is_inside_dir(models, models / "hf/org/link/x.gguf"));
  // The models dir itself may be a symlink; a path is trusted in the dir's own spelling only.
  fs::create_directory_symlink(models, root / "models-link");
  EXPECT_TRUE(is_inside_dir(root / "models-link", root / "models-link/hf/m.gguf"));
  EXPECT_FALSE(is_inside_dir(models, root / "models-link/hf/m.gguf"));
  fs::remove_all(root);
}

TEST_F(ModelStore, RemoveDeletesAHubFileInsideTheModelsDir) {
  fs::create_directories(models_dir() / "hf/org/repo");
  auto inside = models_dir() / "hf/org/repo/inside.gguf";
  add_hub_row("inside", inside);
  EXPECT_EQ(store_->remove("inside").id, "inside");
  EXPECT_FALSE(fs::exists(inside));
  EXPECT_FALSE(catalog_->find_by_id("inside"));
}

TEST_F(ModelStore, RemoveKeepsAFileOutsideTheModelsDirButDropsTheRow) {
  // Rows written before names were checked may point anywhere; the file is not the hive's.
  auto outside = dir_ / "victim.gguf";
  fs::create_directories(models_dir() / "hf/org/repo");
  add_hub_row("traversal", models_dir() / "hf/org/repo/../../../../victim.gguf");
  add_hub_row("absolute", outside);
  for (const auto* id : {"traversal", "absolute"}) {
    EXPECT_EQ(store_->remove(id).id, id);
    EXPECT_TRUE(fs::exists(outside)) << id;
    EXPECT_FALSE(catalog_->find_by_id(id)) << id;
  }
}

TEST_F(ModelStore, RemoveKeepsAFileReachedThroughASymlinkOutOfTheModelsDir) {
  fs::create_directories(dir_ / "elsewhere");
  fs::create_directories(models_dir() / "hf/org");
  fs::create_directory_symlink(dir_ / "elsewhere", models_dir() / "hf/org/repo");
  auto through_link = models_dir() / "hf/org/repo/linked.gguf";
  add_hub_row("linked", through_link);
  store_->remove("linked");
  EXPECT_TRUE(fs::exists(dir_ / "elsewhere/linked.gguf"));
}

TEST_F(ModelStore, JobTableStaysBoundedOldestFirstAndKeepsTheNewestFindable) {
  // Both kinds of job: aliases (finished at once, here unknown: 404) and hub files (a thread
  // that fails to reach the hub). Ids run past dl-9 / dl-10 / dl-100, where text order and
  // creation order differ.
  std::vector<std::string> ids;
  for (int i = 0; i < 300; ++i) {
    std::shared_ptr<download_job> job;
    if (i % 3 == 0) {
      job = store_->start_download(
          api::parse_model_ref("hf:org/repo" + std::to_string(i) + ":m.Q4_K_M.gguf"));
    } else {
      job = store_->start_download(api::parse_model_ref("no-such-model-" + std::to_string(i)));
    }
    wait_until_finished(*job);
    ids.push_back(job->id());
  }
  EXPECT_EQ(store_->job_count(), model_store::max_remembered_jobs);
  EXPECT_FALSE(store_->find_job(ids.front())) << "the oldest job is forgotten";
  EXPECT_FALSE(store_->find_job(ids[43])) << "jobs beyond the newest 256 are forgotten";
  for (size_t i = ids.size() - 256; i < ids.size(); ++i) {
    auto job = store_->find_job(ids[i]);
    ASSERT_TRUE(job) << ids[i];
    EXPECT_EQ(job->id(), ids[i]);
  }
}

}  // namespace
}  // namespace rbee::hive
