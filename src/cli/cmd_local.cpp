// Commands that need no queen: `rbee install` and `rbee config keys|show`.

#include <filesystem>
#include <fstream>

#include "cli/cli.h"
#include "cli/command.h"
#include "common/paths.h"
#include "common/process.h"
#include "common/secrets.h"

namespace rbee::cli {

namespace {

using nlohmann::json;
namespace fs = std::filesystem;

// Where `rbee install` puts things. `--system` uses the machine's paths; `root` (a staging
// directory, as DESTDIR) prefixes every file written while the units name the final paths.
struct install_layout {
  fs::path root;  // "" = the real file system
  fs::path bin, config_file, units, state;

  static install_layout for_user() {
    return {{},
            common::home_dir() / ".local" / "bin",
            common::home_dir() / ".config" / "rbee" / "config.toml",
            {},
            {}};
  }
  static install_layout for_system(fs::path root) {
    return {std::move(root), "/usr/local/bin", "/etc/rbee/config.toml", "/etc/systemd/system",
            "/var/lib/rbee"};
  }
  // Where a final path is written now.
  fs::path staged(const fs::path& p) const { return root.empty() ? p : root / p.relative_path(); }
  // The hive's token, where the queen looks for the token of its `localhost` node's hive: the
  // queen then uses the hive of this unit instead of starting one.
  fs::path hive_token_file() const { return state / "secrets" / "hive-localhost.token"; }
};

// A systemd unit running `command` from the layout's bin with the shared state and config.
std::string systemd_unit(const install_layout& l, std::string_view description,
                         std::string_view command, const std::string& extra_env) {
  return "[Unit]\nDescription=" + std::string(description) +
         "\nAfter=network-online.target\nWants=network-online.target\n\n[Service]\n"
         "Environment=RBEE_HOME=" +
         l.state.string() + "\nEnvironment=RBEE_CONFIG=" + l.config_file.string() + "\n" +
         extra_env + "StateDirectory=rbee\nExecStart=" + (l.bin / command).string() +
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

// The queen (on loopback unless queen.host says otherwise) and a hive that starts: it listens
// beyond loopback, so it gets a token file, which the queen finds for its `localhost` node.
void write_system_units(const install_layout& l) {
  common::ensure_dir(l.staged(l.units));
  common::ensure_dir(l.staged(l.hive_token_file().parent_path()), 0700);
  const fs::path token = l.staged(l.hive_token_file());
  if (!fs::exists(token)) common::write_secret_file(token, common::random_token());
  const fs::path queen_unit = l.units / "queen-rbee.service";
  const fs::path hive_unit = l.units / "rbee-hive.service";
  std::ofstream(l.staged(queen_unit))
      << systemd_unit(l, "rbee orchestrator (queen-rbee)", "queen-rbee", "");
  std::ofstream(l.staged(hive_unit))
      << systemd_unit(l, "rbee pool manager (rbee-hive)", "rbee-hive daemon",
                      "Environment=RBEE_HIVE_TOKEN_FILE=" + l.hive_token_file().string() + "\n");
  std::printf("Wrote %s and %s (hive token in %s)\n", queen_unit.c_str(), hive_unit.c_str(),
              l.hive_token_file().c_str());
}

int cmd_install(bool system, const std::string& root) {
  const install_layout l = system ? install_layout::for_system(root) : install_layout::for_user();
  fs::path source = common::self_executable_dir();
  const fs::path bin = l.staged(l.bin);
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
  const fs::path config_file = l.staged(l.config_file);
  common::ensure_dir(config_file.parent_path());
  if (!fs::exists(config_file)) {
    std::ofstream(config_file) << default_config_text();
    std::printf("Wrote default config %s\n", config_file.c_str());
  } else {
    std::printf("Kept existing config %s\n", config_file.c_str());
  }
  if (system) write_system_units(l);
  std::printf("\n%d binaries installed. Next steps:\n", copied);
  if (!system) {
    std::printf("  export PATH=\"%s:$PATH\"   # if it is not on your PATH yet\n", l.bin.c_str());
  } else {
    std::printf(
        "  sudo systemctl daemon-reload && sudo systemctl enable --now rbee-hive queen-rbee\n");
  }
  std::printf(
      "  rbee run hf:ORG/REPO:FILE.gguf          # chat with a model (README: quickstart)\n");
  std::printf(
      "  rbee setup add-node --node NAME --ssh-host HOST --ssh-user USER "
      "--install-path /home/me/rbee   # more machines\n");
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
  auto root = std::make_shared<std::string>();
  auto* install = app.add_subcommand("install", "Install rbee's binaries and a default config");
  install->add_flag("--system", *system,
                    "Install to /usr/local/bin and /etc/rbee, with systemd units for queen-rbee "
                    "and rbee-hive (default: ~/.local/bin and ~/.config/rbee)");
  install->add_option("--root", *root, "With --system: write under this staging directory")
      ->group("");
  install->footer("Examples:\n  rbee install\n  sudo rbee install --system");
  install->callback([&inv, system, root] {
    if (!root->empty() && !*system) throw CLI::ValidationError("--root", "needs --system");
    inv.local_action = [system, root] { return cmd_install(*system, *root); };
  });
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
