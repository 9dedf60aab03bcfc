#include "cli/cli.h"

#include <algorithm>

#include "cli/command.h"
#include "cli/output.h"
#include "common/config.h"
#include "common/errors.h"
#include "common/http_client.h"
#include "common/version.h"

namespace rbee::cli {

namespace {

using nlohmann::json;

// Every subcommand of app, by name.
std::vector<CLI::App*> subcommands_of(CLI::App* app) {
  return app->get_subcommands([](CLI::App*) { return true; });
}

// How far the words of a command line name commands: the command reached, and, for a word where
// a subcommand belongs that names none ("rbee modles list"), a message that says so and suggests
// the nearest name.
struct command_walk {
  CLI::App* reached = nullptr;
  std::string path = "rbee";
  std::string unknown;  // "" when every such word names a subcommand
};

command_walk walk_commands(CLI::App& app, const std::vector<std::string>& args) {
  command_walk walk;
  walk.reached = &app;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& word = args[i];
    if (word == "--") break;
    if (!word.empty() && word[0] == '-') {
      // The global options take a value, as the next word unless written --opt=value.
      if (walk.reached == &app && word.find('=') == std::string::npos &&
          (word == "--queen-url" || word == "--api-key")) {
        ++i;
      }
      continue;
    }
    auto subs = subcommands_of(walk.reached);
    if (subs.empty()) break;  // the command itself: the rest are its arguments
    std::vector<std::string> names;
    CLI::App* next = nullptr;
    for (auto* sub : subs) {
      names.push_back(sub->get_name());
      if (sub->check_name(word)) next = sub;
    }
    if (next == nullptr) {
      walk.unknown = "unknown command '" + word + "' for '" + walk.path + "'.";
      std::string near = nearest_name(word, names);
      if (!near.empty()) walk.unknown += " Did you mean '" + walk.path + " " + near + "'?";
      walk.unknown += "\nRun '" + walk.path + " --help' for its commands.";
      return walk;
    }
    walk.reached = next;
    walk.path += " " + word;
  }
  return walk;
}

bool asks_for_help(const std::vector<std::string>& args) {
  return std::find(args.begin(), args.end(), "--help") != args.end() ||
         std::find(args.begin(), args.end(), "-h") != args.end();
}

// `rbee help [COMMAND...]` is `rbee [COMMAND...] --help`; `rbee` alone shows the help too.
std::vector<std::string> help_as_flag(std::vector<std::string> args) {
  if (args.empty()) return {"--help"};
  if (args[0] == "help") {
    args.erase(args.begin());
    args.push_back("--help");
  }
  return args;
}

// Runs what the parsed command line asks for.
int execute(invocation& inv) {
  if (inv.local_action) return inv.local_action();
  context ctx(inv.global);
  if (inv.start_queen_first) ctx.ensure_queen();
  return inv.action(ctx);
}

// The whole command tree; each subcommand's callback fills inv.
void build_app(CLI::App& app, invocation& inv) {
  app.set_version_flag("--version", "rbee " + common::version_string());
  app.require_subcommand(1);
  app.footer(
      "Examples:\n"
      "  rbee run hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF:qwen2.5-0.5b-instruct-q4_k_m.gguf\n"
      "  rbee infer -m file:/models/llama.gguf -p \"Once upon a time\" --max-tokens 32\n"
      "  rbee help models          # help of one command\n"
      "Flags mean the same everywhere: docs/cli.md.");
  app.add_option("--queen-url", inv.global.queen_url,
                 "queen-rbee URL (default: RBEE_QUEEN_URL, else http://127.0.0.1:8080)");
  app.add_option("--api-key", inv.global.api_key,
                 "API key for the queen (default: RBEE_API_KEY, else none)");
  add_chat_commands(app, inv);
  add_infer_command(app, inv);
  add_setup_commands(app, inv);
  add_worker_commands(app, inv);
  add_model_commands(app, inv);
  add_logs_command(app, inv);
  add_queen_commands(app, inv);
  add_hive_commands(app, inv);
  add_install_command(app, inv);
  add_config_commands(app, inv);
}

void collect_paths(CLI::App* app, std::vector<std::string> path,
                   std::vector<std::vector<std::string>>& out) {
  for (auto* sub : subcommands_of(app)) {
    auto sub_path = path;
    sub_path.push_back(sub->get_name());
    out.push_back(sub_path);
    collect_paths(sub, sub_path, out);
  }
}

}  // namespace

std::vector<std::vector<std::string>> command_paths() {
  CLI::App app{"", "rbee"};
  invocation inv;
  build_app(app, inv);
  std::vector<std::vector<std::string>> paths;
  collect_paths(&app, {}, paths);
  return paths;
}

int run(int argc, char** argv) {
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);
  return run(args);
}

int run(const std::vector<std::string>& given) {
  CLI::App app{"rbee: run LLMs on all your machines (talks to queen-rbee)", "rbee"};
  invocation inv;
  build_app(app, inv);

  const bool bare = given.empty();
  const std::vector<std::string> args = help_as_flag(given);
  set_json_errors(std::find(args.begin(), args.end(), "--json") != args.end());
  const command_walk walk = walk_commands(app, args);
  if (!walk.unknown.empty()) {
    print_error(stderr, walk.unknown, json(), "USAGE");
    return exit_usage;
  }
  // "rbee setup": a group of commands without one of them shows the group's help.
  if (walk.reached != &app && !subcommands_of(walk.reached).empty() && !asks_for_help(args)) {
    print_error(stderr, "'" + walk.path + "' needs one of its commands", json(), "USAGE");
    std::printf("%s", walk.reached->help(walk.path.substr(0, walk.path.rfind(' '))).c_str());
    return exit_usage;
  }
  std::vector<std::string> reversed(args.rbegin(), args.rend());
  try {
    app.parse(reversed);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) {
      app.exit(e);
      return bare ? exit_usage : exit_ok;
    }
    print_error(stderr, e.what(), json(), "USAGE");
    std::fprintf(stderr, "Run with --help for more information.\n");
    return exit_usage;
  }
  try {
    return execute(inv);
  } catch (const common::http_error& e) {
    print_error(stderr, e);
    return exit_error;
  } catch (const common::connection_error& e) {
    print_error(stderr, "Cannot connect to queen-rbee at " + e.host_port() + ": " + e.cause(),
                {{"hint", "start it with `rbee queen start`, or set RBEE_QUEEN_URL"}},
                "QUEEN_UNREACHABLE");
    return exit_error;
  } catch (const common::config_error& e) {
    print_error(stderr, std::string("config: ") + e.what(), json(), "CONFIG");
    return exit_error;
  } catch (const std::exception& e) {
    print_error(stderr, e.what(), json());
    return exit_error;
  }
}

}  // namespace rbee::cli
