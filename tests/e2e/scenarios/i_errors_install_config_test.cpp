// spec/test-001.md section I, errors, install, config and CLI: scenarios 57-59, 61, 62 (60, the
// per-node remote install path, needs SSH hosts: i_errors_install_config_ssh_test.cpp).
// System paths (/usr/local/bin, /etc) are only ever written inside a private mount namespace
// with overlays, so the machine running the tests is left untouched.
#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <thread>

#include <httplib.h>

#include "harness/scenario_fixture.h"

namespace rbee::e2e::scenario {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Runs `script` under sh in a private mount namespace where /etc and /usr/local/bin are
// overlays whose changes land in dir/etc-upper and dir/bin-upper.
cli_result in_overlay(const fs::path& dir, const std::string& script,
                      const std::map<std::string, std::string>& env) {
  for (const char* d : {"etc-upper", "etc-work", "bin-upper", "bin-work"}) {
    fs::create_directories(dir / d);
  }
  std::string mounts =
      "mount -t overlay overlay -o lowerdir=/etc,upperdir=" + (dir / "etc-upper").string() +
      ",workdir=" + (dir / "etc-work").string() +
      " /etc && mount -t overlay overlay -o lowerdir=/usr/local/bin,upperdir=" +
      (dir / "bin-upper").string() + ",workdir=" + (dir / "bin-work").string() +
      " /usr/local/bin && ";
  return run_cli("/usr/bin/unshare",
                 {"--mount", "--propagation", "private", "/bin/sh", "-c", mounts + script}, env, "",
                 60s);
}

std::string overlay_unavailable() {
  if (::geteuid() != 0) return "needs root (mount namespace with overlays)";
  if (!fs::exists("/usr/bin/unshare")) return "needs /usr/bin/unshare";
  return "";
}

std::string repeat_word(const std::string& word, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += word;
  return out;
}

class Scenarios_I : public local_node_test {};

TEST_F(Scenarios_I, S57_error_format_and_validation) {
  q.start();
  auto c = q.client();
  auto expect_error = [&](const common::http_response& r, int status, const std::string& field,
                          const std::string& what) {
    EXPECT_EQ(r.status, status) << what << ": " << r.body;
    auto j = json::parse(r.body, nullptr, false);
    ASSERT_TRUE(j.is_object() && j.contains("error")) << what << ": " << r.body;
    const auto& e = j["error"];
    EXPECT_TRUE(e.contains("code") && e["code"].is_string()) << what << ": " << r.body;
    EXPECT_TRUE(e.contains("message") && e["message"].is_string()) << what << ": " << r.body;
    EXPECT_TRUE(e.contains("details") && e["details"].is_object()) << what << ": " << r.body;
    if (!field.empty() && e.contains("details") && e["details"].is_object()) {
      EXPECT_EQ(e["details"].value("field", ""), field) << what << ": " << r.body;
    }
  };
  json base = {{"node", "localhost"}, {"model", stories_ref()}, {"prompt", "Once"}};
  auto with = [&](const std::string& k, const json& v) {
    json b = base;
    b[k] = v;
    return b;
  };

  // Invalid JSON.
  httplib::Client raw("127.0.0.1", q.port());
  auto bad = raw.Post("/v2/tasks", "{not json", "application/json");
  ASSERT_TRUE(bad);
  common::http_response bad_json{bad->status, bad->body, {}};
  expect_error(bad_json, 400, "", "invalid JSON");

  expect_error(c.post_json("/v2/tasks", with("max_tokens", "ten")), 400, "max_tokens",
               "wrong type");
  expect_error(c.post_json("/v2/tasks", with("prompt", 42)), 400, "prompt", "wrong type");
  expect_error(c.post_json("/v2/tasks", with("max_tokens", 0)), 400, "max_tokens", "max_tokens 0");
  expect_error(c.post_json("/v2/tasks", with("max_tokens", 1000000000)), 400, "max_tokens",
               "max_tokens huge");
  expect_error(c.post_json("/v2/tasks", with("temperature", -1)), 400, "temperature",
               "temperature -1");
  expect_error(c.post_json("/v2/tasks", with("model", "ftp://example.com/model.gguf")), 400,
               "model", "unknown model ref format");
  expect_error(c.post_json("/v2/tasks", with("prompt", repeat_word("hello ", 60000))), 400,
               "prompt", "prompt too long");
  // The OpenAI surface answers in OpenAI's error shape (what its client libraries parse): code,
  // message, and the field as `param`.
  auto openai = c.post_json("/v1/chat/completions", {{"model", stories_ref()}, {"messages", 3}});
  EXPECT_EQ(openai.status, 400) << openai.body;
  auto oj = json::parse(openai.body, nullptr, false);
  ASSERT_TRUE(oj.is_object() && oj.contains("error")) << openai.body;
  EXPECT_TRUE(oj["error"].contains("code") && oj["error"].contains("message")) << openai.body;
  EXPECT_EQ(oj["error"].value("param", ""), "messages") << openai.body;
  // Unknown routes and nodes are errors of the same shape.
  expect_error(c.get("/v2/no-such-route"), 404, "", "unknown route");
}

TEST_F(Scenarios_I, S58_rbee_install_paths) {
  temp_home home;
  auto user = run_cli("rbee", {"install"}, {{"HOME", home.str()}});
  ASSERT_EQ(user.exit_code, 0) << user.err;
  for (const char* b : {"rbee", "queen-rbee", "rbee-hive", "llm-worker-rbee"}) {
    auto p = home.path() / ".local" / "bin" / b;
    EXPECT_TRUE(fs::exists(p)) << p;
    EXPECT_EQ(::access(p.c_str(), X_OK), 0) << p;
  }
  EXPECT_TRUE(fs::exists(home.path() / ".config" / "rbee" / "config.toml"));
  auto installed = run_cli((home.path() / ".local" / "bin" / "rbee").string(), {"--version"});
  EXPECT_EQ(installed.exit_code, 0);
  EXPECT_TRUE(contains(installed.out, "rbee ")) << installed.out;

  if (auto why = overlay_unavailable(); !why.empty()) GTEST_SKIP() << why;
  temp_home sys;
  auto r = in_overlay(sys.path(), binary_path("rbee").string() + " install --system",
                      {{"HOME", home.str()}});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  for (const char* b : {"rbee", "queen-rbee", "rbee-hive", "llm-worker-rbee"}) {
    EXPECT_TRUE(fs::exists(sys.path() / "bin-upper" / b)) << "/usr/local/bin/" << b;
  }
  EXPECT_TRUE(fs::exists(sys.path() / "etc-upper" / "rbee" / "config.toml")) << r.out;
  // systemd units that start the installed daemons.
  const auto units = sys.path() / "etc-upper" / "systemd" / "system";
  EXPECT_TRUE(
      contains(slurp(units / "queen-rbee.service"), "ExecStart=/usr/local/bin/queen-rbee\n"))
      << r.out;
  EXPECT_TRUE(
      contains(slurp(units / "rbee-hive.service"), "ExecStart=/usr/local/bin/rbee-hive daemon\n"))
      << r.out;
  EXPECT_TRUE(contains(r.out, "/usr/local/bin")) << r.out;
  EXPECT_TRUE(contains(r.out, "/etc/rbee/config.toml")) << r.out;
}

TEST_F(Scenarios_I, S59_config_precedence) {
  // The test's own environment must not decide: the scenario sets each level itself.
  ::unsetenv("RBEE_QUEEN_URL");
  ::unsetenv("RBEE_CONFIG");
  temp_home home;
  auto url_of = [](const cli_result& r) {
    auto j = json::parse(r.out, nullptr, false);
    return j.is_object() ? j.value("url", "") : "unparsable: " + r.out + r.err;
  };
  auto write = [](const fs::path& p, const std::string& url) {
    fs::create_directories(p.parent_path());
    std::ofstream(p) << "[queen]\nurl = \"" << url << "\"\n";
  };
  const std::string sys_url = "http://127.0.0.1:1", user_url = "http://127.0.0.1:2",
                    explicit_url = "http://127.0.0.1:3";
  auto user_file = home.path() / ".config" / "rbee" / "config.toml";
  auto explicit_file = home.path() / "explicit.toml";
  write(explicit_file, explicit_url);
  std::map<std::string, std::string> env = {{"HOME", home.str()}};
  std::vector<std::string> status = {"queen", "status", "--json"};

  // user > default
  write(user_file, user_url);
  EXPECT_EQ(url_of(run_cli("rbee", status, env)), user_url);
  // RBEE_CONFIG > user
  auto with_explicit = env;
  with_explicit["RBEE_CONFIG"] = explicit_file.string();
  EXPECT_EQ(url_of(run_cli("rbee", status, with_explicit)), explicit_url);

  if (auto why = overlay_unavailable(); !why.empty()) GTEST_SKIP() << why;
  temp_home sys;
  std::string write_system = "mkdir -p /etc/rbee && printf '[queen]\\nurl = \"" + sys_url +
                             "\"\\n' > /etc/rbee/config.toml && ";
  std::string rbee = binary_path("rbee").string() + " queen status --json";
  // user > system
  EXPECT_EQ(url_of(in_overlay(sys.path(), write_system + rbee, env)), user_url);
  // system when there is no user file
  fs::remove(user_file);
  EXPECT_EQ(url_of(in_overlay(sys.path(), write_system + rbee, env)), sys_url);
  // RBEE_CONFIG > system
  EXPECT_EQ(url_of(in_overlay(sys.path(), write_system + rbee, with_explicit)), explicit_url);
  // An environment variable beats every file.
  auto with_env = with_explicit;
  with_env["RBEE_QUEEN_URL"] = "http://127.0.0.1:4";
  EXPECT_EQ(url_of(run_cli("rbee", status, with_env)), "http://127.0.0.1:4");
}

TEST_F(Scenarios_I, S61_workers_commands) {
  q.start();
  ASSERT_EQ(q.infer(stories_ref(), {"--max-tokens", "2"}).exit_code, 0) << q.logs();
  auto list = q.cli({"workers", "list"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  auto ws = q.workers();
  ASSERT_EQ(ws.size(), 1u);
  std::string id = ws[0]["worker_id"];
  EXPECT_TRUE(contains(list.out, id)) << list.out;
  EXPECT_TRUE(contains(list.out, "localhost")) << list.out;
  EXPECT_TRUE(contains(list.out, "idle")) << list.out;

  auto health = q.cli({"workers", "health", "--node", "localhost", "--json"});
  ASSERT_EQ(health.exit_code, 0) << health.err;
  auto hj = json::parse(health.out, nullptr, false);
  ASSERT_TRUE(hj.is_object()) << health.out;
  ASSERT_EQ(hj["workers"].size(), 1u) << health.out;
  EXPECT_EQ(hj["workers"][0]["worker_id"], id);
  EXPECT_FALSE(hj["workers"][0].value("health", "").empty()) << health.out;
  auto health_table = q.cli({"workers", "health", "--node", "localhost"});
  EXPECT_TRUE(contains(health_table.out, id)) << health_table.out;

  pid_t pid = 0;
  for (pid_t p : pids_with_home(q.home().path())) {
    if (contains(slurp("/proc/" + std::to_string(p) + "/cmdline"), "llm-worker-rbee")) pid = p;
  }
  ASSERT_GT(pid, 0);
  auto down = q.cli({"workers", "shutdown", "--id", id});
  EXPECT_EQ(down.exit_code, 0) << down.err;
  // The worker unloads and exits.
  EXPECT_TRUE(eventually(
      [&] { return ::kill(pid, 0) != 0 || pids_with_home(q.home().path()).size() == 1; }, 10s));
  EXPECT_TRUE(eventually([&] { return q.workers().empty(); }, 5s)) << q.workers().dump();
  auto unknown = q.cli({"workers", "shutdown", "--id", "worker-nope"});
  EXPECT_EQ(unknown.exit_code, 1);
}

TEST_F(Scenarios_I, S62_logs_follow) {
  q.start();
  ASSERT_EQ(q.cli({"hive", "start", "--node", "localhost"}).exit_code, 0) << q.logs();
  auto follow = q.cli_background({"logs", "--node", "localhost", "--follow"}, "follow.log");
  // Existing lines first, then new ones as they are written: an inference logs on the hive.
  ASSERT_TRUE(eventually([&] { return !follow->output().empty(); }, 10s));
  auto before = follow->output().size();
  ASSERT_EQ(q.infer(stories_ref(), {"--max-tokens", "2"}).exit_code, 0);
  EXPECT_TRUE(eventually([&] { return follow->output().size() > before; }, 10s))
      << "no new lines streamed: " << follow->output();
  EXPECT_TRUE(contains(follow->output().substr(before), "worker")) << follow->output();
  // Still streaming (it does not end by itself) until Ctrl+C.
  std::this_thread::sleep_for(1s);
  EXPECT_FALSE(follow->wait(0ms)) << "--follow ended by itself: " << follow->output();
  follow->signal(SIGINT);
  auto status = follow->wait(3s);
  ASSERT_TRUE(status) << "did not stop on Ctrl+C";
  EXPECT_TRUE(*status == 130 || *status == 0) << *status;
}

}  // namespace
}  // namespace rbee::e2e::scenario
