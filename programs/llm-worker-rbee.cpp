// llm-worker-rbee: one loaded model served over HTTP. All logic lives in src/worker/.
#include "worker/worker_app.h"

int main(int argc, char** argv) {
  return rbee::worker::worker_main(argc, argv);
}
