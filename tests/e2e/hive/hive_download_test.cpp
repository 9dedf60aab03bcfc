// Model provisioning through a real rbee-hive and a stand-in hub (test-001 D22-D29, E32, I57).
#include <fstream>

#include "common/sqlite.h"
#include "hive_fixture.h"

namespace rbee::e2e::hive_test {
namespace {

uint64_t model_size(const std::string& file = test_file) {
  return std::filesystem::file_size(shared_models / file);
}

const json& last(const std::vector<json>& events) {
  static const json none = json::object();
  return events.empty() ? none : events.back();
}

bool no_partial_files(const std::filesystem::path& dir) {
  if (!std::filesystem::exists(dir)) return true;
  for (auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (e.path().extension() == ".part") return false;
  }
  return true;
}

class HiveDownload : public hive_fixture {};

TEST_F(HiveDownload, ColdDownloadStreamsProgressVerifiesAndCatalogs) {
  hub.set_fault(test_repo, test_file, {.chunk_delay = 30ms});  // ~1 s: several progress events
  start_hive();
  auto events = download(test_ref);
  ASSERT_FALSE(events.empty());
  ASSERT_EQ(last(events)["stage"], "complete") << last(events).dump();

  int progress = 0;
  uint64_t previous = 0;
  for (const auto& e : events) {
    if (e["stage"] != "downloading") continue;
    ++progress;
    EXPECT_EQ(e["bytes_total"].get<uint64_t>(), model_size());
    EXPECT_GE(e["bytes_downloaded"].get<uint64_t>(), previous);  // monotonic
    previous = e["bytes_downloaded"].get<uint64_t>();
    EXPECT_TRUE(e["speed_mbps"].is_number());
  }
  EXPECT_GE(progress, 2) << "expected several progress events";

  // D29: the catalog row has what the GGUF header says, and the hub's hash.
  auto rows = models();
  ASSERT_EQ(rows.size(), 1u);
  const auto& row = rows[0];
  EXPECT_EQ(row["reference"], test_ref);
  EXPECT_EQ(row["provider"], "hf");
  EXPECT_EQ(row["size_bytes"].get<uint64_t>(), model_size());
  EXPECT_EQ(row["sha256"], hub.sha256(test_repo, test_file));
  EXPECT_EQ(row["architecture"], "llama");
  EXPECT_EQ(row["quantization"], "Q4_K_M");
  EXPECT_GT(row["parameters"].get<uint64_t>(), 3'000'000u);
  EXPECT_GT(row["downloaded_at_unix"].get<int64_t>(), 1'600'000'000);
  std::filesystem::path local = row["local_path"].get<std::string>();
  EXPECT_EQ(last(events)["local_path"], local.string());
  EXPECT_EQ(std::filesystem::file_size(local), model_size());
  EXPECT_TRUE(no_partial_files(home.path() / "models"));

  // D22: in the catalog now, so a second request downloads nothing.
  auto gets_before = hub.downloads(test_repo, test_file).size();
  EXPECT_EQ(gets_before, 1u);
  auto again = download(test_ref);
  EXPECT_EQ(last(again)["stage"], "complete");
  EXPECT_EQ(hub.downloads(test_repo, test_file).size(), gets_before);
  auto by_alias = download(row["id"].get<std::string>());
  EXPECT_EQ(last(by_alias)["local_path"], local.string());
}

TEST_F(HiveDownload, ResumesWithRangeAfterADropAtFortyPercent) {
  uint64_t drop_at = model_size() * 4 / 10;
  hub.set_fault(test_repo, test_file, {.drop_at_byte = drop_at, .drop_attempts = 1});
  start_hive();
  auto events = download(test_ref);
  ASSERT_EQ(last(events)["stage"], "complete") << last(events).dump();

  auto gets = hub.downloads(test_repo, test_file);
  ASSERT_EQ(gets.size(), 2u);
  EXPECT_EQ(gets[0].range, "");
  // The retry asked only for what was missing.
  ASSERT_TRUE(gets[1].range.starts_with("bytes=")) << gets[1].range;
  uint64_t resumed_from = std::stoull(gets[1].range.substr(6));
  EXPECT_GT(resumed_from, 0u);
  EXPECT_LE(resumed_from, drop_at);
  EXPECT_EQ(models()[0]["sha256"], hub.sha256(test_repo, test_file));
  bool narrated_retry = false;
  for (const auto& e : events) {
    // The retry says why: the cause curl gave for the dropped connection.
    narrated_retry |= e["stage"] == "narration" &&
                      e["message"].get<std::string>().find("attempt 2/6") != std::string::npos &&
                      e["message"].get<std::string>().find("partial file") != std::string::npos;
  }
  EXPECT_TRUE(narrated_retry);
}

// The partial file of a hive stopped mid-download, if any (the largest).
std::optional<std::filesystem::path> partial_file(const std::filesystem::path& dir) {
  std::optional<std::filesystem::path> found;
  if (!std::filesystem::exists(dir)) return found;
  for (auto& e : std::filesystem::recursive_directory_iterator(dir))
    if (e.path().extension() == ".part") found = e.path();
  return found;
}

TEST_F(HiveDownload, AHiveStoppedMidDownloadLeavesThePartForTheNextToResume) {
  hub.set_fault(test_repo, test_file, {.chunk_delay = 60ms});  // about 2 s for the file
  start_hive();
  auto res = post("/v1/models/download", {{"model_ref", test_ref}});
  ASSERT_EQ(res.status, 202) << res.body;
  std::optional<std::filesystem::path> part;
  ASSERT_TRUE(eventually(
      [&] {
        part = partial_file(home.path() / "models");
        return part && std::filesystem::file_size(*part) > model_size() / 5;
      },
      10s));
  EXPECT_EQ(hive->stop(), 0);
  ASSERT_TRUE(std::filesystem::exists(*part));
  const uint64_t kept = std::filesystem::file_size(*part);
  EXPECT_GT(kept, 0u);
  EXPECT_LT(kept, model_size());

  hub.set_fault(test_repo, test_file, {});
  start_hive();
  auto events = download(test_ref);
  ASSERT_EQ(last(events)["stage"], "complete") << last(events).dump();
  auto gets = hub.downloads(test_repo, test_file);
  ASSERT_EQ(gets.size(), 2u);
  ASSERT_TRUE(gets[1].range.starts_with("bytes=")) << gets[1].range;
  EXPECT_EQ(std::stoull(gets[1].range.substr(6)), kept);  // only what was missing
  EXPECT_EQ(models()[0]["sha256"], hub.sha256(test_repo, test_file));
  EXPECT_TRUE(no_partial_files(home.path() / "models"));
}

TEST_F(HiveDownload, StalledTransferIsDroppedAndResumed) {
  // The hub goes silent at 30 % for 4 s; with a 1 s stall timeout the hive gives up on that
  // connection and resumes on a new one.
  uint64_t stall_at = model_size() * 3 / 10;
  hub.set_fault(test_repo, test_file,
                {.stall_at_byte = stall_at, .stall_for = 4s, .stall_attempts = 1});
  start_hive({}, {{"RBEE_DOWNLOAD_STALL_S", "1"}});
  auto t0 = std::chrono::steady_clock::now();
  auto events = download(test_ref);
  ASSERT_EQ(last(events)["stage"], "complete") << last(events).dump();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 4s) << "waited for the stalled connection";
  auto gets = hub.downloads(test_repo, test_file);
  ASSERT_EQ(gets.size(), 2u);
  EXPECT_EQ(gets[1].range, "bytes=" + std::to_string(stall_at) + "-");
  EXPECT_EQ(models()[0]["sha256"], hub.sha256(test_repo, test_file));
}

TEST_F(HiveDownload, KeepsFailingThenDownloadFailedAfterSixAttemptsAndCleansUp) {
  hub.set_fault(test_repo, test_file, {.drop_at_byte = 100'000, .drop_attempts = 0});
  start_hive();
  auto events = download(test_ref);
  ASSERT_EQ(last(events)["stage"], "error");
  EXPECT_EQ(last(events)["code"], "DOWNLOAD_FAILED");
  EXPECT_NE(last(events)["message"].get<std::string>().find("6 attempts"), std::string::npos);
  EXPECT_EQ(hub.downloads(test_repo, test_file).size(), 6u);
  EXPECT_TRUE(no_partial_files(home.path() / "models"));
  EXPECT_TRUE(models().empty());
}

TEST_F(HiveDownload, ChecksumMismatchDeletesTheFile) {
  for (auto fault : {hub_fault{.wrong_hash = true}, hub_fault{.corrupt_bytes = true}}) {
    hub.set_fault(test_repo, test_file, fault);
    if (!hive) start_hive();
    auto events = download(test_ref);
    ASSERT_EQ(last(events)["stage"], "error");
    EXPECT_EQ(last(events)["code"], "DOWNLOAD_FAILED");
    EXPECT_NE(last(events)["message"].get<std::string>().find("Checksum mismatch"),
              std::string::npos);
    EXPECT_EQ(last(events)["details"]["reason"], "checksum_mismatch");
    EXPECT_FALSE(std::filesystem::exists(home.path() / "models/hf" / test_repo / test_file));
    EXPECT_TRUE(no_partial_files(home.path() / "models"));
    EXPECT_TRUE(models().empty());
  }
}

TEST_F(HiveDownload, HubNotFoundAndAuthErrors) {
  start_hive();
  auto missing = download("hf:" + test_repo + ":nope.Q4_K_M.gguf");
  EXPECT_EQ(last(missing)["stage"], "error");
  EXPECT_EQ(last(missing)["code"], "MODEL_NOT_FOUND");
  auto no_repo = download("hf:nobody/nothing");
  EXPECT_EQ(last(no_repo)["code"], "MODEL_NOT_FOUND");

  for (int status : {401, 403}) {
    hub.set_fault(test_repo, test_file, {.status = status});
    auto events = download(test_ref);
    ASSERT_EQ(last(events)["stage"], "error");
    EXPECT_NE(last(events)["message"].get<std::string>().find("HF_TOKEN"), std::string::npos)
        << status;
    EXPECT_EQ(last(events)["details"]["hub_status"], status);
  }
  // Not retried: one HEAD each, no body requests.
  EXPECT_TRUE(hub.downloads(test_repo, test_file).empty());
  EXPECT_TRUE(models().empty());
}

TEST_F(HiveDownload, AHubThatDoesNotResolveFailsAtOnceWithoutRetries) {
  start_hive({}, {{"HF_ENDPOINT", "http://rbee-test-hub.invalid"}});  // .invalid never resolves
  auto events = download(test_ref);
  ASSERT_EQ(last(events)["stage"], "error");
  EXPECT_EQ(last(events)["code"], "DOWNLOAD_FAILED");
  EXPECT_EQ(last(events)["details"]["reason"], "dns") << last(events).dump();
  EXPECT_TRUE(last(events)["details"].contains("hint"));
  EXPECT_EQ(hive->log_text().find("(attempt 1/"), std::string::npos) << hive->log_text();
}

TEST_F(HiveDownload, DiskFullBeforeAnyByte) {
  start_hive({"--disk-limit-bytes", std::to_string(model_size() / 2)});
  auto events = download(test_ref);
  ASSERT_EQ(last(events)["stage"], "error");
  EXPECT_EQ(last(events)["code"], "DISK_FULL");
  EXPECT_EQ(last(events)["details"]["required_bytes"].get<uint64_t>(), model_size());
  EXPECT_TRUE(hub.downloads(test_repo, test_file).empty());
  EXPECT_FALSE(std::filesystem::exists(home.path() / "models/hf" / test_repo));

  // The spawn path says the same with the 507 status.
  auto res = post("/v1/workers/spawn", {{"model_ref", test_ref}, {"backend", "cpu"}});
  EXPECT_EQ(res.status, 507);
  EXPECT_EQ(res.json_body()["error"]["code"], "DISK_FULL");
}

TEST_F(HiveDownload, RepoReferencePicksQ4KMAndSaysSo) {
  start_hive();
  auto events = download("hf:" + test_repo);
  ASSERT_EQ(last(events)["stage"], "complete") << last(events).dump();
  bool narrated = false;
  for (const auto& e : events) {
    if (e["stage"] == "narration")
      narrated |= e["message"].get<std::string>().find("Selected " + test_file) == 0;
  }
  EXPECT_TRUE(narrated);
  EXPECT_EQ(models()[0]["reference"], test_ref);
  // The repo reference now resolves from the catalog without the hub.
  auto listings = hub.requests().size();
  EXPECT_EQ(last(download("hf:" + test_repo))["stage"], "complete");
  EXPECT_EQ(hub.requests().size(), listings);
}

TEST_F(HiveDownload, ConcurrentRequestsShareOneDownload) {
  hub.set_fault(test_repo, test_file, {.chunk_delay = 20ms});
  start_hive();
  auto a = post("/v1/models/download", {{"model_ref", test_ref}});
  auto b = post("/v1/models/download", {{"model_ref", test_ref}});
  ASSERT_EQ(a.status, 202);
  ASSERT_EQ(b.status, 202);
  EXPECT_EQ(a.json_body()["download_id"], b.json_body()["download_id"]);
  // The repo reference picks the same file while it is downloading: it waits for that download.
  auto by_repo = post("/v1/models/download", {{"model_ref", "hf:" + test_repo}});
  ASSERT_EQ(by_repo.status, 202);
  auto events =
      sse("/v1/models/download/progress?id=" + a.json_body()["download_id"].get<std::string>());
  EXPECT_EQ(last(events)["stage"], "complete");
  auto repo_events = sse("/v1/models/download/progress?id=" +
                         by_repo.json_body()["download_id"].get<std::string>());
  EXPECT_EQ(last(repo_events)["stage"], "complete") << last(repo_events).dump();
  EXPECT_EQ(last(repo_events)["local_path"], last(events)["local_path"]);
  EXPECT_EQ(hub.downloads(test_repo, test_file).size(), 1u);
}

TEST_F(HiveDownload, FollowsHubRedirectsAndSendsTheToken) {
  hub.use_redirects(true);
  hub.require_token("hf_test_token");
  start_hive({}, {{"HF_TOKEN", "hf_test_token"}});
  auto events = download(test_ref);
  ASSERT_EQ(last(events)["stage"], "complete") << last(events).dump();
  // The LFS hash came from the redirect's X-Linked-Etag (the CDN's ETag is not a SHA-256).
  EXPECT_EQ(models()[0]["sha256"], hub.sha256(test_repo, test_file));
  for (const auto& r : hub.requests()) EXPECT_EQ(r.authorization, "Bearer hf_test_token") << r.path;
}

TEST_F(HiveDownload, DeletesModelsAndRequiresAuth) {
  start_hive();
  ASSERT_EQ(last(download(test_ref))["stage"], "complete");
  auto id = models()[0]["id"].get<std::string>();
  auto path = models()[0]["local_path"].get<std::string>();

  auto anonymous = common::http_client("http://127.0.0.1:" + std::to_string(port));
  EXPECT_EQ(anonymous.get("/v1/models/list").status, 401);
  EXPECT_EQ(anonymous.get("/v1/health").status, 200);

  EXPECT_EQ(client().del("/v1/models/" + id).status, 200);
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_TRUE(models().empty());
  auto again = client().del("/v1/models/" + id);
  EXPECT_EQ(again.status, 404);
  EXPECT_EQ(again.json_body()["error"]["code"], "MODEL_NOT_FOUND");
}

TEST_F(HiveDownload, BadInputGetsClearErrorsAndTheHiveKeepsServing) {
  start_hive();
  for (std::string bad :
       {"hf:", "hf:org", "hf:../etc:passwd.gguf", "hf:org/repo:../../x.gguf",
        "https://huggingface.co/org/repo", "file:../x.gguf", "../../etc/passwd"}) {
    for (std::string path : {"/v1/workers/spawn", "/v1/models/download"}) {
      auto res = post(path, {{"model_ref", bad}});
      EXPECT_EQ(res.status, 400) << path << " " << bad;
      auto err = res.json_body()["error"];
      EXPECT_EQ(err["code"], "INVALID_REQUEST");
      EXPECT_EQ(err["details"]["field"], "model_ref");
      EXPECT_FALSE(err["message"].get<std::string>().empty());
    }
  }
  auto wrong_type = post("/v1/workers/spawn", {{"model_ref", 42}});
  EXPECT_EQ(wrong_type.status, 400);
  EXPECT_EQ(wrong_type.json_body()["error"]["details"]["field"], "model_ref");
  auto bad_slots = post("/v1/workers/spawn", {{"model_ref", test_ref}, {"slots", 257}});
  EXPECT_EQ(bad_slots.json_body()["error"]["details"]["field"], "slots");

  auto unknown = post("/v1/workers/shutdown", {{"worker_id", "worker-doesnotexist"}});
  EXPECT_EQ(unknown.status, 404);
  EXPECT_EQ(unknown.json_body()["error"]["code"], "WORKER_NOT_FOUND");
  EXPECT_EQ(post("/v1/workers/ready", {{"worker_id", "worker-nope"}}).status, 404);
  EXPECT_EQ(get("/v1/logs?worker=../../etc/passwd").status, 400);
  EXPECT_EQ(get("/v1/models/download/progress?id=dl-999").status, 404);

  // Corrupt and truncated GGUF files on disk: 422 naming the problem.
  auto garbage = home.file("bad/garbage.gguf");
  std::ofstream(garbage) << "this is not a model, just text pretending to be one";
  auto truncated = home.file("bad/truncated.gguf");
  {
    std::ifstream in(shared_models / test_file, std::ios::binary);
    std::string head(2000, '\0');
    in.read(head.data(), static_cast<std::streamsize>(head.size()));
    std::ofstream(truncated, std::ios::binary) << head;
  }
  for (auto& [path, problem] : {std::pair{garbage, std::string("bad magic")},
                                std::pair{truncated, std::string("truncated")}}) {
    auto res =
        post("/v1/workers/spawn", {{"model_ref", "file:" + path.string()}, {"backend", "cpu"}});
    EXPECT_EQ(res.status, 422) << res.body;
    EXPECT_EQ(res.json_body()["error"]["code"], "INVALID_MODEL");
    EXPECT_NE(res.json_body()["error"]["message"].get<std::string>().find(problem),
              std::string::npos)
        << res.body;
  }
  auto missing_file = post("/v1/workers/spawn", {{"model_ref", "file:/nonexistent/model.gguf"}});
  EXPECT_EQ(missing_file.json_body()["error"]["code"], "MODEL_NOT_FOUND");
  auto unknown_alias = post("/v1/workers/spawn", {{"model_ref", "never-heard-of-it"}});
  EXPECT_EQ(unknown_alias.status, 404);
  EXPECT_EQ(unknown_alias.json_body()["error"]["code"], "MODEL_NOT_FOUND");

  auto raw = client().post_json("/v1/workers/spawn", json::array({1, 2}));
  EXPECT_EQ(raw.status, 400);
  EXPECT_TRUE(hive->running());
  EXPECT_EQ(get("/v1/health").json_body()["status"], "alive");
}

TEST_F(HiveDownload, PreflightRefusesWhatDoesNotFit) {
  start_hive({"--ram-limit-bytes", "1000000"});
  auto local = "file:" + (shared_models / test_file).string();
  auto res = post("/v1/workers/spawn", {{"model_ref", local}, {"backend", "cpu"}});
  ASSERT_EQ(res.status, 507) << res.body;
  auto err = res.json_body()["error"];
  EXPECT_EQ(err["code"], "INSUFFICIENT_RAM");
  EXPECT_GT(err["details"]["required_bytes"].get<uint64_t>(), model_size());
  EXPECT_EQ(err["details"]["available_bytes"].get<uint64_t>(), 1000000u);
  EXPECT_NE(err["details"]["hint"].get<std::string>().find("smaller quantization"),
            std::string::npos);

  auto cuda = post("/v1/workers/spawn", {{"model_ref", local}, {"backend", "cuda"}, {"device", 5}});
  ASSERT_EQ(cuda.status, 400);
  EXPECT_EQ(cuda.json_body()["error"]["code"], "BACKEND_UNAVAILABLE");
  EXPECT_EQ(cuda.json_body()["error"]["message"], "Device not available. Available: cpu");
  EXPECT_TRUE(workers().empty());

  auto metrics = get("/metrics").body;
  EXPECT_NE(metrics.find("rbee_hive_spawn_failures_total{code=\"INSUFFICIENT_RAM\"} 1"),
            std::string::npos)
      << metrics;
}

TEST_F(HiveDownload, CapabilitiesHealthAndCleanExit) {
  start_hive({"--ram-limit-bytes", "5000000000"});
  auto health = get("/v1/health").json_body();
  EXPECT_EQ(health["status"], "alive");
  EXPECT_EQ(health["api_version"], "v1");
  EXPECT_FALSE(health["version"].get<std::string>().empty());
  auto caps = get("/v1/capabilities").json_body();
  EXPECT_EQ(caps["backends"][0], "cpu");
  EXPECT_GT(caps["cpu_cores"].get<int>(), 0);
  EXPECT_GT(caps["ram_total_bytes"].get<uint64_t>(), 0u);
  EXPECT_EQ(caps["ram_free_bytes"].get<uint64_t>(), 5000000000u);
  EXPECT_GT(caps["disk_free_bytes"].get<uint64_t>(), 0u);

  ASSERT_EQ(last(download(test_ref))["stage"], "complete");
  auto hive_log = sse("/v1/logs");  // the hive's own log
  ASSERT_FALSE(hive_log.empty());
  bool logged_download = false;
  for (const auto& l : hive_log)
    logged_download |=
        l["line"].get<std::string>().find("/v1/models/download") != std::string::npos;
  EXPECT_TRUE(logged_download);

  EXPECT_EQ(post("/v1/admin/shutdown", json::object()).status, 202);
  EXPECT_TRUE(eventually([&] { return !hive->running(); }, 10s));
  EXPECT_EQ(hive->exit_status(), 0);
  auto db = common::database::open(home.path() / "models.db");
  auto st = db.prepare("SELECT count(*) FROM models");
  ASSERT_TRUE(st.step());
  EXPECT_EQ(st.column_int64(0), 1);
}

}  // namespace
}  // namespace rbee::e2e::hive_test
