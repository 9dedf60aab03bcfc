#pragma once
// The rbee-hive command line (kept in the library so programs/rbee-hive.cpp stays a few lines):
//   rbee-hive daemon [--addr 0.0.0.0:9200] [--queen-url URL] [--node-name N] ...
//   rbee-hive detect [--json]
//   rbee-hive models list [--json] | download REF | rm ID
//   rbee-hive --version
// Exit codes: 0 ok, 1 error, 2 usage.

namespace rbee::hive {

int run_cli(int argc, char** argv);

}  // namespace rbee::hive
