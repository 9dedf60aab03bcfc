// Ctrl+C during `rbee models download` (issue 21): the CLI stops watching, says that the hive
// goes on downloading and how to watch it, and the download does finish.
#include <gtest/gtest.h>

#include "harness/hub_server.h"
#include "harness/scenario_fixture.h"

namespace rbee::e2e::scenario {
namespace {

const char* const hub_repo = "rbee-test/synth";
const char* const hub_file = "synth-tiny-f16.gguf";  // 6.8 MB: a few seconds on a slowed hub

TEST(CliDownload, CtrlCLeavesTheDownloadRunningAndSaysHowToWatchIt) {
  hub_server hub;
  hub.add_file(hub_repo, hub_file, models_dir() + "/" + hub_file);
  hub.set_fault(hub_repo, hub_file, {.chunk_delay = std::chrono::milliseconds(30)});
  hub.start();
  scenario_queen q;
  q.set_env("HF_ENDPOINT", hub.url());
  q.start();
  const std::string ref = std::string("hf:") + hub_repo + ":" + hub_file;

  auto cli = q.cli_background({"models", "download", "-m", ref}, "download.log");
  ASSERT_TRUE(eventually([&] { return !hub.downloads(hub_repo, hub_file).empty(); }, 30s))
      << cli->output() << q.logs();
  std::this_thread::sleep_for(300ms);
  cli->signal(SIGINT);
  auto code = cli->wait(10s);
  ASSERT_TRUE(code) << cli->output();
  EXPECT_EQ(*code, 130) << cli->output();
  EXPECT_TRUE(contains(cli->output(), "continues on node 'localhost' in the background"))
      << cli->output();
  EXPECT_TRUE(contains(cli->output(), "rbee models download --node localhost -m " + ref))
      << cli->output();

  // What it said holds: the hive finishes the download on its own.
  auto listed = [&] {
    auto r = q.cli({"models", "list", "--json"});
    if (r.exit_code != 0) return false;
    return !nlohmann::json::parse(r.out)["models"].empty();
  };
  EXPECT_TRUE(eventually(listed, 60s, 500ms)) << q.logs();
  EXPECT_EQ(hub.downloads(hub_repo, hub_file).size(), 1u);  // not restarted
  auto again = q.cli({"models", "download", "-m", ref});
  EXPECT_EQ(again.exit_code, 0) << again.err;
}

}  // namespace
}  // namespace rbee::e2e::scenario
