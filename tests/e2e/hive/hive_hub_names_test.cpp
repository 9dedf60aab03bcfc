// File names from the hub are untrusted (issue 13, finding 1): a hostile hub listing
// "../../x.gguf" or "/abs/x.gguf" must not make the hive write, or later delete, a file
// outside its models directory.
#include "common/sqlite.h"
#include "hive_fixture.h"

namespace rbee::e2e::hive_test {
namespace {

namespace fs = std::filesystem;

const std::string traversal_repo = "evil/traversal";
const std::string absolute_repo = "evil/absolute";
const std::string mixed_repo = "evil/mixed";
// From models/hf/ORG/REPO four levels up is RBEE_HOME itself.
const std::string traversal_name = "../../../../evil.gguf";

class HiveHubNames : public hive_fixture {
 protected:
  void SetUp() override {
    absolute_name = (home.path() / "outside" / "evil.gguf").string();
    const fs::path model = shared_models / test_file;
    hub.add_file(traversal_repo, traversal_name, model);
    hub.add_file(traversal_repo, "../../evil-too.gguf", model);
    hub.add_file(absolute_repo, absolute_name, model);
    hub.add_file(mixed_repo, "../../../../evil.Q4_K_M.gguf", model);
    hub.add_file(mixed_repo, "synth-tiny-Q8_0.gguf", shared_models / "synth-tiny-Q8_0.gguf");
    // Whatever URL the hive makes of "../" names, this hub answers it with a model.
    hub.serve_unmatched_paths(model);
    hive_fixture::SetUp();
  }

  // Every regular file below RBEE_HOME but outside models/, logs/ and the hive's own files.
  std::vector<fs::path> stray_files() const {
    std::vector<fs::path> found;
    for (auto it = fs::recursive_directory_iterator(home.path());
         it != fs::recursive_directory_iterator(); ++it) {
      auto rel = it->path().lexically_relative(home.path());
      auto top = rel.begin()->string();
      if (top == "models" || top == "logs" || top == "empty-config") {
        it.disable_recursion_pending();
        continue;
      }
      bool own = top.starts_with("models.db") || top.starts_with("hive") || top == "run";
      if (it->is_regular_file() && !own) found.push_back(it->path());
    }
    return found;
  }

  std::string absolute_name;
};

const json& last(const std::vector<json>& events) {
  static const json none = json::object();
  return events.empty() ? none : events.back();
}

TEST_F(HiveHubNames, ListingsWithOnlyEscapingNamesFailWithoutWritingAnything) {
  start_hive();
  for (const auto& [repo, bad] :
       {std::pair{traversal_repo, traversal_name}, std::pair{absolute_repo, absolute_name}}) {
    auto events = download("hf:" + repo);
    ASSERT_EQ(last(events)["stage"], "error") << repo << ": " << last(events).dump();
    EXPECT_EQ(last(events)["code"], "DOWNLOAD_FAILED") << repo;
    EXPECT_NE(last(events)["message"].get<std::string>().find(bad), std::string::npos)
        << last(events).dump();

    // The spawn path says the same with its status.
    auto res = post("/v1/workers/spawn", {{"model_ref", "hf:" + repo}, {"backend", "cpu"}});
    EXPECT_EQ(res.status, 502) << res.body;
    EXPECT_EQ(res.json_body()["error"]["code"], "DOWNLOAD_FAILED") << res.body;
  }
  // Nothing was fetched, let alone written: only the listings were asked for.
  for (const auto& r : hub.requests()) {
    EXPECT_TRUE(r.path.starts_with("/api/models/")) << r.method << " " << r.path;
  }
  EXPECT_FALSE(fs::exists(home.path() / "evil.gguf"));
  EXPECT_FALSE(fs::exists(home.path() / "models" / "evil-too.gguf"));
  EXPECT_FALSE(fs::exists(absolute_name));
  EXPECT_EQ(stray_files(), std::vector<fs::path>{});
  EXPECT_TRUE(models().empty());
  EXPECT_EQ(get("/v1/health").json_body()["status"], "alive");
}

TEST_F(HiveHubNames, AListingWithSafeAndEscapingNamesUsesOnlyTheSafeOne) {
  start_hive();
  auto events = download("hf:" + mixed_repo);
  ASSERT_EQ(last(events)["stage"], "complete") << last(events).dump();
  EXPECT_EQ(models()[0]["reference"], "hf:" + mixed_repo + ":synth-tiny-Q8_0.gguf");
  auto local = fs::path(models()[0]["local_path"].get<std::string>());
  EXPECT_EQ(local, home.path() / "models/hf" / mixed_repo / "synth-tiny-Q8_0.gguf");
  EXPECT_FALSE(fs::exists(home.path() / "evil.Q4_K_M.gguf"));
  EXPECT_EQ(stray_files(), std::vector<fs::path>{});
}

TEST_F(HiveHubNames, DeletingARowThatPointsOutsideTheModelsDirKeepsTheFile) {
  start_hive();
  // A row such as a hive before this check could have written for a hostile listing.
  const fs::path victim = home.path() / "victim.gguf";
  fs::copy_file(shared_models / test_file, victim);
  {
    auto db = common::database::open(home.path() / "models.db");
    db.prepare(
          "INSERT INTO models (id, provider, reference, file, local_path, size_bytes, "
          "downloaded_at_unix) VALUES ('forged', 'hf', 'hf:evil/absolute:victim.gguf', "
          "'victim.gguf', ?, ?, 0)")
        .bind(1, victim.string())
        .bind(2, fs::file_size(victim))
        .run();
  }
  auto res = client().del("/v1/models/forged");
  EXPECT_EQ(res.status, 200) << res.body;
  EXPECT_TRUE(fs::exists(victim));
  EXPECT_TRUE(models().empty()) << models().dump();
  EXPECT_NE(hive->log_text().find("outside the models directory"), std::string::npos);
}

}  // namespace
}  // namespace rbee::e2e::hive_test
