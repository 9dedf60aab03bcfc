#include "queen/hive_manager.h"

#include <future>
#include <thread>

#include <spdlog/spdlog.h>

#include "common/config.h"
#include "common/errors.h"
#include "common/paths.h"
#include "common/secrets.h"
#include "common/version.h"

namespace rbee::queen {

namespace {

using nlohmann::json;
using namespace std::chrono_literals;

std::string str_or(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// The remote start script is a constant; every user-derived value is a positional argument
// ($1..$8) quoted by remote_command, and the secrets arrive on stdin (line 1 the node token,
// line 2 the Hugging Face token or empty), never in an argv. The hive keeps its state under
// the install path ($7 as RBEE_HOME), not in the SSH user's ~/.rbee, and gets the queen's hub
// ($8 as HF_ENDPOINT, when set). It gets its own session (setsid where it exists) and ignores
// SIGHUP (the shell's trap, as nohup would, which a node may lack: busybox's often has none),
// so the end of the SSH session cannot take it down.
constexpr const char* remote_start_script =
    "umask 077; mkdir -p \"$1\" \"$7\" || exit 1; "
    "IFS= read -r node_token; IFS= read -r hf_token; "
    "printf '%s\\n' \"$node_token\" > \"$1/hive.token\" || exit 1; "
    "if [ -n \"$hf_token\" ]; then HF_TOKEN=\"$hf_token\"; export HF_TOKEN; fi; "
    "if [ -n \"$8\" ]; then HF_ENDPOINT=\"$8\"; export HF_ENDPOINT; fi; "
    "detach=; command -v setsid >/dev/null 2>&1 && detach=setsid; "
    "trap '' HUP; "
    "RBEE_HOME=\"$7\" RBEE_HIVE_TOKEN_FILE=\"$1/hive.token\" $detach \"$2/rbee-hive\" daemon "
    "--addr \"$3\" --queen-url \"$4\" --node-name \"$5\" --advertise-host \"$6\" > \"$1/hive.log\" "
    "2>&1 < /dev/null & "
    "echo $! > \"$1/hive.pid\"";

constexpr const char* remote_stop_script =
    "test -f \"$1/hive.pid\" && kill \"$(cat \"$1/hive.pid\")\" && rm -f \"$1/hive.pid\"";

}  // namespace

std::optional<error> version_mismatch(const std::string& node, const std::string& hive_version) {
  auto theirs = common::parse_semver(hive_version);
  auto ours = common::current_version();
  if (theirs && common::compatible(*theirs, ours)) return std::nullopt;
  return error(common::codes::VERSION_MISMATCH,
               "Version mismatch: queen " + ours.to_string() + ", hive " +
                   (hive_version.empty() ? "unknown" : hive_version) + " on node '" + node + "'",
               {{"node", node},
                {"queen_version", ours.to_string()},
                {"hive_version", hive_version},
                {"hint", "rbee setup install --node " + node}});
}

hive_manager::hive_manager(hive_manager_options options, registry& nodes, scheduler& sched,
                           common::process_launcher& launcher, ssh_runner& ssh,
                           const common::clock& clock)
    : options_(std::move(options)),
      nodes_(nodes),
      scheduler_(sched),
      launcher_(launcher),
      ssh_(ssh),
      clock_(clock) {}

hive_manager::~hive_manager() {
  stop_monitor();
}

hive_manager::hive_state& hive_manager::state_for(const std::string& node) {
  std::lock_guard lock(mutex_);
  auto& st = hives_[node];
  if (!st) st = std::make_unique<hive_state>();
  return *st;
}

std::string hive_manager::node_token(const std::string& node) {
  std::lock_guard lock(mutex_);
  auto it = tokens_.find(node);
  if (it != tokens_.end()) return it->second;
  auto dir = options_.rbee_home / "secrets";
  common::ensure_dir(dir, 0700);
  auto path = dir / ("hive-" + node + ".token");
  std::string token;
  if (std::filesystem::exists(path)) {
    token = common::read_secret_file(path);
  } else {
    token = common::random_token();
    common::write_secret_file(path, token);
  }
  tokens_[node] = token;
  return token;
}

std::string hive_manager::base_url_for(const node_record& node) const {
  if (node.is_local()) return "http://127.0.0.1:" + std::to_string(options_.local_hive_port);
  std::string host =
      node.ssh_host.find(':') != std::string::npos ? "[" + node.ssh_host + "]" : node.ssh_host;
  return "http://" + host + ":" + std::to_string(options_.remote_hive_port);
}

hive_endpoint hive_manager::endpoint_for(const node_record& node) {
  return {.node = node.node_name,
          .base_url = base_url_for(node),
          .token = node_token(node.node_name),
          .version = {}};
}

ssh_target hive_manager::target_for(const node_record& node) const {
  return ssh_target{.host = node.ssh_host,
                    .port = node.ssh_port,
                    .user = node.ssh_user,
                    .key_path = node.ssh_key_path};
}

std::optional<std::string> hive_manager::hive_version(const node_record& node) const {
  return hive_client::probe_version(base_url_for(node), 2s);
}

std::optional<hive_endpoint> hive_manager::known_endpoint(const std::string& node) {
  auto& st = state_for(node);
  std::lock_guard lock(mutex_);
  return st.endpoint;
}

void hive_manager::set_endpoint(hive_state& st, std::optional<hive_endpoint> ep) {
  std::lock_guard lock(mutex_);
  st.endpoint = std::move(ep);
  if (st.endpoint) st.last_seen = clock_.now();
}

void hive_manager::touch(const std::string& node) {
  auto& st = state_for(node);
  std::lock_guard lock(mutex_);
  st.last_seen = clock_.now();
}

hive_endpoint hive_manager::ensure_hive(const node_record& node, const event_fn& on_event) {
  auto narrate = [&](const char* action, std::string human, json extra = json::object()) {
    extra["node"] = node.node_name;
    if (on_event) on_event(narration("queen-rbee", action, std::move(human), std::move(extra)));
  };
  auto& st = state_for(node.node_name);
  std::lock_guard lock(st.mutex);
  hive_endpoint ep = endpoint_for(node);
  auto version = hive_client::probe_version(ep.base_url, 2s);
  if (!version) {
    set_endpoint(st, std::nullopt);
    narrate("hive_start",
            "Starting rbee-hive on node '" + node.node_name + "' (" + ep.base_url + ")");
    auto started = std::chrono::steady_clock::now();
    if (node.is_local()) {
      start_local(node, st, ep.token);
    } else {
      start_remote(node, ep.token, on_event);
      st.started_remote = true;
    }
    version = wait_for_health(node, st, ep.base_url);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::steady_clock::now() - started)
                  .count();
    narrate("hive_ready",
            "rbee-hive on '" + node.node_name + "' is up (v" + *version + ", " +
                std::to_string(ms) + " ms)",
            {{"duration_ms", ms}, {"version", *version}});
  }
  ep.version = *version;
  if (auto mismatch = version_mismatch(node.node_name, ep.version)) {
    nodes_.set_status(node.node_name, "version_mismatch", mismatch->message, std::nullopt);
    throw *mismatch;
  }
  // The hive must accept our token (a hive started by someone else may use another one).
  try {
    scheduler_.update_node_workers(node.node_name, hive_client(ep).list_workers().workers);
  } catch (const common::connection_error& e) {
    throw error(common::codes::NODE_UNREACHABLE,
                "Cannot reach rbee-hive on '" + node.node_name + "': " + e.what(),
                {{"node", node.node_name}}, 5);
  } catch (const error& e) {
    if (e.code == common::codes::MISSING_API_KEY || e.code == common::codes::INVALID_API_KEY) {
      throw error(common::codes::NODE_UNREACHABLE,
                  "rbee-hive on '" + node.node_name + "' rejected the queen's node token",
                  {{"node", node.node_name},
                   {"hint", "stop that hive (rbee hive stop --node " + node.node_name +
                                ") so the queen can start its own"}},
                  5);
    }
    // Any other answer leaves the worker view to the hive's reports.
  }
  set_endpoint(st, ep);
  nodes_.set_status(node.node_name, "reachable", "", clock_.unix_now());
  return ep;
}

std::string hive_manager::wait_for_health(const node_record& node, hive_state& st,
                                          const std::string& base_url) {
  const int attempts = std::max(1, options_.connect_attempts);
  auto backoff = options_.connect_backoff;
  for (int attempt = 1; attempt <= attempts; ++attempt) {
    auto deadline = std::chrono::steady_clock::now() + options_.connect_timeout;
    auto delay = 50ms;
    while (true) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (auto version = hive_client::probe_version(
              base_url, std::max<std::chrono::milliseconds>(left, 100ms))) {
        return *version;
      }
      if (st.child.valid()) {
        if (auto status = st.child.try_wait()) {
          nodes_.set_status(node.node_name, "unreachable", "hive exited", std::nullopt);
          throw unavailable(
              common::codes::NODE_UNREACHABLE,
              "rbee-hive on node '" + node.node_name + "' exited during start (status " +
                  std::to_string(*status) + ")",
              5,
              {{"node", node.node_name},
               {"log", (common::logs_dir(options_.rbee_home) / ("hive-" + node.node_name + ".log"))
                           .string()}});
        }
      }
      if (std::chrono::steady_clock::now() >= deadline) break;
      std::this_thread::sleep_for(delay);
      delay = std::min<std::chrono::milliseconds>(delay * 2, 500ms);
    }
    spdlog::warn("rbee-hive on {} did not answer at {} (attempt {}/{})", node.node_name, base_url,
                 attempt, attempts);
    if (attempt < attempts) {
      std::this_thread::sleep_for(backoff);
      backoff *= 2;
    }
  }
  const std::string host_port = base_url.substr(base_url.find("://") + 3);
  const std::string port = host_port.substr(host_port.rfind(':') + 1);
  nodes_.set_status(node.node_name, "unreachable", "hive did not answer", std::nullopt);
  throw unavailable(
      common::codes::NODE_UNREACHABLE,
      "Cannot connect to " + host_port + " after " + std::to_string(attempts) +
          " attempts (rbee-hive on node '" + node.node_name + "' did not answer)",
      5,
      {{"node", node.node_name},
       {"address", host_port},
       {"attempts", attempts},
       {"hint", node.is_local()
                    ? "check the hive log (" +
                          (common::logs_dir(options_.rbee_home) / ("hive-localhost.log")).string() +
                          ") and that port " + port + " is free"
                    : "check that node '" + node.node_name +
                          "' is up, that its firewall lets port " + port +
                          " through from this machine and the hive log (" + node.install_path +
                          "/run/hive.log); then: rbee hive start --node " + node.node_name}});
}

void hive_manager::start_local(const node_record& node, hive_state& st, const std::string& token) {
  auto logs = common::logs_dir(options_.rbee_home);
  common::ensure_dir(logs);
  common::process_spec spec;
  spec.executable = (std::filesystem::path(options_.bin_dir) / "rbee-hive").string();
  spec.args = {
      "daemon",      "--addr",           "127.0.0.1:" + std::to_string(options_.local_hive_port),
      "--queen-url", options_.queen_url, "--node-name",
      node.node_name};
  spec.env = {{common::env_var_for("hive.token"), token},
              {common::env_var_for("home"), options_.rbee_home.string()}};
  // Secrets are not inherited (process.h): the hub token is the only other one a hive needs.
  if (!options_.hf_token.empty()) spec.env[common::env_var_for("hf.token")] = options_.hf_token;
  spec.log_path = (logs / ("hive-" + node.node_name + ".log")).string();
  // A persistent daemon: it outlives a crashed queen; a clean queen exit stops it.
  spec.kill_with_parent = false;
  if (st.child.valid() && st.child.running()) st.child.stop(2s);
  try {
    st.child = launcher_.spawn(spec);
  } catch (const common::spawn_error& e) {
    throw internal(std::string("cannot start rbee-hive: ") + e.what(),
                   {{"node", node.node_name}, {"executable", spec.executable}});
  }
}

void hive_manager::start_remote(const node_record& node, const std::string& token,
                                const event_fn& on_event) {
  auto target = target_for(node);
  std::string run_dir = node.install_path + "/run";
  std::string command = remote_command(
      {"sh", "-c", remote_start_script, "sh", run_dir, node.install_path,
       "0.0.0.0:" + std::to_string(options_.remote_hive_port), options_.queen_url, node.node_name,
       node.ssh_host, node.install_path + "/home", options_.hf_endpoint});
  try {
    validate_install_path(node.install_path);  // rows saved before paths were checked
    run_ssh(
        ssh_, target, options_.ssh, command, token + "\n" + options_.hf_token + "\n",
        [&](int attempt, const ssh_diagnosis& d) {
          if (on_event) {
            on_event(narration("queen-rbee", "ssh_retry",
                               d.message + " (attempt " + std::to_string(attempt) + ", retrying)",
                               {{"node", node.node_name}}));
          }
        });
  } catch (const ssh_error& e) {
    nodes_.set_status(node.node_name, "unreachable", e.what(), std::nullopt);
    throw unavailable(common::codes::NODE_UNREACHABLE, e.what(), 5,
                      {{"node", node.node_name},
                       {"cause", to_string(e.diagnosis().kind)},
                       {"hint", e.diagnosis().hint}});
  } catch (const std::invalid_argument& e) {
    throw error(common::codes::INVALID_REQUEST, e.what(), {{"node", node.node_name}});
  }
}

bool hive_manager::stop_hive(const node_record& node) {
  auto& st = state_for(node.node_name);
  std::lock_guard lock(st.mutex);
  hive_endpoint ep = endpoint_for(node);
  bool stopped = false;
  try {
    stopped = hive_client(ep, 35s).shutdown();
  } catch (const common::connection_error&) {
    stopped = false;
  }
  if (st.child.valid()) {
    st.child.stop(std::chrono::seconds(30));
    st.child = common::child_process();
    stopped = true;
  } else if (stopped) {
    // The hive exits after answering: wait (bounded) until it stops answering.
    auto deadline = std::chrono::steady_clock::now() + 35s;
    while (hive_client::probe_version(ep.base_url, 500ms) &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(100ms);
    }
  } else if (!node.is_local() && st.started_remote) {
    auto command =
        remote_command({"sh", "-c", remote_stop_script, "sh", node.install_path + "/run"});
    try {
      stopped = run_ssh(ssh_, target_for(node), options_.ssh, command).ok();
    } catch (const ssh_error& e) {
      spdlog::warn("stopping the hive on {} over SSH failed: {}", node.node_name, e.what());
    }
  }
  set_endpoint(st, std::nullopt);
  st.started_remote = false;
  scheduler_.drop_node_workers(node.node_name);
  nodes_.set_status(node.node_name, "stopped", "", std::nullopt);
  return stopped;
}

void hive_manager::stop_started_hives(std::chrono::milliseconds budget) {
  std::vector<std::string> started;
  {
    std::lock_guard lock(mutex_);
    for (auto& [name, st] : hives_) {
      if (st->child.valid() || st->started_remote) started.push_back(name);
    }
  }
  std::vector<std::future<void>> stops;
  for (const auto& name : started) {
    auto node = nodes_.get(name);
    if (!node) continue;
    stops.push_back(std::async(std::launch::async, [this, n = *node] {
      try {
        stop_hive(n);
      } catch (const std::exception& e) {
        spdlog::warn("stopping hive {}: {}", n.node_name, e.what());
      }
    }));
  }
  auto deadline = std::chrono::steady_clock::now() + budget;
  for (auto& f : stops) f.wait_until(deadline);
}

void hive_manager::close_ssh_master(const node_record& node) {
  if (node.is_local()) return;
  try {
    ssh_.close_master(target_for(node));
  } catch (const std::exception& e) {
    spdlog::warn("closing the SSH connection to {}: {}", node.node_name, e.what());
  }
}

void hive_manager::close_ssh_masters() {
  for (const auto& node : nodes_.list()) close_ssh_master(node);
}

std::vector<worker_info> hive_manager::refresh_workers(const std::string& node) {
  auto ep = known_endpoint(node);
  if (!ep) return {};
  auto workers = hive_client(*ep, 5s).list_workers().workers;
  scheduler_.update_node_workers(node, workers);
  touch(node);
  return workers;
}

void hive_manager::refresh_capabilities(const std::string& node) {
  auto ep = known_endpoint(node);
  if (!ep) return;
  auto caps = hive_client(*ep, 5s).capabilities();
  nodes_.set_capabilities(node, caps.backends, caps.devices);
}

void hive_manager::handle_report(const std::string& bearer_token, const json& report) {
  if (!report.is_object()) {
    throw error(common::codes::INVALID_REQUEST, "report must be a JSON object");
  }
  auto match = [&] {
    std::lock_guard lock(mutex_);
    std::string found;
    for (const auto& [name, token] : tokens_) {
      if (!bearer_token.empty() && common::constant_time_equals(token, bearer_token)) found = name;
    }
    return found;
  };
  std::string node = match();
  if (node.empty() && !bearer_token.empty()) {
    // A hive started by an earlier queen process: its token is in the secret files.
    for (const auto& n : nodes_.list()) {
      if (std::filesystem::exists(options_.rbee_home / "secrets" /
                                  ("hive-" + n.node_name + ".token"))) {
        node_token(n.node_name);
      }
    }
    node = match();
  }
  if (node.empty()) {
    throw bearer_token.empty() ? error(common::codes::MISSING_API_KEY,
                                       "missing API key: send 'Authorization: Bearer <token>'")
                               : error(common::codes::INVALID_API_KEY, "invalid API key");
  }
  std::vector<worker_info> workers;
  if (report.contains("workers")) {
    if (!report["workers"].is_array()) {
      throw invalid_field("workers", "workers must be an array");
    }
    for (const auto& w : report["workers"]) workers.push_back(parse_hive_worker(w, node));
  }
  if (auto version = str_or(report, "version"); !version.empty()) {
    if (auto mismatch = version_mismatch(node, version)) {
      scheduler_.drop_node_workers(node);
      nodes_.set_status(node, "version_mismatch", mismatch->message, std::nullopt);
      throw *mismatch;
    }
  }
  scheduler_.update_node_workers(node, workers);
  if (report.contains("capabilities") && report["capabilities"].is_object()) {
    const auto& caps = report["capabilities"];
    std::vector<std::string> backends;
    if (caps.contains("backends") && caps["backends"].is_array()) {
      for (const auto& b : caps["backends"]) {
        if (b.is_string()) backends.push_back(b.get<std::string>());
      }
    }
    nodes_.set_capabilities(
        node, backends,
        caps.contains("devices") && caps["devices"].is_array() ? caps["devices"] : json::array());
  }
  // A hive this queen did not start (e.g. before a queen restart) is adopted at the address
  // it reports.
  if (auto url = str_or(report, "hive_url"); !url.empty() && !known_endpoint(node)) {
    set_endpoint(state_for(node), hive_endpoint{.node = node,
                                                .base_url = url,
                                                .token = bearer_token,
                                                .version = str_or(report, "version")});
  }
  touch(node);
  nodes_.set_status(node, "reachable", "", clock_.unix_now());
}

void hive_manager::start_monitor() {
  monitor_stop_ = false;
  monitor_ = std::thread([this] { monitor_loop(); });
}

void hive_manager::stop_monitor() {
  {
    std::lock_guard lock(monitor_mutex_);
    monitor_stop_ = true;
  }
  monitor_cv_.notify_all();
  if (monitor_.joinable()) monitor_.join();
}

void hive_manager::monitor_loop() {
  while (true) {
    {
      std::unique_lock lock(monitor_mutex_);
      monitor_cv_.wait_for(lock, options_.monitor_interval,
                           [this] { return monitor_stop_.load(); });
      if (monitor_stop_) return;
    }
    std::vector<std::pair<std::string, std::string>> stale;  // node, base_url
    {
      std::lock_guard lock(mutex_);
      for (auto& [name, st] : hives_) {
        if (st->endpoint && clock_.now() - st->last_seen > options_.report_stale_after) {
          stale.emplace_back(name, st->endpoint->base_url);
        }
      }
    }
    for (const auto& [name, url] : stale) {
      if (hive_client::probe_version(url, 2s)) {
        try {
          refresh_workers(name);
          continue;
        } catch (const std::exception& e) {
          spdlog::warn("hive {}: worker list failed: {}", name, e.what());
        }
      }
      spdlog::warn("hive {} stopped reporting and does not answer: marking it unreachable", name);
      set_endpoint(state_for(name), std::nullopt);
      scheduler_.drop_node_workers(name);
      nodes_.set_status(name, "unreachable", "hive stopped reporting", std::nullopt);
    }
  }
}

}  // namespace rbee::queen
