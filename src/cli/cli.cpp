#include "cli/cli.h"

#include "cli/command.h"
#include "cli/output.h"
#include "common/config.h"
#include "common/errors.h"
#include "common/http_client.h"
#include "common/version.h"

namespace rbee::cli {

namespace {

using nlohmann::json;

// Runs what the parsed command line asks for.
int execute(invocation& inv) {
  if (inv.local_action) return inv.local_action();
  context ctx(inv.global);
  if (inv.start_queen_first) ctx.ensure_queen();
  return inv.action(ctx);
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
  invocation inv;
  app.add_option("--queen-url", inv.global.queen_url, "queen-rbee URL (default RBEE_QUEEN_URL)");
  app.add_option("--api-key", inv.global.api_key, "API key for the queen (default RBEE_API_KEY)");
  add_infer_command(app, inv);
  add_setup_commands(app, inv);
  add_worker_commands(app, inv);
  add_model_commands(app, inv);
  add_logs_command(app, inv);
  add_queen_commands(app, inv);
  add_hive_commands(app, inv);
  add_install_command(app, inv);
  add_config_commands(app, inv);

  std::vector<std::string> reversed(args.rbegin(), args.rend());
  try {
    app.parse(reversed);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? exit_ok : exit_usage;
  }
  try {
    return execute(inv);
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
