// Scenario 14 of spec/test-001.md: the queen's OpenAI API driven by the stock `openai` npm
// package (installed at test time into a temp dir; never committed).
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <optional>
#include <sstream>

#include "queen/queen_fixture.h"

namespace rbee::e2e {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::optional<fs::path> find_in_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  if (!path) return std::nullopt;
  std::stringstream ss(path);
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    fs::path candidate = fs::path(dir) / name;
    if (!dir.empty() && ::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return std::nullopt;
}

TEST(OpenAiSdkE2E, StockClientWorksAgainstTheQueen) {
  auto node = find_in_path("node");
  auto npm = find_in_path("npm");
  if (!node || !npm) GTEST_SKIP() << "node/npm are not installed: OpenAI SDK test skipped";
  if (!have_hive_and_worker()) GTEST_SKIP() << "rbee-hive / llm-worker-rbee are not built";

  temp_home sdk_dir;
  auto install = run_cli(npm->string(),
                         {"install", "--prefix", sdk_dir.str(), "--no-audit", "--no-fund",
                          "--no-package-lock", "--loglevel=error", "openai"},
                         {}, "", 300s);
  ASSERT_EQ(install.exit_code, 0) << "npm install openai failed:\n" << install.err;
  fs::copy_file(fs::path(RBEE_SOURCE_DIR) / "tests/e2e/openai/openai_sdk.mjs",
                sdk_dir.path() / "openai_sdk.mjs");

  queen_fixture q;
  q.start({}, {{"RBEE_API_KEY", "sdk-key"}});
  auto r = run_cli(node->string(), {(sdk_dir.path() / "openai_sdk.mjs").string()},
                   {{"RBEE_OPENAI_BASE_URL", q.url() + "/v1"},
                    {"RBEE_OPENAI_KEY", "sdk-key"},
                    {"RBEE_MODEL", stories_model_ref()},
                    {"RBEE_GOLDEN", golden_continuation("Once upon a time")}},
                   "", 240s);
  EXPECT_EQ(r.exit_code, 0) << "stdout:\n"
                            << r.out << "\nstderr:\n"
                            << r.err << "\nqueen log:\n"
                            << q.queen().log_text();
  EXPECT_NE(r.out.find("all checks passed"), std::string::npos);
}

}  // namespace
}  // namespace rbee::e2e
