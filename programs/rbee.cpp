// rbee: the command line (SPEC §6). All logic lives in rbee_cli.
#include "cli/cli.h"

int main(int argc, char** argv) {
  return rbee::cli::run(argc, argv);
}
