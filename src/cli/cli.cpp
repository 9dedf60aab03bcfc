#include "cli/cli.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <iostream>
#include <iterator>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include "api/sampling.h"
#include "cli/output.h"
#include "cli/queen_daemon.h"
#include "client/queen_client.h"
#include "common/config.h"
#include "common/http_server.h"
#include "common/paths.h"
#include "common/process.h"
#include "common/version.h"

namespace rbee::cli {

namespace {

using nlohmann::json;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

struct global_options {
  std::string queen_url;
  std::string api_key;
};

struct infer_options {
  std::string node;
  std::string model;
  std::string prompt;
  int max_tokens = 0;
  std::optional<double> temperature;
  std::optional<double> top_p;
  std::optional<int> top_k;
  std::optional<double> min_p;
  std::optional<double> repeat_penalty;
  std::optional<int64_t> seed;
  std::vector<std::string> stop;
  std::string backend;
  std::string device;
  bool json_output = false;
  bool ephemeral = false;
};

// What every command needs: the loaded config and a client for the queen.
struct context {
  common::config config;
  client::queen_client client;
  std::optional<started_queen> started;  // a queen this invocation started

  explicit context(const global_options& g)
      : config(load(g)), client(client::client_config{config.queen_url(), config.api_key()}) {}

  static common::config load(const global_options& g) {
    std::map<std::string, std::string> overrides;
    if (!g.queen_url.empty()) overrides["queen.url"] = g.queen_url;
    if (!g.api_key.empty()) overrides["api_key"] = g.api_key;
    return common::config::load(overrides);
  }

  // SPEC §6: when no queen answers at a loopback URL, start one and leave it running.
  void ensure_queen() {
    if (client.healthy(1500ms)) return;
    auto parts = parse_http_url(client.config().queen_url);
    if (!parts || !common::is_loopback(parts->host)) {
      throw common::connection_error(client.config().queen_url, "no queen-rbee answers there");
    }
    std::fprintf(stderr, "Starting queen-rbee at %s (log: %s)\n", client.config().queen_url.c_str(),
                 (common::logs_dir(config.rbee_home()) / "queen.log").c_str());
    started = start_queen(client, common::self_executable_dir(), config.rbee_home());
  }
};

bool is_tty(std::FILE* f) {
  return ::isatty(::fileno(f)) == 1;
}

void print_json(const json& j) {
  std::printf("%s\n", j.dump(2).c_str());
}

// A listing command's output: the whole answer with --json, else a table of r[list_key].
int print_listing(const json& r, bool as_json, const char* list_key,
                  const std::vector<std::string>& header,
                  const std::function<std::vector<std::string>(const json&)>& row) {
  if (as_json) {
    print_json(r);
    return exit_ok;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& e : r.value(list_key, json::array())) rows.push_back(row(e));
  std::printf("%s", format_table(header, rows).c_str());
  return exit_ok;
}

std::string str(const json& j, const char* key) {
  if (!j.contains(key) || j[key].is_null()) return "-";
  return j[key].is_string() ? j[key].get<std::string>() : j[key].dump();
}

std::string ago(int64_t unix_time) {
  if (unix_time <= 0) return "never";
  std::time_t t = unix_time;
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", std::localtime(&t));
  return buf;
}

// Prints progress events of a stream; remembers an error event.
struct stream_printer {
  narration_printer printer{stderr, is_tty(stderr)};
  std::optional<json> error;
  bool operator()(const json& e) {
    std::string type = e.value("type", "");
    if (type == "error") {
      error = e;
    } else if (type == "narration") {
      printer.print(e);
    } else if (e.contains("line")) {
      std::printf("%s\n", e.value("line", "").c_str());
      std::fflush(stdout);
    } else {
      std::printf("%s\n", e.dump().c_str());
      std::fflush(stdout);
    }
    return true;
  }
  int finish() {
    printer.close_bar();
    if (error) {
      print_error(stderr, error->value("message", "failed"), error->value("details", json()));
      return exit_error;
    }
    return exit_ok;
  }
};

// ---- queen stop ----

bool url_is_loopback(const std::string& url) {
  auto start = url.find("://");
  start = start == std::string::npos ? 0 : start + 3;
  std::string host = url.substr(start, url.find_first_of(":/", start) - start);
  return common::is_loopback(host);
}

// Asks the queen to stop and waits until it is gone: until its process has exited when it runs
// on this machine (/health gives its pid), else until it stops answering. "stopped" is only
// said once that holds, within the queen's shutdown budget (30 s) and a margin.
int stop_queen(client::queen_client& client) {
  std::optional<pid_t> pid;
  try {
    auto health = client.health();
    if (url_is_loopback(client.config().queen_url) && health.contains("pid") &&
        health["pid"].is_number_integer()) {
      pid = health["pid"].get<pid_t>();
    }
  } catch (const std::exception& e) {
    spdlog::debug("queen health before stop: {}", e.what());
  }
  client.shutdown_queen();
  auto gone = [&] { return pid ? !common::process_exists(*pid) : !client.healthy(200ms); };
  const auto deadline = std::chrono::steady_clock::now() + 35s;
  while (!gone()) {
    if (std::chrono::steady_clock::now() >= deadline) {
      std::fprintf(stderr, "rbee: queen-rbee did not stop within 35 s%s\n",
                   pid ? (" (pid " + std::to_string(*pid) + " still runs)").c_str() : "");
      return exit_error;
    }
    std::this_thread::sleep_for(100ms);
  }
  std::printf("queen-rbee stopped\n");
  return exit_ok;
}

// ---- infer ----

bool retryable_busy(const common::http_error& e) {
  return e.code == common::codes::QUEUE_FULL || e.code == common::codes::ALL_SLOTS_BUSY;
}

int cmd_infer(context& ctx, infer_options o) {
  if (o.prompt == "-") {
    o.prompt.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  }
  if (o.prompt.empty()) {
    std::fprintf(stderr, "Error: the prompt is empty\n");
    return exit_usage;
  }
  json request = {{"model", o.model}, {"prompt", o.prompt}, {"stop", o.stop}};
  if (!o.node.empty()) request["node"] = o.node;
  if (o.max_tokens > 0) request["max_tokens"] = o.max_tokens;
  if (o.temperature) request["temperature"] = *o.temperature;
  if (o.top_p) request["top_p"] = *o.top_p;
  if (o.top_k) request["top_k"] = *o.top_k;
  if (o.min_p) request["min_p"] = *o.min_p;
  if (o.repeat_penalty) request["repeat_penalty"] = *o.repeat_penalty;
  if (o.seed) request["seed"] = *o.seed;
  if (!o.backend.empty()) request["backend"] = o.backend;
  if (!o.device.empty()) request["device"] = o.device;

  // Signals are taken synchronously by this thread (sigtimedwait) while another streams.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  ctx.ensure_queen();
  auto teardown = [&] {
    if (o.ephemeral && ctx.started) {
      std::fprintf(stderr, "Stopping the queen-rbee this command started (--ephemeral)\n");
      stop_started_queen(*ctx.started, 40s);
    }
  };

  std::atomic<bool> interrupted{false};
  std::mutex mutex;
  std::string task_id;
  std::optional<json> end_event;
  std::optional<json> error_event;
  std::optional<common::http_error> http_failure;
  std::optional<std::string> connection_failure;
  std::string text;
  int tokens = 0;
  const auto started_at = std::chrono::steady_clock::now();
  std::optional<std::chrono::steady_clock::time_point> first_token_at;
  narration_printer printer(stderr, is_tty(stderr));

  auto stream = std::async(std::launch::async, [&] {
    for (int attempt = 0;; ++attempt) {
      try {
        ctx.client.run_task(request, [&](const json& e) {
          if (interrupted) return false;
          std::string type = e.value("type", "");
          if (type == "narration") {
            if (e.contains("task_id") && e["task_id"].is_string()) {
              std::lock_guard lock(mutex);
              task_id = e["task_id"].get<std::string>();
            }
            printer.print(e);
          } else if (type == "token") {
            printer.close_bar();
            if (!first_token_at) first_token_at = std::chrono::steady_clock::now();
            std::string t = e.value("t", "");
            ++tokens;
            text += t;
            if (!o.json_output) {
              std::fwrite(t.data(), 1, t.size(), stdout);
              std::fflush(stdout);
            }
          } else if (type == "end") {
            end_event = e;
          } else if (type == "error") {
            error_event = e;
          }
          return !interrupted;
        });
        return;
      } catch (const common::http_error& e) {
        if (retryable_busy(e) && attempt < 3 && !interrupted) {
          int delay = 1 << attempt;
          std::fprintf(stderr, "%s; retrying in %d s\n", e.message.c_str(), delay);
          for (int i = 0; i < delay * 10 && !interrupted; ++i) std::this_thread::sleep_for(100ms);
          if (!interrupted) continue;
        }
        http_failure = e;
        if (retryable_busy(e) && (!e.details.is_object() || !e.details.contains("hint"))) {
          http_failure->details = {{"hint",
                                    "the queen is busy: try again later, or raise queen.queue_size "
                                    "(RBEE_QUEUE_SIZE)"}};
        }
        return;
      } catch (const common::connection_error& e) {
        if (!interrupted) connection_failure = e.what();
        return;
      }
    }
  });

  bool canceled = false;
  timespec tick{0, 100'000'000};
  while (stream.wait_for(0ms) != std::future_status::ready) {
    int sig = sigtimedwait(&signals, nullptr, &tick);
    if (sig != SIGINT && sig != SIGTERM) continue;
    interrupted = true;
    canceled = true;
    std::string id;
    {
      std::lock_guard lock(mutex);
      id = task_id;
    }
    if (!id.empty()) {
      try {
        client::client_config quick = ctx.client.config();
        quick.read_timeout = 3s;
        client::queen_client(quick).cancel_task(id);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "cancel failed: %s\n", e.what());
      }
    }
    break;
  }
  if (canceled) {
    printer.close_bar();
    if (tokens > 0 && !o.json_output) std::fputc('\n', stdout);
    std::fflush(stdout);
    std::fprintf(stderr, "Canceled.\n");
    std::fflush(stderr);
    teardown();
    // The stream ends once the worker stops; do not wait on a wedged connection.
    if (stream.wait_for(3s) != std::future_status::ready) std::_Exit(exit_interrupted);
    return exit_interrupted;
  }
  stream.get();
  printer.close_bar();
  if (tokens > 0 && !o.json_output && is_tty(stdout)) std::fputc('\n', stdout);
  std::fflush(stdout);
  int rc = exit_ok;
  if (http_failure) {
    print_error(stderr, *http_failure);
    rc = exit_error;
  } else if (connection_failure) {
    print_error(stderr, "Cannot connect to queen-rbee: " + *connection_failure,
                {{"hint", "start it with `rbee queen start` or check RBEE_QUEEN_URL"}});
    rc = exit_error;
  } else if (error_event) {
    print_error(stderr, error_event->value("message", "inference failed"),
                error_event->value("details", json()));
    rc = exit_error;
  } else if (!end_event) {
    print_error(stderr, "the stream ended before the task finished", json());
    rc = exit_error;
  } else {
    double ttft_ms =
        first_token_at
            ? std::chrono::duration<double, std::milli>(*first_token_at - started_at).count()
            : 0.0;
    double tps = end_event->value("tokens_per_sec", 0.0);
    int tokens_out = end_event->value("tokens_out", tokens);
    if (o.json_output) {
      print_json({{"task_id", task_id},
                  {"text", text},
                  {"tokens_in", end_event->value("tokens_in", 0)},
                  {"tokens_out", tokens_out},
                  {"tokens_per_sec", tps},
                  {"time_to_first_token_ms", ttft_ms},
                  {"stop_reason", end_event->value("stop_reason", "")}});
    }
    std::fprintf(stderr, "%d tokens, %.1f tok/s, time to first token %.0f ms\n", tokens_out, tps,
                 ttft_ms);
  }
  teardown();
  return rc;
}

// ---- install ----

// A systemd unit for one of the daemons installed in `bin`.
std::string systemd_unit(std::string_view description, const fs::path& bin,
                         std::string_view command) {
  return "[Unit]\nDescription=" + std::string(description) +
         "\nAfter=network-online.target\n\n[Service]\nExecStart=" + (bin / command).string() +
         "\nRestart=on-failure\nKillSignal=SIGTERM\nTimeoutStopSec=45\n\n[Install]\n"
         "WantedBy=multi-user.target\n";
}

std::string default_config_text() {
  std::string text = "# rbee configuration (written by `rbee install`). Uncomment to change.\n";
  for (const auto& key : common::config_keys()) {
    text += "\n# " + std::string(key.doc);
    if (!key.env_var.empty()) text += " (env " + std::string(key.env_var) + ")";
    text += "\n# " + std::string(key.name) + " = \"" + std::string(key.default_value) + "\"\n";
  }
  return text;
}

int cmd_install(bool system) {
  fs::path bin = system ? fs::path("/usr/local/bin") : common::home_dir() / ".local" / "bin";
  fs::path config_file = system ? fs::path("/etc/rbee/config.toml")
                                : common::home_dir() / ".config" / "rbee" / "config.toml";
  fs::path source = common::self_executable_dir();
  common::ensure_dir(bin);
  int copied = 0;
  for (const char* name : {"rbee", "queen-rbee", "rbee-hive", "llm-worker-rbee", "rbee-engine"}) {
    fs::path from = source / name;
    if (!fs::exists(from)) continue;
    fs::path to = bin / name;
    // Copy beside and rename: replacing a running binary in place would corrupt it.
    fs::path tmp = bin / (std::string(".") + name + ".new");
    fs::copy_file(from, tmp, fs::copy_options::overwrite_existing);
    fs::permissions(tmp, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                             fs::perms::others_read | fs::perms::others_exec);
    fs::rename(tmp, to);
    std::printf("Installed %s\n", to.c_str());
    ++copied;
  }
  common::ensure_dir(config_file.parent_path());
  if (!fs::exists(config_file)) {
    std::ofstream(config_file) << default_config_text();
    std::printf("Wrote default config %s\n", config_file.c_str());
  } else {
    std::printf("Kept existing config %s\n", config_file.c_str());
  }
  if (system) {
    fs::path units = "/etc/systemd/system";
    common::ensure_dir(units);
    std::ofstream(units / "queen-rbee.service")
        << systemd_unit("rbee orchestrator (queen-rbee)", bin, "queen-rbee");
    std::ofstream(units / "rbee-hive.service")
        << systemd_unit("rbee pool manager (rbee-hive)", bin, "rbee-hive daemon");
    std::printf("Wrote %s and %s\n", (units / "queen-rbee.service").c_str(),
                (units / "rbee-hive.service").c_str());
  }
  std::printf("\n%d binaries installed. Next steps:\n", copied);
  if (!system)
    std::printf("  export PATH=\"%s:$PATH\"   # if it is not on your PATH yet\n", bin.c_str());
  if (system)
    std::printf("  sudo systemctl daemon-reload && sudo systemctl enable --now queen-rbee\n");
  std::printf("  rbee infer --node localhost --model hf:ORG/REPO --prompt \"Hello\"\n");
  std::printf(
      "  rbee setup add-node --name NAME --ssh-host HOST --ssh-user USER "
      "--install-path ~/rbee   # more machines\n");
  return exit_ok;
}

// `rbee config keys`: every key from common::config's table (docs/configuration.md mirrors it).
int cmd_config_keys(bool as_json) {
  json keys = json::array();
  std::vector<std::vector<std::string>> rows;
  for (const auto& k : common::config_keys()) {
    keys.push_back({{"name", k.name},
                    {"env", k.env_var},
                    {"default", k.default_value},
                    {"secret", k.secret},
                    {"doc", k.doc}});
    rows.push_back({std::string(k.name), std::string(k.env_var), std::string(k.default_value),
                    std::string(k.doc)});
  }
  if (as_json) {
    std::printf("%s\n", json{{"keys", keys}}.dump(2).c_str());
  } else {
    std::printf("%s", format_table({"KEY", "ENV", "DEFAULT", "DESCRIPTION"}, rows).c_str());
  }
  return exit_ok;
}

// `rbee config show`: the effective value of every key and where it came from; secrets masked.
int cmd_config_show(const common::config& config, bool as_json) {
  json values = json::object();
  std::vector<std::vector<std::string>> rows;
  for (const auto& k : common::config_keys()) {
    auto value = config.get(k.name);
    std::string shown = !value ? "" : k.secret ? "(set)" : *value;
    std::string source(common::to_string(config.source(k.name)));
    values[std::string(k.name)] = {{"value", value && !k.secret ? json(*value) : json(nullptr)},
                                   {"set", value.has_value()},
                                   {"source", source}};
    rows.push_back({std::string(k.name), shown, source});
  }
  if (as_json) {
    std::printf("%s\n", json{{"file", config.file().string()}, {"keys", values}}.dump(2).c_str());
  } else {
    std::printf("config file: %s\n",
                config.file().empty() ? "(none)" : config.file().string().c_str());
    std::printf("%s", format_table({"KEY", "VALUE", "SOURCE"}, rows).c_str());
  }
  return exit_ok;
}

}  // namespace

int run(int argc, char** argv) {
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);
  return run(args);
}

int run(const std::vector<std::string>& args) {
  CLI::App app{"rbee: run LLMs on all your machines (talks to queen-rbee)", "rbee"};
  app.set_version_flag("--version", "rbee " + common::version_string());
  app.require_subcommand(1);
  global_options g;
  app.add_option("--queen-url", g.queen_url, "queen-rbee URL (default RBEE_QUEEN_URL)");
  app.add_option("--api-key", g.api_key, "API key for the queen (default RBEE_API_KEY)");
  std::function<int(context&)> action;
  bool json_output = false;

  // infer
  infer_options inf;
  auto* infer = app.add_subcommand("infer", "Generate text; tokens stream to stdout");
  infer->add_option("--node", inf.node, "Node to run on (default: the scheduler picks)");
  infer->add_option("-m,--model", inf.model, "Model reference (hf:ORG/REPO[:FILE], file:/path)")
      ->required();
  infer->add_option("-p,--prompt", inf.prompt, "Prompt text, or - to read stdin")->required();
  // The request's limits are the contract's (api/sampling.h), checked before any daemon work.
  auto in = [](auto limits) { return CLI::Range(limits.min, limits.max); };
  infer->add_option("--max-tokens", inf.max_tokens, "Tokens to generate")
      ->check(in(api::max_tokens_limits));
  infer->add_option("--temperature", inf.temperature, "Sampling temperature (0 = greedy)")
      ->check(in(api::temperature_limits));
  infer->add_option("--top-p", inf.top_p, "Nucleus sampling")->check(in(api::top_p_limits));
  infer->add_option("--top-k", inf.top_k, "Top-k sampling (0 = off)")->check(in(api::top_k_limits));
  infer->add_option("--min-p", inf.min_p, "Min-p sampling")->check(in(api::min_p_limits));
  infer->add_option("--repeat-penalty", inf.repeat_penalty, "Repetition penalty (1 = off)")
      ->check(in(api::repeat_penalty_limits));
  infer->add_option("--seed", inf.seed, "Random seed (same seed, same answer)")
      ->check(in(api::seed_limits));
  infer->add_option("--stop", inf.stop, "Stop string (repeatable)");
  infer->add_option("--backend", inf.backend, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  infer->add_option("--device", inf.device, "Device index");
  infer->add_flag("--json", inf.json_output, "Print the result as JSON");
  infer->add_flag("--ephemeral", inf.ephemeral, "Stop what this command started when it exits");
  infer->callback([&] { action = [&](context& c) { return cmd_infer(c, inf); }; });

  // setup
  auto* setup = app.add_subcommand("setup", "Manage nodes (SSH)");
  setup->require_subcommand(1);
  client::node_spec spec;
  auto* add = setup->add_subcommand("add-node", "Register a node after testing SSH");
  add->add_option("--name", spec.node_name, "Node name")->required();
  add->add_option("--ssh-host", spec.ssh_host, "SSH host")->required();
  add->add_option("--ssh-port", spec.ssh_port, "SSH port")->check(CLI::Range(1, 65535));
  add->add_option("--ssh-user", spec.ssh_user, "SSH user")->required();
  add->add_option("--ssh-key", spec.ssh_key_path, "SSH private key");
  add->add_option("--install-path", spec.install_path, "Where rbee lives on the node")->required();
  add->add_option("--git-repo", spec.git_repo_url, "Git repository (for builds on the node)");
  add->add_option("--git-branch", spec.git_branch, "Git branch");
  add->callback([&] {
    action = [&](context& c) {
      if (!spec.ssh_key_path.empty()) {
        spec.ssh_key_path = fs::absolute(common::expand_user(spec.ssh_key_path)).string();
      }
      std::fprintf(stderr, "Testing SSH connection to %s@%s:%d ...\n", spec.ssh_user.c_str(),
                   spec.ssh_host.c_str(), spec.ssh_port);
      auto r = c.client.add_node(spec);
      std::printf("%s\n", r.value("message", "Node saved").c_str());
      return exit_ok;
    };
  });
  auto* list_nodes = setup->add_subcommand("list-nodes", "List registered nodes");
  list_nodes->add_flag("--json", json_output, "JSON output");
  list_nodes->callback([&] {
    action = [&](context& c) {
      return print_listing(
          c.client.list_nodes(), json_output, "nodes",
          {"NODE", "STATUS", "LAST CONNECTED", "INSTALL PATH"},
          [](const json& n) -> std::vector<std::string> {
            return {str(n, "node_name") + " (" + str(n, "ssh_host") + ")", str(n, "status"),
                    ago(n.value("last_connected_unix", int64_t{0})), str(n, "install_path")};
          });
    };
  });
  std::string node_name;
  auto* remove = setup->add_subcommand("remove-node", "Forget a node");
  remove->add_option("--name", node_name, "Node name")->required();
  remove->callback([&] {
    action = [&](context& c) {
      std::printf("%s\n", c.client.remove_node(node_name).value("message", "removed").c_str());
      return exit_ok;
    };
  });
  auto* install_node = setup->add_subcommand("install", "Copy rbee-hive and the worker to a node");
  install_node->add_option("--node", node_name, "Node name")->required();
  install_node->callback([&] {
    action = [&](context& c) {
      stream_printer p;
      c.client.install(node_name, [&](const json& e) { return p(e); });
      return p.finish();
    };
  });

  // workers
  auto* workers = app.add_subcommand("workers", "Workers on all nodes");
  workers->require_subcommand(1);
  auto* wlist = workers->add_subcommand("list", "List workers");
  wlist->add_flag("--json", json_output, "JSON output");
  wlist->callback([&] {
    action = [&](context& c) {
      return print_listing(
          c.client.list_workers(), json_output, "workers",
          {"WORKER", "NODE", "MODEL", "STATE", "BACKEND", "SLOTS", "URL"},
          [](const json& w) -> std::vector<std::string> {
            std::string device = str(w, "device");
            return {str(w, "worker_id"),
                    str(w, "node"),
                    str(w, "model_ref"),
                    str(w, "state"),
                    str(w, "backend") + (device == "-" || device.empty() ? "" : ":" + device),
                    str(w, "slots_busy") + "/" + str(w, "slots_total"),
                    str(w, "url")};
          });
    };
  });
  auto* whealth = workers->add_subcommand("health", "Health of the workers on a node");
  whealth->add_option("--node", node_name, "Node name")->required();
  whealth->add_flag("--json", json_output, "JSON output");
  whealth->callback([&] {
    action = [&](context& c) {
      return print_listing(
          c.client.workers_health(node_name), json_output, "workers",
          {"WORKER", "MODEL", "STATE", "HEALTH"}, [](const json& w) -> std::vector<std::string> {
            return {str(w, "worker_id"), str(w, "model_ref"), str(w, "state"), str(w, "health")};
          });
    };
  });
  std::string worker_id;
  auto* wshutdown = workers->add_subcommand("shutdown", "Stop a worker");
  wshutdown->add_option("--id", worker_id, "Worker id")->required();
  wshutdown->callback([&] {
    action = [&](context& c) {
      std::printf("%s\n", c.client.shutdown_worker(worker_id).value("message", "done").c_str());
      return exit_ok;
    };
  });

  // models
  auto* models = app.add_subcommand("models", "Model catalogs of the nodes");
  models->require_subcommand(1);
  std::string model;
  std::string model_node = "localhost";
  auto* mdownload = models->add_subcommand("download", "Download a model to a node");
  mdownload->add_option("--node", model_node, "Node name (default localhost)");
  mdownload->add_option("-m,--model", model, "Model reference")->required();
  mdownload->callback([&] {
    action = [&](context& c) {
      stream_printer p;
      c.client.download_model(model_node, model, [&](const json& e) { return p(e); });
      return p.finish();
    };
  });
  auto* mlist = models->add_subcommand("list", "List a node's models");
  mlist->add_option("--node", model_node, "Node name (default localhost)");
  mlist->add_flag("--json", json_output, "JSON output");
  mlist->callback([&] {
    action = [&](context& c) {
      return print_listing(c.client.list_models(model_node), json_output, "models",
                           {"ID", "REFERENCE", "ARCH", "QUANT", "BYTES"},
                           [](const json& m) -> std::vector<std::string> {
                             return {str(m, "id"), str(m, "reference"), str(m, "architecture"),
                                     str(m, "quantization"), str(m, "size_bytes")};
                           });
    };
  });
  auto* mrm = models->add_subcommand("rm", "Remove a model from a node");
  mrm->add_option("--node", model_node, "Node name (default localhost)");
  mrm->add_option("-m,--model", model, "Model id or reference")->required();
  mrm->callback([&] {
    action = [&](context& c) {
      std::printf("%s\n", c.client.remove_model(model_node, model).value("message", "").c_str());
      return exit_ok;
    };
  });

  // logs
  bool follow = false;
  auto* logs = app.add_subcommand("logs", "Logs of a node's hive or one worker");
  logs->add_option("--node", node_name, "Node name")->required();
  logs->add_option("--worker", worker_id, "Worker id");
  logs->add_flag("-f,--follow", follow, "Keep streaming new lines");
  logs->callback([&] {
    action = [&](context& c) {
      stream_printer p;
      c.client.logs(node_name, worker_id, follow, [&](const json& e) { return p(e); });
      return p.finish();
    };
  });

  // queen
  auto* queen = app.add_subcommand("queen", "Control queen-rbee");
  queen->require_subcommand(1);
  queen->add_subcommand("start", "Start queen-rbee in the background")->callback([&] {
    action = [&](context& c) {
      if (c.client.healthy(1500ms)) {
        std::printf("queen-rbee is already running at %s\n", c.client.config().queen_url.c_str());
        return exit_ok;
      }
      c.ensure_queen();
      std::printf("queen-rbee started at %s (pid %d)\n", c.client.config().queen_url.c_str(),
                  c.started ? c.started->process.pid() : -1);
      return exit_ok;
    };
  });
  queen->add_subcommand("stop", "Stop queen-rbee (and the hives it started)")->callback([&] {
    action = [&](context& c) {
      if (!c.client.healthy(1500ms)) {
        std::printf("queen-rbee is not running at %s\n", c.client.config().queen_url.c_str());
        return exit_ok;
      }
      return stop_queen(c.client);
    };
  });
  auto* qstatus = queen->add_subcommand("status", "Is queen-rbee running?");
  qstatus->add_flag("--json", json_output, "JSON output");
  qstatus->callback([&] {
    action = [&](context& c) {
      if (!c.client.healthy(1500ms)) {
        if (json_output) print_json({{"running", false}, {"url", c.client.config().queen_url}});
        if (!json_output)
          std::printf("queen-rbee is not running at %s\n", c.client.config().queen_url.c_str());
        return exit_error;
      }
      auto h = c.client.health();
      h["running"] = true;
      h["url"] = c.client.config().queen_url;
      if (json_output) {
        print_json(h);
      } else {
        std::printf("queen-rbee %s is running at %s\n", str(h, "version").c_str(),
                    c.client.config().queen_url.c_str());
      }
      return exit_ok;
    };
  });

  // hive
  std::string hive_node = "localhost";
  auto* hive = app.add_subcommand("hive", "Control a node's rbee-hive (through the queen)");
  hive->require_subcommand(1);
  for (const char* verb : {"start", "stop", "status"}) {
    auto* sub = hive->add_subcommand(verb, std::string(verb) + " a node's hive");
    sub->add_option("--node", hive_node, "Node name (default localhost)");
    sub->add_flag("--json", json_output, "JSON output");
    sub->callback([&, v = std::string(verb)] {
      action = [&, v](context& c) {
        json r = v == "start"  ? c.client.start_hive(hive_node)
                 : v == "stop" ? c.client.stop_hive(hive_node)
                               : c.client.hive_status(hive_node);
        if (json_output) {
          print_json(r);
        } else if (v == "start") {
          std::printf("rbee-hive on '%s' is running at %s (v%s)\n", hive_node.c_str(),
                      str(r, "url").c_str(), str(r, "version").c_str());
        } else if (v == "stop") {
          std::printf(r.value("stopped", false) ? "rbee-hive on '%s' stopped\n"
                                                : "rbee-hive on '%s' was not running\n",
                      hive_node.c_str());
        } else {
          std::printf(r.value("running", false) ? "rbee-hive on '%s' is running at %s\n"
                                                : "rbee-hive on '%s' is not running (%s)\n",
                      hive_node.c_str(), str(r, "url").c_str());
        }
        return v == "status" && !r.value("running", false) ? exit_error : exit_ok;
      };
    });
  }

  // install
  bool system = false;
  auto* install = app.add_subcommand("install", "Install rbee's binaries and a default config");
  install->add_flag("--system", system,
                    "Install to /usr/local/bin and /etc/rbee, with systemd units");
  bool install_requested = false;
  install->callback([&] { install_requested = true; });

  // config: local, needs no queen.
  auto* config_cmd = app.add_subcommand("config", "Configuration keys and their values");
  config_cmd->require_subcommand(1);
  bool config_json = false;
  auto* config_keys = config_cmd->add_subcommand("keys", "Every key, its env var and default");
  config_keys->add_flag("--json", config_json, "JSON output");
  auto* config_show = config_cmd->add_subcommand("show", "Effective values and their source");
  config_show->add_flag("--json", config_json, "JSON output");

  std::vector<std::string> reversed(args.rbegin(), args.rend());
  try {
    app.parse(reversed);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? exit_ok : exit_usage;
  }
  try {
    if (install_requested) return cmd_install(system);
    if (config_keys->parsed()) return cmd_config_keys(config_json);
    if (config_show->parsed()) return cmd_config_show(context::load(g), config_json);
    context ctx(g);
    bool needs_queen = !(queen->parsed());
    if (needs_queen && !infer->parsed()) ctx.ensure_queen();
    return action(ctx);
  } catch (const common::http_error& e) {
    print_error(stderr, e);
    return exit_error;
  } catch (const common::connection_error& e) {
    print_error(stderr, "Cannot connect to queen-rbee at " + e.host_port() + ": " + e.cause(),
                {{"hint", "start it with `rbee queen start`, or set RBEE_QUEEN_URL"}});
    return exit_error;
  } catch (const common::config_error& e) {
    print_error(stderr, std::string("config: ") + e.what(), json());
    return exit_error;
  } catch (const std::exception& e) {
    print_error(stderr, e.what(), json());
    return exit_error;
  }
}

}  // namespace rbee::cli
