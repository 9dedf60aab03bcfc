// The `rbee` CLI end to end against real daemons. Scenarios of spec/test-001.md: 8 (unknown
// node, exit 1), 11 (cold start via the CLI), 15 (greedy output equals rbee-engine's),
// 53 (auto-started queen stays), 54 (--ephemeral leaves nothing), 55 (pre-started queen used).
#include <gtest/gtest.h>

#include <signal.h>

#include <chrono>
#include <fstream>
#include <future>
#include <map>
#include <thread>

#include "common/config.h"
#include "queen/queen_fixture.h"

namespace rbee::e2e {
namespace {

using namespace std::chrono_literals;

bool answers(const std::string& url) {
  common::client_options o;
  o.connect_timeout = 500ms;
  o.read_timeout = 1s;
  try {
    return common::http_client(url, o).get("/health").ok();
  } catch (const common::connection_error&) {
    return false;
  }
}

TEST(CliE2E, UsageErrorsExit2) {
  EXPECT_EQ(run_cli("rbee", {"infer", "--no-such-flag"}).exit_code, 2);
  auto r = run_cli("rbee", {"infer", "--model", "m"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("prompt"), std::string::npos);
  EXPECT_EQ(run_cli("rbee", {"--version"}).exit_code, 0);
}

TEST(CliE2E, UnknownNodeExits1WithHint) {
  queen_fixture q;
  q.start();
  auto r = run_cli("rbee", {"infer", "--node", "workstation", "--model", "m", "--prompt", "hi"},
                   q.env());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("Node 'workstation' not found"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("rbee setup add-node"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty());
}

TEST(CliE2E, InvalidApiKeyExits1WithAuthenticationFailed) {
  queen_fixture q;
  q.start({}, {{"RBEE_API_KEY", "right"}});
  auto env = q.env();
  env["RBEE_API_KEY"] = "wrong";
  auto r = run_cli("rbee", {"setup", "list-nodes"}, env);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("Authentication failed"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("RBEE_API_KEY"), std::string::npos) << r.err;
  env["RBEE_API_KEY"] = "right";
  auto ok = run_cli("rbee", {"setup", "list-nodes", "--json"}, env);
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_EQ(nlohmann::json::parse(ok.out)["nodes"][0]["node_name"], "localhost");
}

TEST(CliE2E, AutoStartLeavesAQueenRunningAndEphemeralLeavesNone) {
  temp_home home;
  std::string url = "http://127.0.0.1:" + std::to_string(free_port());
  std::ofstream(home.path() / "config.toml") << "# e2e test\n";
  std::map<std::string, std::string> env = {
      {"RBEE_HOME", home.str()},
      {"RBEE_QUEEN_URL", url},
      {"RBEE_HIVE_PORT", std::to_string(free_port())},
      {"RBEE_CONFIG", (home.path() / "config.toml").string()}};
  ASSERT_FALSE(answers(url));
  auto ephemeral =
      run_cli("rbee", {"infer", "--ephemeral", "--node", "nope", "-m", "m", "-p", "x"}, env);
  EXPECT_EQ(ephemeral.exit_code, 1);
  EXPECT_NE(ephemeral.err.find("Starting queen-rbee"), std::string::npos) << ephemeral.err;
  EXPECT_FALSE(answers(url)) << "--ephemeral must stop the queen it started";

  auto persistent = run_cli("rbee", {"infer", "--node", "nope", "-m", "m", "-p", "x"}, env);
  EXPECT_EQ(persistent.exit_code, 1);
  EXPECT_TRUE(answers(url)) << "the auto-started queen stays";
  EXPECT_TRUE(std::filesystem::exists(home.logs_dir() / "queen.log"));
  // A second run uses it (no second start).
  auto again = run_cli("rbee", {"queen", "status"}, env);
  EXPECT_EQ(again.exit_code, 0);
  EXPECT_EQ(again.err.find("Starting queen-rbee"), std::string::npos);
  auto stop = run_cli("rbee", {"queen", "stop"}, env);
  EXPECT_EQ(stop.exit_code, 0) << stop.err;
  EXPECT_FALSE(answers(url));
}

TEST(CliE2E, InferPrintsWhatTheEngineGeneratesGreedy) {
  if (!have_hive_and_worker() || !std::filesystem::exists(binary_path("rbee-engine"))) {
    GTEST_SKIP() << "rbee-hive / llm-worker-rbee / rbee-engine are not built";
  }
  queen_fixture q;
  q.start();
  auto engine = run_cli("rbee-engine", {"generate", "-m", stories_model_path(), "-p",
                                        "Once upon a time", "-n", "24"});
  ASSERT_EQ(engine.exit_code, 0) << engine.err;
  auto r = run_cli("rbee",
                   {"infer", "--node", "localhost", "--model", stories_model_ref(), "--prompt",
                    "Once upon a time", "--max-tokens", "24", "--temperature", "0"},
                   q.env());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto trim = [](std::string s) {
    while (!s.empty() && s.back() == '\n') s.pop_back();
    return s;
  };
  EXPECT_EQ(trim(r.out), trim(engine.out));
  EXPECT_FALSE(r.out.empty());
  // Narration only on stderr: one line per phase and the final stats line.
  EXPECT_NE(r.err.find("Starting rbee-hive"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("tok/s"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("time to first token"), std::string::npos) << r.err;

  // Warm, with the prompt from stdin and JSON output.
  auto json_run = run_cli("rbee",
                          {"infer", "--node", "localhost", "--model", stories_model_ref(), "-p",
                           "-", "--max-tokens", "24", "--temperature", "0", "--json"},
                          q.env(), "Once upon a time");
  ASSERT_EQ(json_run.exit_code, 0) << json_run.err;
  auto j = nlohmann::json::parse(json_run.out);
  EXPECT_EQ(trim(j["text"]), trim(engine.out));
  EXPECT_EQ(j["tokens_out"], 24);
  EXPECT_NE(json_run.err.find("warm"), std::string::npos) << json_run.err;

  auto workers = run_cli("rbee", {"workers", "list", "--json"}, q.env());
  ASSERT_EQ(workers.exit_code, 0);
  EXPECT_EQ(nlohmann::json::parse(workers.out)["workers"].size(), 1u);
}

TEST(CliE2E, WorkersModelsLogsAndHiveCommands) {
  if (!have_hive_and_worker()) GTEST_SKIP() << "rbee-hive / llm-worker-rbee are not built";
  queen_fixture q;
  q.start();
  auto env = q.env();
  auto empty = run_cli("rbee", {"workers", "list", "--json"}, env);
  ASSERT_EQ(empty.exit_code, 0) << empty.err;
  EXPECT_EQ(nlohmann::json::parse(empty.out),
            nlohmann::json({{"workers", nlohmann::json::array()}}));

  auto started = run_cli("rbee", {"hive", "start", "--node", "localhost"}, env);
  ASSERT_EQ(started.exit_code, 0) << started.err;
  EXPECT_NE(started.out.find("is running"), std::string::npos);
  auto status = run_cli("rbee", {"hive", "status", "--json"}, env);
  EXPECT_EQ(status.exit_code, 0);
  EXPECT_EQ(nlohmann::json::parse(status.out)["running"], true);

  auto infer = run_cli("rbee",
                       {"infer", "--node", "localhost", "-m", stories_model_ref(), "-p",
                        "Once upon a time", "--max-tokens", "4"},
                       env);
  ASSERT_EQ(infer.exit_code, 0) << infer.err;
  auto listed = nlohmann::json::parse(run_cli("rbee", {"workers", "list", "--json"}, env).out);
  ASSERT_EQ(listed["workers"].size(), 1u);
  std::string worker_id = listed["workers"][0]["worker_id"];

  auto health = run_cli("rbee", {"workers", "health", "--node", "localhost", "--json"}, env);
  ASSERT_EQ(health.exit_code, 0) << health.err;
  auto h = nlohmann::json::parse(health.out);
  ASSERT_EQ(h["workers"].size(), 1u);
  EXPECT_EQ(h["workers"][0]["health"], "healthy");

  auto models = run_cli("rbee", {"models", "list", "--node", "localhost", "--json"}, env);
  EXPECT_EQ(models.exit_code, 0) << models.err;
  EXPECT_TRUE(nlohmann::json::parse(models.out).contains("models")) << models.out;

  auto logs = run_cli("rbee", {"logs", "--node", "localhost"}, env);
  EXPECT_EQ(logs.exit_code, 0) << logs.err;

  auto shutdown = run_cli("rbee", {"workers", "shutdown", "--id", worker_id}, env);
  EXPECT_EQ(shutdown.exit_code, 0) << shutdown.err;
  // The worker unloads and exits; then the queen no longer knows it.
  auto deadline = std::chrono::steady_clock::now() + 15s;
  while (std::chrono::steady_clock::now() < deadline &&
         !nlohmann::json::parse(run_cli("rbee", {"workers", "list", "--json"}, env).out)["workers"]
              .empty()) {
    std::this_thread::sleep_for(100ms);
  }
  auto gone = run_cli("rbee", {"workers", "shutdown", "--id", worker_id}, env);
  EXPECT_EQ(gone.exit_code, 1);
  EXPECT_NE(gone.err.find("not found"), std::string::npos) << gone.err;

  auto stopped = run_cli("rbee", {"hive", "stop"}, env);
  EXPECT_EQ(stopped.exit_code, 0) << stopped.err;
  auto down = run_cli("rbee", {"hive", "status"}, env);
  EXPECT_EQ(down.exit_code, 1);
  EXPECT_NE(down.out.find("not running"), std::string::npos);
}

TEST(CliE2E, InterruptCancelsTheTaskPrintsCanceledAndExits130) {
  if (!have_hive_and_worker()) GTEST_SKIP() << "rbee-hive / llm-worker-rbee are not built";
  queen_fixture q;
  q.start({"--slots-per-worker", "1"});
  // A task that holds the only slot (its cold start) while the CLI waits in the queue.
  std::promise<void> holding;
  auto first = std::async(std::launch::async, [&] {
    bool sent = false;
    return q.run_task({{"node", "localhost"},
                       {"model", stories_model_ref()},
                       {"prompt", "Once upon a time"},
                       {"max_tokens", 8}},
                      "", [&](const nlohmann::json& e) {
                        if (!sent && e.value("action", "") == "cold_start") {
                          sent = true;
                          holding.set_value();
                        }
                      });
  });
  ASSERT_EQ(holding.get_future().wait_for(60s), std::future_status::ready);
  daemon_process cli(
      "rbee",
      {"infer", "--node", "localhost", "-m", stories_model_ref(), "-p", "Hi", "--max-tokens", "8"},
      q.env(), q.home().path() / "cli.log");
  auto deadline = std::chrono::steady_clock::now() + 30s;
  while (cli.log_text().find("waiting in queue") == std::string::npos &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_NE(cli.log_text().find("waiting in queue"), std::string::npos) << cli.log_text();
  ::kill(cli.pid(), SIGINT);
  deadline = std::chrono::steady_clock::now() + 10s;
  while (cli.running() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_TRUE(cli.exit_status());
  EXPECT_EQ(*cli.exit_status(), 130);
  EXPECT_NE(cli.log_text().find("Canceled."), std::string::npos) << cli.log_text();
  EXPECT_EQ(first.get().status, 200);
}

TEST(CliE2E, QueueFullIsRetriedWithBackoff) {
  if (!have_hive_and_worker()) GTEST_SKIP() << "rbee-hive / llm-worker-rbee are not built";
  queen_fixture q;
  q.start({"--slots-per-worker", "1", "--queue-size", "1"});
  nlohmann::json task = {{"node", "localhost"},
                         {"model", stories_model_ref()},
                         {"prompt", "Once upon a time"},
                         {"max_tokens", 8}};
  // One task holds the slot (its cold start), one fills the queue.
  std::vector<std::future<task_stream>> held;
  for (const char* action : {"cold_start", "queued"}) {
    auto seen = std::make_shared<std::promise<void>>();
    held.push_back(std::async(std::launch::async, [&q, task, seen, action = std::string(action)] {
      bool sent = false;
      return q.run_task(task, "", [&](const nlohmann::json& e) {
        if (!sent && e.value("action", "") == action) {
          sent = true;
          seen->set_value();
        }
      });
    }));
    ASSERT_EQ(seen->get_future().wait_for(60s), std::future_status::ready);
  }
  auto r = run_cli(
      "rbee",
      {"infer", "--node", "localhost", "-m", stories_model_ref(), "-p", "Hi", "--max-tokens", "4"},
      q.env());
  EXPECT_NE(r.err.find("retrying in 1 s"), std::string::npos) << r.err;
  EXPECT_EQ(r.exit_code, 0) << r.err;  // the queue drained while the CLI backed off
  for (auto& f : held) EXPECT_EQ(f.get().status, 200);
}

TEST(CliE2E, InstallCopiesBinariesAndWritesAConfig) {
  temp_home home;
  auto r = run_cli("rbee", {"install"}, {{"HOME", home.str()}});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* name : {"rbee", "queen-rbee"}) {
    auto p = home.path() / ".local" / "bin" / name;
    EXPECT_TRUE(std::filesystem::exists(p)) << p;
    EXPECT_NE(std::filesystem::status(p).permissions() & std::filesystem::perms::owner_exec,
              std::filesystem::perms::none);
  }
  auto config = home.path() / ".config" / "rbee" / "config.toml";
  ASSERT_TRUE(std::filesystem::exists(config));
  EXPECT_NE(r.out.find("Next steps"), std::string::npos);
  // The installed binary runs, and the config it wrote parses.
  auto version = run_cli((home.path() / ".local" / "bin" / "rbee").string(), {"--version"},
                         {{"HOME", home.str()}, {"RBEE_CONFIG", config.string()}});
  EXPECT_EQ(version.exit_code, 0);
  auto status = run_cli("rbee", {"queen", "status"},
                        {{"HOME", home.str()},
                         {"RBEE_CONFIG", config.string()},
                         {"RBEE_QUEEN_URL", "http://127.0.0.1:" + std::to_string(free_port())}});
  EXPECT_EQ(status.err.find("config"), std::string::npos) << status.err;
  // Running it again keeps the user's config.
  std::ofstream(config, std::ios::app) << "log = \"debug\"\n";
  auto again = run_cli("rbee", {"install"}, {{"HOME", home.str()}});
  EXPECT_EQ(again.exit_code, 0);
  EXPECT_NE(again.out.find("Kept existing config"), std::string::npos);
}

TEST(CliE2E, ConfigKeysPrintsTheTableAndShowMasksSecrets) {
  temp_home home;
  std::map<std::string, std::string> env = {
      {"HOME", home.str()}, {"HF_TOKEN", "hf-secret-value"}, {"RBEE_DOWNLOAD_ATTEMPTS", "3"}};
  auto keys = run_cli("rbee", {"config", "keys", "--json"}, env);
  ASSERT_EQ(keys.exit_code, 0) << keys.err;
  auto listed = nlohmann::json::parse(keys.out)["keys"];
  ASSERT_EQ(listed.size(), common::config_keys().size());
  for (size_t i = 0; i < listed.size(); ++i) {
    EXPECT_EQ(listed[i]["name"], common::config_keys()[i].name);
    EXPECT_EQ(listed[i]["env"], common::config_keys()[i].env_var);
  }
  auto table = run_cli("rbee", {"config", "keys"}, env);
  EXPECT_NE(table.out.find("RBEE_WORKER_STOP_GRACE_MS"), std::string::npos) << table.out;

  auto show = run_cli("rbee", {"config", "show", "--json"}, env);
  ASSERT_EQ(show.exit_code, 0) << show.err;
  EXPECT_EQ(show.out.find("hf-secret-value"), std::string::npos) << "a secret was printed";
  auto shown = nlohmann::json::parse(show.out)["keys"];
  EXPECT_EQ(shown["hf.token"]["set"], true);
  EXPECT_EQ(shown["hf.token"]["source"], "env");
  EXPECT_EQ(shown["hive.download_attempts"]["value"], "3");
  EXPECT_EQ(shown["worker.stop_grace_ms"]["source"], "default");
}

}  // namespace
}  // namespace rbee::e2e
