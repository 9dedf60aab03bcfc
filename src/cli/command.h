#pragma once
// What the subcommands of `rbee` share: the invocation a parsed command line describes, the
// context of a command that talks to the queen, and the printing helpers of listings and
// streams. Each area adds its subcommands to the CLI11 app (add_*_commands); cli::run parses,
// then runs what the chosen subcommand set.

#include <cstdio>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "cli/output.h"
#include "cli/queen_daemon.h"
#include "client/queen_client.h"
#include "common/config.h"

namespace rbee::cli {

struct global_options {
  std::string queen_url;
  std::string api_key;
};

// What every command that talks to the queen needs: the loaded config and a client.
struct context {
  common::config config;
  client::queen_client client;
  std::optional<started_queen> started;  // a queen this invocation started

  explicit context(const global_options& g);
  static common::config load(const global_options& g);
  // SPEC §6: when no queen answers at a loopback URL, start one and leave it running.
  void ensure_queen();
};

// Set by the callback of the subcommand that was given.
struct invocation {
  global_options global;
  std::function<int(context&)> action;  // a command that talks to the queen
  bool start_queen_first = true;        // auto-start a local queen before the action
  std::function<int()> local_action;    // a command that needs no queen (install, config)
};

void add_infer_command(CLI::App& app, invocation& inv);
void add_chat_commands(CLI::App& app, invocation& inv);
void add_setup_commands(CLI::App& app, invocation& inv);
void add_worker_commands(CLI::App& app, invocation& inv);
void add_model_commands(CLI::App& app, invocation& inv);
void add_logs_command(CLI::App& app, invocation& inv);
void add_queen_commands(CLI::App& app, invocation& inv);
void add_hive_commands(CLI::App& app, invocation& inv);
void add_install_command(CLI::App& app, invocation& inv);
void add_config_commands(CLI::App& app, invocation& inv);

bool is_tty(std::FILE* f);
void print_json(const nlohmann::json& j);
// A listing command's output: the whole answer with --json, else a table of r[list_key].
int print_listing(const nlohmann::json& r, bool as_json, const char* list_key,
                  const std::vector<std::string>& header,
                  const std::function<std::vector<std::string>(const nlohmann::json&)>& row);
// A field for a table cell: "-" when absent or null, JSON text when not a string.
std::string str(const nlohmann::json& j, const char* key);
// A unix time as local "YYYY-mm-dd HH:MM:SS"; "never" for 0.
std::string ago(int64_t unix_time);

// Prints progress events of a stream; remembers an error event.
struct stream_printer {
  narration_printer printer{stderr, is_tty(stderr)};
  std::optional<nlohmann::json> error;
  bool operator()(const nlohmann::json& e);
  // Closes the progress bar; prints the error (exit_error) if one came.
  int finish();
};

}  // namespace rbee::cli
