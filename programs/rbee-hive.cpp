// rbee-hive: the per-node pool manager. All logic lives in src/hive (see hive/cli.h).
#include "hive/cli.h"

int main(int argc, char** argv) {
  return rbee::hive::run_cli(argc, argv);
}
