// Commands that need no queen: `rbee install` and `rbee config keys|show`.

#include <filesystem>
#include <fstream>

#include "cli/cli.h"
#include "cli/command.h"
#include "common/paths.h"
#include "common/process.h"

namespace rbee::cli {

namespace {

using nlohmann::json;
namespace fs = std::filesystem;

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
  std::printf(
      "  rbee run hf:ORG/REPO:FILE.gguf          # chat with a model (README: quickstart)\n");
  std::printf(
      "  rbee setup add-node --node NAME --ssh-host HOST --ssh-user USER "
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

void add_install_command(CLI::App& app, invocation& inv) {
  auto system = std::make_shared<bool>(false);
  auto* install = app.add_subcommand("install", "Install rbee's binaries and a default config");
  install->add_flag("--system", *system,
                    "Install to /usr/local/bin and /etc/rbee, with systemd units (default: "
                    "~/.local/bin and ~/.config/rbee)");
  install->footer("Examples:\n  rbee install\n  sudo rbee install --system");
  install->callback(
      [&inv, system] { inv.local_action = [system] { return cmd_install(*system); }; });
}

void add_config_commands(CLI::App& app, invocation& inv) {
  auto* config = app.add_subcommand("config", "Configuration keys and their values");
  config->require_subcommand(1);
  config->footer("Examples:\n  rbee config keys\n  rbee config show --json");
  auto as_json = std::make_shared<bool>(false);
  auto* keys = config->add_subcommand("keys", "Every key, its env var and default");
  keys->add_flag("--json", *as_json, "JSON output");
  keys->footer("Examples:\n  rbee config keys\n  rbee config keys --json");
  keys->callback(
      [&inv, as_json] { inv.local_action = [as_json] { return cmd_config_keys(*as_json); }; });
  auto* show = config->add_subcommand("show", "Effective values and their source");
  show->add_flag("--json", *as_json, "JSON output");
  show->footer(
      "Examples:\n  rbee config show\n  RBEE_QUEEN_URL=http://10.0.0.2:8080 rbee config show "
      "--json");
  show->callback([&inv, as_json] {
    inv.local_action = [&inv, as_json] {
      return cmd_config_show(context::load(inv.global), *as_json);
    };
  });
}

}  // namespace rbee::cli
