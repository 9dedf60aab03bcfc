// spec/test-001.md section D, model provisioning on `localhost` through the queen, from the
// stand-in hub (tests/e2e/harness/hub_server.h) with injected faults: scenarios 22-29.
#include <gtest/gtest.h>

#include "harness/hub_server.h"
#include "harness/scenario_fixture.h"

namespace rbee::e2e::scenario {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const std::string repo = "rbee-test/stories260K-GGUF";
const std::string file = "stories260K.gguf";
const std::string ref = "hf:" + repo + ":" + file;

class Scenarios_D : public ::testing::Test {
 protected:
  void SetUp() override {
    hub.add_file(repo, file, stories_path());
    hub.start();
    q.set_env("HF_ENDPOINT", hub.url());
  }
  void TearDown() override {
    EXPECT_TRUE(q.stop_all()) << "processes left after the queen stopped";
    hub.stop();
  }

  cli_result download() {
    return q.cli({"models", "download", "--node", "localhost", "--model", ref}, 180s);
  }
  json catalog() {
    auto r = q.cli({"models", "list", "--node", "localhost", "--json"});
    return json::parse(r.out, nullptr, false).value("models", json::array());
  }
  // Files under RBEE_HOME that hold model bytes (finished or partial).
  std::vector<fs::path> model_files() {
    std::vector<fs::path> found;
    for (const auto& e : fs::recursive_directory_iterator(q.home().path())) {
      auto name = e.path().filename().string();
      if (e.is_regular_file() && (contains(name, ".gguf") || contains(name, ".part"))) {
        found.push_back(e.path());
      }
    }
    return found;
  }
  size_t model_size() { return fs::file_size(stories_path()); }

  hub_server hub;
  scenario_queen q;
};

TEST_F(Scenarios_D, S22_model_in_catalog_no_download) {
  q.start();
  ASSERT_EQ(download().exit_code, 0) << q.logs();
  auto gets = hub.downloads(repo, file).size();
  ASSERT_GE(gets, 1u);
  auto r = q.infer(ref, {"--max-tokens", "4", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err << q.logs();
  EXPECT_TRUE(r.took_step("model_cached")) << r.out;
  EXPECT_FALSE(r.took_step("download_start")) << r.out;
  EXPECT_EQ(hub.downloads(repo, file).size(), gets) << "no new GET for a catalogued model";
}

TEST_F(Scenarios_D, S23_download_with_progress) {
  // Slow enough that progress is reported more than once.
  hub.set_fault(repo, file, {.chunk_delay = 60ms});
  q.start();
  std::vector<json> progress;
  auto s = q.run_task(
      {{"node", "localhost"}, {"model", ref}, {"prompt", "Once upon a time"}, {"max_tokens", 2}},
      [&](const json& e) {
        if (e.value("action", "") == "download_progress") progress.push_back(e);
        return true;
      });
  ASSERT_EQ(s.status, 200) << s.error.body;
  ASSERT_TRUE(s.first("end")) << q.logs();
  ASSERT_GE(progress.size(), 2u);
  int last = -1;
  for (const auto& p : progress) {
    ASSERT_TRUE(p.contains("percent")) << p.dump();
    ASSERT_TRUE(p.contains("speed_mbps")) << p.dump();
    EXPECT_GE(p["percent"].get<int>(), last);
    last = p["percent"];
  }
  EXPECT_GT(progress.back()["speed_mbps"].get<double>(), 0.0);
  EXPECT_EQ(s.count("narration", "download_complete"), 1);

  // On a terminal the CLI draws a bar with percent and MB/s (run under `script` for a pty).
  const std::string other_repo = "rbee-test/synth-tiny-GGUF", other_file = "synth-tiny-Q8_0.gguf";
  hub.add_file(other_repo, other_file, models_dir() + "/" + other_file);
  hub.set_fault(other_repo, other_file, {.chunk_delay = 60ms});
  if (!std::filesystem::exists("/usr/bin/script")) GTEST_SKIP() << "no /usr/bin/script for a pty";
  std::string command = binary_path("rbee").string() +
                        " models download --node localhost --model hf:" + other_repo + ":" +
                        other_file;
  auto tty = run_cli("/usr/bin/script", {"-q", "-e", "-c", command, "/dev/null"}, q.env(), "", 60s);
  EXPECT_EQ(tty.exit_code, 0) << tty.out << tty.err;
  EXPECT_TRUE(contains(tty.out, "Downloading [")) << tty.out;
  EXPECT_TRUE(contains(tty.out, "%")) << tty.out;
  EXPECT_TRUE(contains(tty.out, "MB/s")) << tty.out;
}

TEST_F(Scenarios_D, S24_download_interrupted_resumes) {
  uint64_t cut = model_size() * 4 / 10;
  hub.set_fault(repo, file, {.drop_at_byte = cut, .drop_attempts = 1});
  q.start();
  auto r = download();
  ASSERT_EQ(r.exit_code, 0) << r.err << q.logs();
  auto gets = hub.downloads(repo, file);
  ASSERT_GE(gets.size(), 2u);
  EXPECT_TRUE(gets[0].range.empty() || gets[0].range == "bytes=0-");
  ASSERT_TRUE(contains(gets[1].range, "bytes=")) << "the retry must resume with Range";
  uint64_t from = std::stoull(gets[1].range.substr(gets[1].range.find('=') + 1));
  EXPECT_GT(from, 0u);
  EXPECT_LE(from, cut);
  auto models = catalog();
  ASSERT_EQ(models.size(), 1u) << models.dump();
  EXPECT_EQ(models[0]["sha256"], hub.sha256(repo, file));
  EXPECT_EQ(models[0]["size_bytes"], model_size());
  fs::path local = models[0].value("local_path", "");
  ASSERT_TRUE(fs::exists(local));
  EXPECT_EQ(slurp(local), slurp(stories_path()));
}

// The hive's notes reach the CLI: a resumed transfer says why it failed and where it resumes.
TEST_F(Scenarios_D, S24_a_task_download_narrates_why_it_resumed) {
  hub.set_fault(repo, file, {.drop_at_byte = model_size() * 4 / 10, .drop_attempts = 1});
  q.start();
  auto r = q.cli(
      {"infer", "--model", ref, "--prompt", "Once upon a time", "--max-tokens", "2", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err << q.logs();
  EXPECT_TRUE(r.took_step("download_note")) << r.out;
  EXPECT_TRUE(contains(r.err, "resuming at ")) << r.err;
}

TEST_F(Scenarios_D, S25_download_keeps_failing) {
  hub.set_fault(repo, file, {.drop_at_byte = model_size() / 3, .drop_attempts = 0});
  q.start();
  auto r = download();
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_TRUE(contains(r.err, "DOWNLOAD_FAILED") || contains(r.err, "after 6 attempts")) << r.err;
  EXPECT_EQ(hub.downloads(repo, file).size(), 6u);
  EXPECT_TRUE(model_files().empty()) << "partial file left: " << model_files()[0];
  EXPECT_TRUE(catalog().empty()) << catalog().dump();
  // The same through the task API carries the code.
  auto s = q.run_task({{"node", "localhost"}, {"model", ref}, {"prompt", "x"}, {"max_tokens", 2}});
  auto err = s.first("error");
  ASSERT_TRUE(err || s.status != 200);
  if (err) {
    EXPECT_EQ((*err)["code"], "DOWNLOAD_FAILED") << err->dump();
  } else {
    EXPECT_EQ(s.error.json_body()["error"]["code"], "DOWNLOAD_FAILED");
  }
}

TEST_F(Scenarios_D, S26_checksum_mismatch) {
  hub.set_fault(repo, file, {.corrupt_bytes = true});
  q.start();
  auto r = download();
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_TRUE(contains(r.err, "checksum") || contains(r.err, "Checksum") ||
              contains(r.err, "SHA-256") || contains(r.err, "sha256"))
      << r.err;
  EXPECT_TRUE(model_files().empty());
  EXPECT_TRUE(catalog().empty());
}

TEST_F(Scenarios_D, S27_hub_errors) {
  hub.set_fault(repo, file, {.status = 404});
  q.start();
  auto s = q.run_task({{"node", "localhost"}, {"model", ref}, {"prompt", "x"}, {"max_tokens", 2}});
  auto err = s.first("error");
  ASSERT_TRUE(err) << s.status << s.error.body;
  EXPECT_EQ((*err)["code"], "MODEL_NOT_FOUND") << err->dump();
  auto r404 = download();
  EXPECT_EQ(r404.exit_code, 1);
  EXPECT_TRUE(contains(r404.err, repo)) << r404.err;

  for (int status : {401, 403}) {
    hub.set_fault(repo, file, {.status = status});
    auto r = download();
    EXPECT_EQ(r.exit_code, 1) << status;
    EXPECT_TRUE(contains(r.err, "HF_TOKEN")) << status << ": " << r.err;
  }
  EXPECT_TRUE(catalog().empty());
}

TEST_F(Scenarios_D, S28_not_enough_disk) {
  q.set_env("RBEE_DISK_LIMIT", "1000");
  q.start();
  auto s = q.run_task({{"node", "localhost"}, {"model", ref}, {"prompt", "x"}, {"max_tokens", 2}});
  auto err = s.first("error");
  ASSERT_TRUE(err) << s.status << s.error.body;
  EXPECT_EQ((*err)["code"], "DISK_FULL") << err->dump();
  auto r = download();
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.err, "disk") || contains(r.err, "Disk")) << r.err;
  // Refused before downloading: the hub saw no GET.
  EXPECT_TRUE(hub.downloads(repo, file).empty());
  EXPECT_TRUE(model_files().empty());
}

TEST_F(Scenarios_D, S29_catalog_row_from_gguf) {
  q.start();
  ASSERT_EQ(download().exit_code, 0) << q.logs();
  auto models = catalog();
  ASSERT_EQ(models.size(), 1u) << models.dump();
  const auto& m = models[0];
  EXPECT_EQ(m["reference"], ref);
  EXPECT_EQ(m["size_bytes"], model_size());
  EXPECT_EQ(m["sha256"], hub.sha256(repo, file));
  EXPECT_EQ(m["architecture"], "llama");
  EXPECT_EQ(m["quantization"], "F32");
  auto table = q.cli({"models", "list", "--node", "localhost"});
  EXPECT_TRUE(contains(table.out, "llama") && contains(table.out, "F32")) << table.out;
}

}  // namespace
}  // namespace rbee::e2e::scenario
