// The hub settings travel with each request (issue 21): HF_ENDPOINT and HF_TOKEN from the CLI's
// environment reach the hive that downloads the model, through the queen's typed requests,
// whatever the hive's own environment says. The token is a secret: it is in no output, log or
// database afterwards.
#include <gtest/gtest.h>

#include "harness/hub_server.h"
#include "harness/scenario_fixture.h"

namespace rbee::e2e::scenario {
namespace {

namespace fs = std::filesystem;

const char* const hub_repo = "rbee-test/stories";
const char* const hub_file = "stories260K.gguf";
const char* const secret = "hf_per_request_secret_4b1d";

TEST(CliHub, TheCallersEndpointAndTokenReachTheHiveThatDownloads) {
  hub_server hub;
  hub.add_file(hub_repo, hub_file, stories_path());
  hub.require_token(secret);
  hub.start();
  scenario_queen q;
  // The daemons' own hub is a port where nothing listens: only the request's settings work.
  q.set_env("HF_ENDPOINT", "http://127.0.0.1:9");
  q.set_env("RBEE_DOWNLOAD_BACKOFF_MS", "10");
  q.start();
  const std::string ref = std::string("hf:") + hub_repo + ":" + hub_file;
  auto env = q.env();
  env["HF_ENDPOINT"] = hub.url();

  auto refused = run_cli("rbee", {"models", "download", "-m", ref}, env);
  EXPECT_EQ(refused.exit_code, 1) << refused.out << refused.err;
  EXPECT_TRUE(contains(refused.err, "401")) << refused.err;
  EXPECT_TRUE(contains(refused.err, "HF_TOKEN")) << refused.err;
  ASSERT_FALSE(hub.requests().empty()) << "the CLI's HF_ENDPOINT was not used\n" << q.logs();
  EXPECT_EQ(hub.requests().back().status, 401);

  env["HF_TOKEN"] = secret;
  auto served = run_cli("rbee",
                        {"infer", "--node", "localhost", "--model", ref, "--prompt",
                         "Once upon a time", "--max-tokens", "4"},
                        env, "", 180s);
  ASSERT_EQ(served.exit_code, 0) << served.err << q.logs();
  auto gets = hub.downloads(hub_repo, hub_file);
  ASSERT_FALSE(gets.empty());
  EXPECT_EQ(gets.back().authorization, std::string("Bearer ") + secret);
  EXPECT_EQ(gets.back().status, 200);

  // The secret is nowhere: not in what the CLI printed, nor in any file of the queen's home
  // (its log and the hive's, the registry and the catalog databases).
  for (const auto& r : {refused, served}) {
    EXPECT_FALSE(contains(r.out + r.err, secret)) << r.out << r.err;
  }
  q.stop_all();
  size_t files = 0;
  for (const auto& entry : fs::recursive_directory_iterator(q.home().path())) {
    if (!entry.is_regular_file()) continue;
    ++files;
    EXPECT_FALSE(contains(slurp(entry.path()), secret)) << entry.path();
  }
  EXPECT_GT(files, 3u);
}

}  // namespace
}  // namespace rbee::e2e::scenario
