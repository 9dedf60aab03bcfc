#pragma once
// The `rbee` command line (SPEC §6), Ollama-like: tokens on stdout, narration and progress on
// stderr, --json for scripts. Exit codes: 0 ok, 1 error, 2 usage, 130 interrupted.
// `rbee config keys` prints every configuration key (common::config_keys()); `rbee config show`
// prints the effective values and their source, secrets masked. Neither needs a queen.

#include <string>
#include <vector>

namespace rbee::cli {

inline constexpr int exit_ok = 0;
inline constexpr int exit_error = 1;
inline constexpr int exit_usage = 2;
inline constexpr int exit_interrupted = 130;

// Runs one CLI invocation. args excludes argv[0].
int run(const std::vector<std::string>& args);
int run(int argc, char** argv);

// Every command as the words that name it ({"models", "list"}), for the help tests.
std::vector<std::vector<std::string>> command_paths();

}  // namespace rbee::cli
