// The fleet through the queen: nodes (`rbee setup`), workers, model catalogs, logs and hives.

#include <signal.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cstring>
#include <ctime>
#include <filesystem>
#include <map>
#include <optional>

#include "cli/cli.h"
#include "cli/command.h"
#include "common/paths.h"
#include "common/text.h"

namespace rbee::cli {

namespace {

using nlohmann::json;
namespace fs = std::filesystem;

// Prints the answer's message (or fallback) on stdout.
int print_message(const json& answer, const char* fallback) {
  std::printf("%s\n", answer.value("message", fallback).c_str());
  return exit_ok;
}

int add_node(context& c, client::node_spec spec) {
  if (!spec.ssh_key_path.empty()) {
    spec.ssh_key_path = fs::absolute(common::expand_user(spec.ssh_key_path)).string();
  }
  std::fprintf(stderr, "Testing SSH connection to %s@%s:%d ...\n", spec.ssh_user.c_str(),
               spec.ssh_host.c_str(), spec.ssh_port);
  return print_message(c.client.add_node(spec), "Node saved");
}

std::vector<std::string> node_row(const json& n) {
  return {str(n, "node_name") + " (" + str(n, "ssh_host") + ")", str(n, "status"),
          ago(n.value("last_connected_unix", int64_t{0})), str(n, "install_path")};
}

std::string human_size(uint64_t bytes);

// Measured memory where the hive has measured it, else the preflight's estimate ("~").
std::string memory_text(const json& w) {
  uint64_t used = w.value("memory_used_bytes", uint64_t{0});
  if (used > 0) return human_size(used);
  uint64_t estimate = w.value("memory_bytes", uint64_t{0});
  return estimate > 0 ? "~" + human_size(estimate) : "-";
}

std::string speed_text(const json& w) {
  double speed = w.value("tokens_per_second", 0.0);
  if (speed <= 0) return "-";
  char text[32];
  std::snprintf(text, sizeof text, "%.1f", speed);
  return text;
}

// "in 4m 10s" for an idle worker that will unload; "-" while busy or loading.
std::string unload_text(const json& w) {
  int64_t at = w.value("unload_at_unix", int64_t{0});
  if (at <= 0) return "-";
  int64_t left = std::max<int64_t>(0, at - static_cast<int64_t>(std::time(nullptr)));
  return "in " + std::to_string(left / 60) + "m " + std::to_string(left % 60) + "s";
}

// "cuda:1"; a worker split across devices: "cuda:0,1 layer".
std::string device_text(const json& w) {
  const json devices = w.value("devices", json::array());
  if (w.contains("split") && devices.is_array() && devices.size() > 1) {
    std::string list;
    for (const auto& d : devices) list += (list.empty() ? "" : ",") + d.dump();
    return str(w, "backend") + ":" + list + " " + str(w, "split");
  }
  std::string device = str(w, "device");
  return str(w, "backend") + (device == "-" || device.empty() ? "" : ":" + device);
}

std::vector<std::string> worker_row(const json& w) {
  return {str(w, "worker_id"), str(w, "node"), str(w, "model_ref"),
          str(w, "state"),     device_text(w), str(w, "slots_busy") + "/" + str(w, "slots_total"),
          str(w, "ctx"),       memory_text(w), speed_text(w),
          str(w, "queue"),     unload_text(w)};
}

// 1536 -> "1.5 KiB", 3643968 -> "3.5 MiB".
std::string human_size(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  size_t unit = 0;
  while (value >= 1024 && unit + 1 < std::size(units)) {
    value /= 1024;
    ++unit;
  }
  char text[32];
  std::snprintf(text, sizeof text, unit == 0 || value >= 10 ? "%.0f %s" : "%.1f %s", value,
                units[unit]);
  return text;
}

std::vector<std::string> model_row(const json& m) {
  return {str(m, "id"),
          str(m, "reference"),
          str(m, "architecture"),
          str(m, "quantization"),
          human_size(m.value("size_bytes", uint64_t{0})),
          ago(m.value("downloaded_at_unix", int64_t{0}))};
}

// Lines that fit on the terminal (leaving one for the prompt); 50 when stdout is no terminal.
uint64_t screen_rows() {
  winsize size{};
  if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_row > 1) return size.ws_row - 1;
  return 50;
}

// `rbee hive start|stop|status`: the answer as JSON or one line; status of a hive that does
// not run exits 1.
int hive_verb(context& c, const std::string& verb, const std::string& node, bool as_json) {
  json r = verb == "start"  ? c.client.start_hive(node)
           : verb == "stop" ? c.client.stop_hive(node)
                            : c.client.hive_status(node);
  if (as_json) {
    print_json(r);
  } else if (verb == "start") {
    std::printf("rbee-hive on '%s' is running at %s (v%s)\n", node.c_str(), str(r, "url").c_str(),
                str(r, "version").c_str());
  } else if (verb == "stop") {
    std::printf(r.value("stopped", false) ? "rbee-hive on '%s' stopped\n"
                                          : "rbee-hive on '%s' was not running\n",
                node.c_str());
  } else {
    std::printf(r.value("running", false) ? "rbee-hive on '%s' is running at %s\n"
                                          : "rbee-hive on '%s' is not running (%s)\n",
                node.c_str(), str(r, "url").c_str());
  }
  return verb == "status" && !r.value("running", false) ? exit_error : exit_ok;
}

// What Ctrl+C during `rbee models download` prints: written by the signal handler, so it is
// composed before the handler is installed.
char download_detach_note[1024];

extern "C" void leave_download_running(int) {
  const size_t length = std::strlen(download_detach_note);
  ssize_t ignored = ::write(STDERR_FILENO, download_detach_note, length);
  (void)ignored;
  ::_exit(exit_interrupted);
}

// Ctrl+C stops watching; the node's hive goes on downloading (another `rbee models download`
// of the same model follows the running download instead of starting a second one).
void say_on_interrupt_that_the_download_goes_on(const std::string& node, const std::string& model) {
  std::snprintf(download_detach_note, sizeof download_detach_note,
                "\nStopped watching. The download of %s continues on node '%s' in the "
                "background.\nWatch it again with: rbee models download --node %s -m %s\n"
                "See what is there with: rbee models list --node %s\n",
                model.c_str(), node.c_str(), node.c_str(), model.c_str(), node.c_str());
  struct sigaction sa {};
  sa.sa_handler = leave_download_running;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
}

// --node NAME for a command that names one node, with --name kept as a hidden old spelling.
void add_node_flag(CLI::App* cmd, std::string& node, const std::string& what) {
  cmd->add_option("--node", node, what);
  cmd->add_option("--name", node, "Old spelling of --node")->group("");
}

void require_node(const std::string& node) {
  if (node.empty()) throw CLI::RequiredError("--node");
}

}  // namespace

void add_setup_commands(CLI::App& app, invocation& inv) {
  auto* setup = app.add_subcommand("setup", "Manage nodes (SSH)");
  setup->require_subcommand(1);
  setup->footer(
      "Examples:\n"
      "  rbee setup add-node --node gpu1 --ssh-host 10.0.0.5 --ssh-user me --install-path "
      "/home/me/rbee\n"
      "  rbee setup install --node gpu1\n"
      "  rbee setup list-nodes");

  auto spec = std::make_shared<client::node_spec>();
  auto* add = setup->add_subcommand("add-node", "Register a node after testing SSH");
  add_node_flag(add, spec->node_name, "Name for the new node");
  add->add_option("--ssh-host", spec->ssh_host, "SSH host")->required();
  add->add_option("--ssh-port", spec->ssh_port, "SSH port (default: 22)")
      ->check(CLI::Range(1, 65535));
  add->add_option("--ssh-user", spec->ssh_user, "SSH user")->required();
  add->add_option("--ssh-key", spec->ssh_key_path, "SSH private key (default: ssh's own choice)");
  add->add_option("--install-path", spec->install_path,
                  "Where rbee lives on the node: an absolute path there (the local shell would "
                  "expand ~ to this machine's home)")
      ->required();
  // No --git-repo/--git-branch: `rbee setup install` copies the queen's own binaries; building
  // on the node is not supported, so the CLI does not offer it.
  add->footer(
      "Example:\n"
      "  rbee setup add-node --node gpu1 --ssh-host 10.0.0.5 --ssh-user me --install-path "
      "/home/me/rbee");
  add->callback([&inv, spec] {
    require_node(spec->node_name);
    inv.action = [spec](context& c) { return add_node(c, *spec); };
  });

  auto as_json = std::make_shared<bool>(false);
  auto* list = setup->add_subcommand("list-nodes", "List registered nodes");
  list->add_flag("--json", *as_json, "JSON output");
  list->footer("Examples:\n  rbee setup list-nodes\n  rbee setup list-nodes --json");
  list->callback([&inv, as_json] {
    inv.action = [as_json](context& c) {
      return print_listing(c.client.list_nodes(), *as_json, "nodes",
                           {"NODE", "STATUS", "LAST CONNECTED", "INSTALL PATH"}, node_row);
    };
  });

  auto name = std::make_shared<std::string>();
  auto* remove = setup->add_subcommand("remove-node", "Forget a node");
  add_node_flag(remove, *name, "Node to forget");
  remove->footer("Example:\n  rbee setup remove-node --node gpu1");
  remove->callback([&inv, name] {
    require_node(*name);
    inv.action = [name](context& c) {
      return print_message(c.client.remove_node(*name), "removed");
    };
  });

  auto* install = setup->add_subcommand(
      "install",
      "Check a node's OS, CPU and kernel, then copy rbee-hive and the worker there with their "
      "libraries and their own glibc");
  install->add_option("--node", *name, "Node to install on")->required();
  install->footer("Example:\n  rbee setup install --node gpu1");
  install->callback([&inv, name] {
    inv.action = [name](context& c) {
      stream_printer p;
      c.client.install(*name, [&](const json& e) { return p(e); });
      return p.finish();
    };
  });
}

void add_worker_commands(CLI::App& app, invocation& inv) {
  auto* workers = app.add_subcommand("workers", "Workers on all nodes");
  workers->require_subcommand(1);
  workers->footer(
      "Examples:\n  rbee workers list\n  rbee workers health --node gpu1\n"
      "  rbee workers shutdown --worker w-1a2b");
  auto as_json = std::make_shared<bool>(false);
  auto list_workers = [&inv, as_json] {
    inv.action = [as_json](context& c) {
      return print_listing(c.client.list_workers(), *as_json, "workers",
                           {"WORKER", "NODE", "MODEL", "STATE", "DEVICE", "SLOTS", "CTX", "MEMORY",
                            "TOK/S", "QUEUE", "UNLOADS"},
                           worker_row);
    };
  };
  auto* list = workers->add_subcommand("list", "List workers (also: rbee ps)");
  list->add_flag("--json", *as_json, "JSON output");
  list->footer("Examples:\n  rbee workers list\n  rbee workers list --json");
  list->callback(list_workers);
  auto* ps = app.add_subcommand("ps", "Running workers: device, slots, memory, speed, queue");
  ps->add_flag("--json", *as_json, "JSON output");
  ps->footer("Examples:\n  rbee ps\n  rbee ps --json");
  ps->callback(list_workers);

  auto node = std::make_shared<std::string>("localhost");
  auto* health = workers->add_subcommand("health", "Health of the workers on a node");
  health->add_option("--node", *node, "Node name (default: localhost)");
  health->add_flag("--json", *as_json, "JSON output");
  health->footer("Examples:\n  rbee workers health\n  rbee workers health --node gpu1 --json");
  health->callback([&inv, node, as_json] {
    inv.action = [node, as_json](context& c) {
      return print_listing(
          c.client.workers_health(*node), *as_json, "workers",
          {"WORKER", "MODEL", "STATE", "HEALTH"}, [](const json& w) -> std::vector<std::string> {
            return {str(w, "worker_id"), str(w, "model_ref"), str(w, "state"), str(w, "health")};
          });
    };
  });

  auto id = std::make_shared<std::string>();
  auto* shutdown = workers->add_subcommand("shutdown", "Stop a worker");
  shutdown->add_option("--worker", *id, "Worker id (as `rbee workers list` shows it)");
  shutdown->add_option("--id", *id, "Old spelling of --worker")->group("");
  shutdown->footer("Example:\n  rbee workers shutdown --worker w-1a2b");
  shutdown->callback([&inv, id] {
    if (id->empty()) throw CLI::RequiredError("--worker");
    inv.action = [id](context& c) { return print_message(c.client.shutdown_worker(*id), "done"); };
  });
}

void add_model_commands(CLI::App& app, invocation& inv) {
  auto* models = app.add_subcommand("models", "Model catalogs of the nodes");
  models->require_subcommand(1);
  models->footer(
      "Examples:\n"
      "  rbee models download -m "
      "hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF:qwen2.5-0.5b-instruct-q4_k_m.gguf\n"
      "  rbee models list --node gpu1");
  auto model = std::make_shared<std::string>();
  auto node = std::make_shared<std::string>("localhost");
  auto as_json = std::make_shared<bool>(false);

  auto* download = models->add_subcommand("download", "Download a model to a node");
  download->add_option("--node", *node, "Node name (default: localhost)");
  download->add_option("-m,--model", *model, "Model reference (hf:ORG/REPO[:FILE])")->required();
  download->footer(
      "Example:\n"
      "  rbee models download -m "
      "hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF:qwen2.5-0.5b-instruct-q4_k_m.gguf\n"
      "Ctrl+C stops watching; the node's hive finishes the download in the background.");
  download->callback([&inv, node, model] {
    inv.action = [node, model](context& c) {
      stream_printer p;
      say_on_interrupt_that_the_download_goes_on(*node, *model);
      c.client.download_model(*node, *model, [&](const json& e) { return p(e); });
      return p.finish();
    };
  });

  auto* list = models->add_subcommand("list", "List a node's models");
  list->add_option("--node", *node, "Node name (default: localhost)");
  list->add_flag("--json", *as_json, "JSON output");
  list->footer("Examples:\n  rbee models list\n  rbee models list --node gpu1 --json");
  list->callback([&inv, node, as_json] {
    inv.action = [node, as_json](context& c) {
      return print_listing(c.client.list_models(*node), *as_json, "models",
                           {"ID", "REFERENCE", "ARCH", "QUANT", "SIZE", "DOWNLOADED"}, model_row);
    };
  });

  auto* rm = models->add_subcommand("rm", "Remove a model from a node");
  rm->add_option("--node", *node, "Node name (default: localhost)");
  rm->add_option("-m,--model", *model, "Model id or reference")->required();
  rm->footer("Example:\n  rbee models rm -m hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF --node gpu1");
  rm->callback([&inv, node, model] {
    inv.action = [node, model](context& c) {
      return print_message(c.client.remove_model(*node, *model), "");
    };
  });
}

void add_logs_command(CLI::App& app, invocation& inv) {
  struct logs_options {
    std::string node;
    std::string worker;
    bool follow = false;
    std::optional<uint64_t> tail;
    std::string since;
  };
  auto o = std::make_shared<logs_options>();
  auto* logs = app.add_subcommand("logs", "Logs of a node's hive or one worker");
  logs->add_option("--node", o->node, "Node name")->required();
  logs->add_option("--worker", o->worker, "Worker id");
  logs->add_flag("-f,--follow", o->follow, "Keep streaming new lines");
  logs->add_option("-n,--tail", o->tail, "The last N lines (default: a screenful; 0 = all)");
  logs->add_option("--since", o->since, "Only lines of the last 30s, 15m, 2h, 1d ...")
      ->check([](const std::string& text) {
        return seconds_in(text) ? std::string() : "expected a duration such as 30s, 15m, 2h or 1d";
      });
  logs->footer(
      "Examples:\n  rbee logs --node localhost --tail 100\n  rbee logs --node gpu1 --worker w-1a2b "
      "--since 15m -f");
  logs->callback([&inv, o] {
    inv.action = [o](context& c) {
      client::queen_client::log_query q{
          .node = o->node,
          .worker = o->worker,
          .follow = o->follow,
          .tail = o->tail.value_or(screen_rows()),
          .since_unix = o->since.empty() ? 0 : std::time(nullptr) - *seconds_in(o->since)};
      stream_printer p;
      c.client.logs(q, [&](const json& e) { return p(e); });
      return p.finish();
    };
  });
}

void add_hive_commands(CLI::App& app, invocation& inv) {
  auto node = std::make_shared<std::string>("localhost");
  auto as_json = std::make_shared<bool>(false);
  auto* hive = app.add_subcommand("hive", "Control a node's rbee-hive (through the queen)");
  hive->require_subcommand(1);
  hive->footer("Examples:\n  rbee hive status\n  rbee hive start --node gpu1");
  for (const char* verb : {"start", "stop", "status"}) {
    auto* sub = hive->add_subcommand(verb, std::string(verb) + " a node's hive");
    sub->add_option("--node", *node, "Node name (default: localhost)");
    sub->add_flag("--json", *as_json, "JSON output");
    sub->footer(std::string("Examples:\n  rbee hive ") + verb + "\n  rbee hive " + verb +
                " --node gpu1 --json");
    sub->callback([&inv, node, as_json, v = std::string(verb)] {
      inv.action = [node, as_json, v](context& c) { return hive_verb(c, v, *node, *as_json); };
    });
  }
}

}  // namespace rbee::cli
