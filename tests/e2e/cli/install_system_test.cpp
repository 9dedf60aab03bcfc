// `rbee install --system` (issue 21): the units it writes start. Installed into a staging root
// (the hidden --root), each unit's ExecStart runs with the unit's environment, its paths moved
// under that root and its ports moved to free ones: the hive (beyond loopback) starts with its
// token file, the queen stays on loopback and uses that hive for its `localhost` node.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <sstream>

#include "harness/scenario_fixture.h"

namespace rbee::e2e::scenario {
namespace {

namespace fs = std::filesystem;

struct unit_command {
  std::string executable;
  std::vector<std::string> args;
  std::map<std::string, std::string> env;
};

// ExecStart and Environment= of a unit, every absolute path moved under root.
unit_command read_unit(const fs::path& root, const fs::path& unit) {
  auto under_root = [&](const std::string& value) {
    return value.starts_with("/") ? (root / fs::path(value).relative_path()).string() : value;
  };
  unit_command c;
  std::istringstream lines(slurp(root / unit.relative_path()));
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with("Environment=")) {
      std::string assignment = line.substr(12);
      size_t eq = assignment.find('=');
      c.env[assignment.substr(0, eq)] = under_root(assignment.substr(eq + 1));
    } else if (line.starts_with("ExecStart=")) {
      std::istringstream words(line.substr(10));
      words >> c.executable;
      c.executable = under_root(c.executable);
      for (std::string w; words >> w;) c.args.push_back(w);
    }
  }
  return c;
}

TEST(InstallSystem, TheUnitsStartAHiveWithItsTokenAndAQueenOnLoopback) {
  if (!fs::exists(binary_path("rbee-hive")) || !fs::exists(binary_path("llm-worker-rbee"))) {
    GTEST_SKIP() << "rbee-hive / llm-worker-rbee are not built";
  }
  temp_home staging;
  const fs::path root = staging.path() / "root";
  auto installed = run_cli("rbee", {"install", "--system", "--root", root.string()});
  ASSERT_EQ(installed.exit_code, 0) << installed.err;
  for (const char* name : {"rbee", "queen-rbee", "rbee-hive", "llm-worker-rbee"}) {
    EXPECT_TRUE(fs::exists(root / "usr/local/bin" / name)) << name;
  }
  const fs::path token = root / "var/lib/rbee/secrets/hive-localhost.token";
  struct stat st {};
  ASSERT_EQ(::stat(token.c_str(), &st), 0) << installed.out;
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  const int hive_port = free_port();
  const int queen_port = free_port();
  auto hive_unit = read_unit(root, "/etc/systemd/system/rbee-hive.service");
  auto queen_unit = read_unit(root, "/etc/systemd/system/queen-rbee.service");
  ASSERT_FALSE(hive_unit.executable.empty());
  ASSERT_FALSE(queen_unit.executable.empty());
  for (auto* unit : {&hive_unit, &queen_unit}) {
    unit->env["RBEE_HIVE_PORT"] = std::to_string(hive_port);
    unit->env["RBEE_QUEEN_PORT"] = std::to_string(queen_port);
    unit->env["RBEE_WORKER_PORT_START"] = std::to_string(free_port());
    unit->env["RBEE_WORKER_STOP_GRACE_MS"] = "3000";
  }
  suite_homes().push_back(hive_unit.env["RBEE_HOME"]);  // nothing of it may outlive the test

  // The hive listens on every address (hive.host's default): only with its token does it start.
  daemon_process hive(hive_unit.executable, hive_unit.args, hive_unit.env,
                      staging.path() / "hive-unit.log");
  ASSERT_NO_THROW(hive.wait_healthy(hive_port, "/v1/health")) << hive.log_text();
  daemon_process queen(queen_unit.executable, queen_unit.args, queen_unit.env,
                       staging.path() / "queen-unit.log");
  ASSERT_NO_THROW(queen.wait_healthy(queen_port, "/health")) << queen.log_text();
  // On loopback: the config's queen.host is left at its default.
  EXPECT_TRUE(contains(queen.log_text(), "127.0.0.1:" + std::to_string(queen_port)))
      << queen.log_text();
  EXPECT_FALSE(contains(queen.log_text(), "0.0.0.0:" + std::to_string(queen_port)))
      << queen.log_text();

  // An answer through the queen, on the hive the unit started (the queen started none).
  std::map<std::string, std::string> cli_env = queen_unit.env;
  cli_env["RBEE_QUEEN_URL"] = "http://127.0.0.1:" + std::to_string(queen_port);
  auto r = run_cli("rbee",
                   {"infer", "--node", "localhost", "-m", stories_ref(), "-p", "Once upon a time",
                    "--max-tokens", "4"},
                   cli_env, "", 120s);
  EXPECT_EQ(r.exit_code, 0) << r.err << queen.log_text() << hive.log_text();
  EXPECT_FALSE(contains(r.err, "Starting rbee-hive")) << r.err;
  queen.stop(30s);
  hive.stop(15s);
}

}  // namespace
}  // namespace rbee::e2e::scenario
