// The queen's web dashboard in a real browser (issue 19): Debian's chromium driven by
// puppeteer-core (tests/e2e/dashboard/dashboard.mjs; installed by scripts/install-test-clients.sh
// into .test-clients/dashboard, no browser download) against a real queen, its local hive and
// worker, and the stand-in hub for a download. Screenshots land in
// <build>/test-artifacts/dashboard/.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <optional>
#include <sstream>

#include "harness/hub_server.h"
#include "harness/scenario_fixture.h"

namespace rbee::e2e::scenario {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

const fs::path clients_dir = fs::path(RBEE_SOURCE_DIR) / ".test-clients/dashboard/node_modules";
const fs::path script = fs::path(RBEE_SOURCE_DIR) / "tests/e2e/dashboard/dashboard.mjs";
const fs::path screenshots = fs::path(RBEE_BIN_DIR).parent_path() / "test-artifacts/dashboard";

TEST(DashboardBrowser, FleetPlaygroundDownloadAndSignIn) {
  auto node = find_in_path("node");
  auto chromium = find_in_path("chromium");
  if (!node) GTEST_SKIP() << "node is not installed (scripts/install-deps.sh installs it)";
  if (!chromium) GTEST_SKIP() << "chromium is not installed (scripts/install-deps.sh installs it)";
  ASSERT_TRUE(fs::exists(clients_dir))
      << clients_dir << " is missing: run scripts/install-test-clients.sh (make test does)";

  // A download slow enough that the page sees the bar between 0 and 100.
  const std::string repo = "rbee-test/synth-tiny-GGUF", file = "synth-tiny-Q8_0.gguf";
  hub_server hub;
  hub.add_file(repo, file, models_dir() + "/" + file);
  hub.set_fault(repo, file, {.chunk_delay = 40ms});
  hub.start();

  const std::string key = "dashboard-key-0123456789";
  scenario_queen q;
  q.set_api_key(key);
  q.set_env("HF_ENDPOINT", hub.url());
  q.start();

  temp_home work;  // node resolves the script's imports from its own folder upwards
  fs::create_directory_symlink(clients_dir, work.path() / "node_modules");
  fs::copy_file(script, work.path() / "dashboard.mjs");
  fs::create_directories(screenshots);
  auto r = run_cli(node->string(), {(work.path() / "dashboard.mjs").string()},
                   {{"RBEE_QUEEN_URL", q.url()},
                    {"RBEE_API_KEY", key},
                    {"RBEE_MODEL", stories_ref()},
                    {"RBEE_DOWNLOAD_MODEL", "hf:" + repo + ":" + file},
                    {"RBEE_CHROMIUM", chromium->string()},
                    {"RBEE_SCREENSHOTS", screenshots.string()},
                    {"HOME", work.str()}},
                   "", 300s);
  EXPECT_EQ(r.exit_code, 0) << "stdout:\n" << r.out << "\nstderr:\n" << r.err << q.logs();
  EXPECT_NE(r.out.find("all checks passed"), std::string::npos) << r.out;
  for (const char* shot : {"login-refused.png", "playground.png", "fleet.png",
                           "models-download.png", "fleet-phone.png"}) {
    EXPECT_TRUE(fs::exists(screenshots / shot)) << shot;
  }
  EXPECT_TRUE(q.stop_all()) << "processes left after the queen stopped";
}

}  // namespace
}  // namespace rbee::e2e::scenario
