#pragma once
// Fixtures for the scenario suite (spec/test-001.md, tests/e2e/scenarios): a real queen-rbee on
// free ports with its own RBEE_HOME, a CLI runner preconfigured for it, a background CLI run that
// can be interrupted like Ctrl+C, and test hosts `workstation` / `mac` reachable over real SSH.
// Everything a scenario starts is stopped by the destructors, also when an assertion failed.

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/http_client.h"
#include "common/process.h"
#include "harness/daemon.h"
#include "harness/ports.h"
#include "harness/temp_home.h"
#include "harness/test_host.h"

namespace rbee::e2e::scenario {

using namespace std::chrono_literals;

inline std::string models_dir() {
  return RBEE_SHARED_MODELS_DIR;
}
inline std::string stories_path() {
  return models_dir() + "/stories260K.gguf";
}
inline std::string stories_ref() {
  return "file:" + stories_path();
}

inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// The greedy continuation llama.cpp produced for a prompt (golden-stories260K.json).
inline std::string golden_continuation(const std::string& prompt) {
  std::ifstream in(models_dir() + "/golden-stories260K.json");
  auto golden = nlohmann::json::parse(in);
  for (const auto& c : golden["cases"]) {
    if (c["prompt"] == prompt) return c["continuation"];
  }
  return {};
}

// Pids whose environment holds RBEE_HOME=<home>: every daemon a scenario's queen started
// (hives and workers inherit it). Used to prove teardown and to clean up after failures.
inline std::vector<pid_t> pids_with_home(const std::filesystem::path& home) {
  std::vector<pid_t> pids;
  const std::string needle = "RBEE_HOME=" + home.string();
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    pid_t pid = std::stoi(name);
    if (pid == ::getpid()) continue;
    std::string env = slurp(entry.path() / "environ");
    size_t pos = 0;
    while (pos < env.size()) {
      size_t end = env.find('\0', pos);
      if (end == std::string::npos) end = env.size();
      if (env.compare(pos, end - pos, needle) == 0) {
        // Zombies keep their environ readable only while alive; skip those already dead.
        std::string stat = slurp(entry.path() / "stat");
        auto close = stat.rfind(')');
        if (close != std::string::npos && close + 2 < stat.size() && stat[close + 2] != 'Z') {
          pids.push_back(pid);
        }
        break;
      }
      pos = end + 1;
    }
  }
  return pids;
}

// Pids whose command line contains `needle` (e.g. a binary path under an install dir).
inline std::vector<pid_t> pids_with_cmdline(const std::string& needle) {
  std::vector<pid_t> pids;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    pid_t pid = std::stoi(name);
    if (pid == ::getpid()) continue;
    std::string cmd = slurp(entry.path() / "cmdline");
    for (auto& c : cmd) c = c == '\0' ? ' ' : c;
    std::string stat = slurp(entry.path() / "stat");
    auto close = stat.rfind(')');
    bool zombie = close != std::string::npos && close + 2 < stat.size() && stat[close + 2] == 'Z';
    if (!zombie && contains(cmd, needle)) pids.push_back(pid);
  }
  return pids;
}

inline void kill_all(const std::vector<pid_t>& pids) {
  for (pid_t p : pids) ::kill(p, SIGKILL);
}

// Waits until pred() holds or the timeout passes; returns pred()'s last value.
inline bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout,
                       std::chrono::milliseconds step = 100ms) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(step);
  }
  return pred();
}

// Every RBEE_HOME a scenario used in this test binary, for the final leftover check.
inline std::vector<std::filesystem::path>& suite_homes() {
  static std::vector<std::filesystem::path> homes;
  return homes;
}

// After the last scenario of a binary: nothing any scenario started is still running.
class nothing_left_running : public ::testing::Environment {
 public:
  void TearDown() override {
    for (const auto& home : suite_homes()) {
      auto left = pids_with_home(home);
      EXPECT_TRUE(left.empty()) << left.size() << " process(es) of " << home << " still running";
      kill_all(left);
    }
  }
};
inline ::testing::Environment* const nothing_left_running_check =
    ::testing::AddGlobalTestEnvironment(new nothing_left_running);

// A CLI run in the background with stdout+stderr in one file, for Ctrl+C and --follow.
class background_cli {
 public:
  background_cli(const std::vector<std::string>& args, std::map<std::string, std::string> env,
                 std::filesystem::path log)
      : log_(std::move(log)) {
    common::process_spec spec;
    spec.executable = binary_path("rbee").string();
    spec.args = args;
    spec.env = std::move(env);
    spec.log_path = log_.string();
    child_ = common::child_process::spawn(spec);
  }
  ~background_cli() {
    if (child_.valid() && !status_) child_.stop(2s);
  }
  background_cli(const background_cli&) = delete;
  background_cli& operator=(const background_cli&) = delete;

  std::string output() const { return slurp(log_); }
  void signal(int sig) { child_.kill(sig); }
  // Exit code (128+signal when killed), or nullopt when it did not exit within timeout.
  std::optional<int> wait(std::chrono::milliseconds timeout) {
    eventually([&] { return (status_ = child_.try_wait()).has_value(); }, timeout, 20ms);
    return status_;
  }

 private:
  std::filesystem::path log_;
  common::child_process child_;
  std::optional<int> status_;
};

struct sse_result {
  int status = 0;
  common::http_response error;
  std::vector<nlohmann::json> events;
  std::string text;

  int count(const std::string& type, const std::string& action = "") const {
    int n = 0;
    for (const auto& e : events) {
      if (e.value("type", "") == type && (action.empty() || e.value("action", "") == action)) ++n;
    }
    return n;
  }
  std::optional<nlohmann::json> first(const std::string& type) const {
    for (const auto& e : events) {
      if (e.value("type", "") == type) return e;
    }
    return std::nullopt;
  }
};

// A queen-rbee with its own RBEE_HOME and free ports. `daemon_env` goes to the queen and, by
// inheritance, to the local hive and its workers: that is where scenarios turn timings down.
class scenario_queen {
 public:
  scenario_queen() : port_(free_port()), hive_port_(free_port()) {
    suite_homes().push_back(home_.path());
    // An empty config file: the machine's own ~/.config/rbee must not leak into scenarios.
    std::ofstream(home_.path() / "config.toml") << "# scenario: defaults only\n";
    daemon_env_ = {{"RBEE_HOME", home_.str()},
                   {"RBEE_CONFIG", (home_.path() / "config.toml").string()},
                   {"RBEE_WORKER_PORT_START", std::to_string(20000 + (port_ % 20000))},
                   {"RBEE_WORKER_STOP_GRACE_MS", "3000"},
                   {"RBEE_HIVE_REPORT_INTERVAL_MS", "500"},
                   {"RBEE_DOWNLOAD_BACKOFF_MS", "50"}};
  }
  ~scenario_queen() { stop_all(); }
  scenario_queen(const scenario_queen&) = delete;
  scenario_queen& operator=(const scenario_queen&) = delete;

  // Extra env for the daemons (before start()).
  void set_env(const std::string& key, const std::string& value) { daemon_env_[key] = value; }
  // Listen beyond loopback: needs an API key (SPEC §3).
  void listen_on_all(const std::string& api_key, const std::string& public_host) {
    bind_host_ = "0.0.0.0";
    api_key_ = api_key;
    public_host_ = public_host;
    daemon_env_["RBEE_API_KEY"] = api_key;
  }
  void set_api_key(const std::string& key) {
    api_key_ = key;
    daemon_env_["RBEE_API_KEY"] = key;
  }

  void start(std::vector<std::string> args = {}) {
    std::vector<std::string> a = {"--addr", bind_host_ + ":" + std::to_string(port_), "--hive-port",
                                  std::to_string(hive_port_)};
    if (!public_host_.empty()) {
      a.insert(a.end(), {"--public-url", "http://" + public_host_ + ":" + std::to_string(port_)});
    }
    a.insert(a.end(), args.begin(), args.end());
    queen_ = std::make_unique<daemon_process>("queen-rbee", a, daemon_env_,
                                              home_.logs_dir() / "queen-test.log");
    queen_->wait_healthy(port_, "/health");
  }

  // What a CLI run against this queen needs.
  std::map<std::string, std::string> env() const {
    auto e = daemon_env_;
    e["RBEE_QUEEN_URL"] = url();
    e["RBEE_HIVE_PORT"] = std::to_string(hive_port_);
    if (!api_key_.empty()) e["RBEE_API_KEY"] = api_key_;
    return e;
  }

  cli_result cli(const std::vector<std::string>& args, std::chrono::milliseconds timeout = 120s,
                 const std::string& stdin_text = "") const {
    return run_cli("rbee", args, env(), stdin_text, timeout);
  }
  cli_result infer(const std::string& model, std::vector<std::string> extra = {},
                   const std::string& node = "localhost",
                   std::chrono::milliseconds timeout = 180s) const {
    std::vector<std::string> a = {"infer",    "--node",          node, "--model", model,
                                  "--prompt", "Once upon a time"};
    a.insert(a.end(), extra.begin(), extra.end());
    return cli(a, timeout);
  }
  std::unique_ptr<background_cli> cli_background(const std::vector<std::string>& args,
                                                 const std::string& log_name) const {
    return std::make_unique<background_cli>(args, env(), home_.logs_dir() / log_name);
  }

  common::http_client client(std::chrono::milliseconds read_timeout = 120s) const {
    common::client_options o;
    o.bearer_token = api_key_;
    o.read_timeout = read_timeout;
    return common::http_client(url(), o);
  }
  common::http_client hive_client() const {
    common::client_options o;
    o.connect_timeout = 1s;
    o.read_timeout = 10s;
    return common::http_client(hive_url(), o);
  }

  sse_result run_task(const nlohmann::json& body,
                      const std::function<bool(const nlohmann::json&)>& on_event = {}) const {
    sse_result s;
    auto c = client();
    s.status = c.post_sse(
        "/v2/tasks", body,
        [&](const common::sse_event& ev) {
          if (ev.is_done()) return false;
          auto e = ev.json();
          if (e.value("type", "") == "token") s.text += e.value("t", "");
          s.events.push_back(e);
          return on_event ? on_event(e) : true;
        },
        &s.error);
    return s;
  }

  nlohmann::json workers() const {
    auto r = client().get("/v2/workers/list");
    return r.json_body().value("workers", nlohmann::json::array());
  }
  bool hive_alive() const {
    try {
      return hive_client().get("/v1/health").status == 200;
    } catch (const common::connection_error&) {
      return false;
    }
  }

  // Persistent mode: a hive started before (and apart from) the queen, on the port and with
  // the token the queen uses for `localhost`, so the queen uses it instead of starting one.
  daemon_process& start_own_hive(const std::vector<std::string>& extra_args = {},
                                 const std::map<std::string, std::string>& extra_env = {}) {
    const std::string token = "scenario-hive-token";
    auto secrets = home_.path() / "secrets";
    std::filesystem::create_directories(secrets);
    std::filesystem::permissions(secrets, std::filesystem::perms::owner_all);
    auto token_file = secrets / "hive-localhost.token";
    std::ofstream(token_file) << token;
    std::filesystem::permissions(
        token_file, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
    std::vector<std::string> args = {
        "daemon",      "--addr",   "127.0.0.1:" + std::to_string(hive_port_), "--queen-url", url(),
        "--node-name", "localhost"};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    auto env = daemon_env_;
    env["RBEE_HIVE_TOKEN"] = token;
    for (const auto& [k, v] : extra_env) env[k] = v;
    own_hive_ =
        std::make_unique<daemon_process>("rbee-hive", args, env, home_.logs_dir() / "own-hive.log");
    own_hive_->wait_healthy(hive_port_, "/v1/health");
    return *own_hive_;
  }
  // The hive's own API, with its token (for a hive from start_own_hive).
  common::http_client own_hive_client() const {
    common::client_options o;
    o.connect_timeout = 1s;
    o.read_timeout = 10s;
    o.bearer_token = "scenario-hive-token";
    return common::http_client(hive_url(), o);
  }

  // Stops the queen (which stops its hives), then kills whatever is left with this RBEE_HOME.
  // Returns false when something had to be killed: the daemons did not clean up after
  // themselves.
  bool stop_all() {
    if (queen_) queen_->stop(30s);
    if (own_hive_) own_hive_->stop(15s);
    bool clean = eventually([&] { return pids_with_home(home_.path()).empty(); }, 10s);
    kill_all(pids_with_home(home_.path()));
    return clean;
  }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::string hive_url() const { return "http://127.0.0.1:" + std::to_string(hive_port_); }
  int port() const { return port_; }
  int hive_port() const { return hive_port_; }
  const temp_home& home() const { return home_; }
  daemon_process& queen() { return *queen_; }
  std::string queen_log() const { return queen_ ? queen_->log_text() : ""; }
  std::string hive_log() const { return slurp(home_.logs_dir() / "hive-localhost.log"); }
  std::string logs() const {
    std::string all;
    std::error_code ec;
    for (const auto& f : std::filesystem::directory_iterator(home_.logs_dir(), ec)) {
      std::string text = slurp(f.path());
      if (text.size() > 3000) text = "..." + text.substr(text.size() - 3000);
      all += "==== " + f.path().filename().string() + "\n" + text + "\n";
    }
    return all;
  }

 private:
  temp_home home_;
  int port_;
  int hive_port_;
  std::string bind_host_ = "127.0.0.1";
  std::string public_host_;
  std::string api_key_;
  std::map<std::string, std::string> daemon_env_;
  std::unique_ptr<daemon_process> queen_;
  std::unique_ptr<daemon_process> own_hive_;
};

// Drops every packet to `port` on the host: connects from outside time out (no refusal). The
// rule must come before the `local` table's (pref 0), so that one moves behind it.
inline bool blackhole_port(const ssh_test_host& host, int port) {
  return host.exec({"/usr/sbin/ip", "rule", "add", "pref", "10", "ipproto", "tcp", "dport",
                    std::to_string(port), "blackhole"}) == 0 &&
         host.exec({"/usr/sbin/ip", "rule", "add", "pref", "20", "lookup", "local"}) == 0 &&
         host.exec({"/usr/sbin/ip", "rule", "del", "pref", "0"}) == 0;
}

// Test hosts over real SSH plus a queen they can call back. Hosts get a default route via
// their link so a hive on any host reaches the queen at the first host's peer address.
class scenario_hosts {
 public:
  static std::string unavailable_reason() { return ssh_test_host::unavailable_reason(); }

  // A host named in `roots` sees only that root file system over SSH.
  explicit scenario_hosts(const std::vector<std::string>& names,
                          const std::map<std::string, const minimal_root*>& roots = {}) {
    remove_stale_test_hosts();
    key_ = ssh_identity::generate(dir_.path(), "id_test");
    for (const auto& n : names) {
      auto root = roots.find(n);
      hosts_.push_back(std::make_unique<ssh_test_host>(
          n, dir_.path() / ("host-" + n), key_, root == roots.end() ? nullptr : root->second));
      auto& h = *hosts_.back();
      h.exec({"/usr/sbin/ip", "route", "add", "default", "via", h.peer_address()});
    }
    queen_.listen_on_all("scenario-key-for-all-nodes", hosts_.front()->peer_address());
  }
  ~scenario_hosts() { stop_all(); }

  // Stops the queen (which stops the hives it started over SSH); returns false when anything
  // of the scenario, local or on a host, had to be killed.
  bool stop_all() {
    bool clean = queen_.stop_all();
    // SSH connection multiplexers the queen opened (ControlPath under its home): scenario 56
    // asserts they end with the queen; here they are only cleaned up.
    kill_all(pids_with_cmdline(queen_.home().str()));
    for (const auto& h : hosts_) {
      auto path = install_path(h->name()).string();
      clean = eventually([&] { return pids_with_cmdline(path).empty(); }, 10s) && clean;
      kill_all(pids_with_cmdline(path));
    }
    return clean;
  }

  ssh_test_host& host(const std::string& name) {
    for (auto& h : hosts_) {
      if (h->name() == name) return *h;
    }
    throw std::out_of_range("no test host " + name);
  }
  std::filesystem::path install_path(const std::string& node) const {
    return dir_.path() / ("install-" + node);
  }
  const ssh_identity& key() const { return key_; }
  scenario_queen& queen() { return queen_; }
  const temp_home& dir() const { return dir_; }

  cli_result add_node(const std::string& name, const ssh_identity& id) {
    auto& h = host(name);
    return queen_.cli(
        {"setup", "add-node", "--name", name, "--ssh-host", h.address(), "--ssh-user", h.user(),
         "--ssh-key", id.private_key.string(), "--install-path", install_path(name).string()},
        120s);
  }
  cli_result add_node(const std::string& name) { return add_node(name, key_); }
  cli_result install(const std::string& name) {
    return queen_.cli({"setup", "install", "--node", name}, 180s);
  }
  // add-node + install; returns the first failure (exit_code != 0) or the install's result.
  cli_result add_and_install(const std::string& name) {
    auto r = add_node(name);
    if (r.exit_code != 0) return r;
    return install(name);
  }
  nlohmann::json nodes() {
    auto r = queen_.cli({"setup", "list-nodes", "--json"});
    return nlohmann::json::parse(r.out, nullptr, false).value("nodes", nlohmann::json::array());
  }
  std::optional<nlohmann::json> node(const std::string& name) {
    for (const auto& n : nodes()) {
      if (n.value("node_name", "") == name) return n;
    }
    return std::nullopt;
  }

 private:
  temp_home dir_;
  ssh_identity key_;
  std::vector<std::unique_ptr<ssh_test_host>> hosts_;
  scenario_queen queen_;
};

// A greedy task for stories260K on node `localhost`, as POST /v2/tasks takes it.
inline nlohmann::json stories_task(int max_tokens = 4) {
  return {{"node", "localhost"},
          {"model", stories_ref()},
          {"prompt", "Once upon a time"},
          {"max_tokens", max_tokens},
          {"temperature", 0}};
}

// The error of a task: its `error` event, or the JSON error of a refused request.
inline std::optional<nlohmann::json> error_of(const sse_result& s) {
  if (auto e = s.first("error")) return e;
  if (s.status != 200) {
    auto body = s.error.json_body();
    if (body.contains("error")) return body["error"];
  }
  return std::nullopt;
}

// The worker processes of a scenario's queen (found by its RBEE_HOME).
inline std::vector<pid_t> worker_pids(const scenario_queen& q) {
  std::vector<pid_t> out;
  for (pid_t p : pids_with_home(q.home().path())) {
    if (contains(slurp("/proc/" + std::to_string(p) + "/cmdline"), "llm-worker-rbee")) {
      out.push_back(p);
    }
  }
  return out;
}

// A scenario on the built-in node `localhost`: a queen of its own, nothing of it left after.
class local_node_test : public ::testing::Test {
 protected:
  void TearDown() override {
    EXPECT_TRUE(q.stop_all()) << "processes left after the queen stopped";
  }
  scenario_queen q;
};

// A queen with the node `workstation` added and its binaries installed over SSH.
class one_installed_node : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = scenario_hosts::unavailable_reason(); !why.empty()) GTEST_SKIP() << why;
    hosts = std::make_unique<scenario_hosts>(std::vector<std::string>{"workstation"});
    hosts->queen().start();
    auto r = hosts->add_and_install("workstation");
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  void TearDown() override {
    if (hosts) {
      EXPECT_TRUE(hosts->stop_all()) << "processes left after the queen stopped";
    }
    hosts.reset();
  }
  std::unique_ptr<scenario_hosts> hosts;
};

// True when `rbee-hive detect` finds a CUDA device with its VRAM.
inline bool have_cuda_device() {
  auto r = run_cli("rbee-hive", {"detect", "--json"});
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  return j.is_object() && contains(j.dump(), "\"cuda\"") && contains(j.dump(), "vram");
}

// Gives the queen's local hive a CUDA device 0 with (almost) no free VRAM, for the VRAM
// preflight scenarios: on a GPU machine by capping what the hive counts as free; elsewhere the
// hive reads the device from an `nvidia-smi` on its PATH that reports one (the driver's tool
// stands in for hardware this machine lacks; the hive, queen and CLI are the real ones).
inline void give_hive_a_stand_in_gpu(scenario_queen& q, int free_mib) {
  auto dir = q.home().path() / "fake-driver";
  std::filesystem::create_directories(dir);
  auto tool = dir / "nvidia-smi";
  std::ofstream(tool) << "#!/bin/sh\n"
                      << "# index, name, memory.total [MiB], memory.free [MiB]\n"
                      << "echo '0, NVIDIA Test GPU, 81559, " << free_mib << "'\n";
  std::filesystem::permissions(tool, std::filesystem::perms::owner_all);
  const char* path = std::getenv("PATH");
  q.set_env("PATH", dir.string() + ":" + (path ? path : "/usr/bin:/bin"));
}

inline void give_hive_a_nearly_full_gpu(scenario_queen& q) {
  if (have_cuda_device()) {
    q.set_env("RBEE_VRAM_LIMIT", "1000");
    return;
  }
  give_hive_a_stand_in_gpu(q, 1);
}

}  // namespace rbee::e2e::scenario
