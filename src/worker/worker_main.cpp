// The llm-worker-rbee command line: options, secrets, signals, then worker_app.
#include <csignal>
#include <iostream>
#include <optional>

#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include "common/config.h"
#include "common/http_server.h"
#include "common/log.h"
#include "common/process.h"
#include "common/secrets.h"
#include "common/version.h"
#include "worker/worker_app.h"

namespace rbee::worker {

namespace {

volatile std::sig_atomic_t g_stop_signal = 0;

extern "C" void on_stop_signal(int sig) {
  g_stop_signal = sig;
}

void install_signal_handlers() {
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);
  // A client that disconnects mid-stream must not kill the worker.
  std::signal(SIGPIPE, SIG_IGN);
}

}  // namespace

int worker_main(int argc, char** argv) {
  CLI::App app{"llm-worker-rbee: serves one loaded model over HTTP (started by rbee-hive)"};
  app.set_version_flag("--version", common::version_string());
  worker_options o;
  std::string backend = "cpu";
  std::string token_file;
  bool die_with_parent = false;
  int debug_load_delay_ms = 0;
  int debug_step_delay_ms = 0;
  app.add_option("--worker-id", o.worker_id, "Id the hive knows this worker by");
  app.add_option("--model", o.model_path, "Path of the GGUF model file")->required();
  app.add_option("--model-ref", o.model_ref, "Model reference reported back (default file:<path>)");
  app.add_option("--backend", backend, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("--device", o.device, "CUDA device index")->check(CLI::NonNegativeNumber);
  app.add_option("--devices", o.devices, "Devices of a split, in part order, e.g. 0,1")
      ->delimiter(',')
      ->check(CLI::NonNegativeNumber);
  app.add_option_function<std::string>(
         "--split",
         [&o](const std::string& mode) { o.split = engine::split_mode_from_string(mode); },
         "none; layer: consecutive layers on each of --devices; tensor: a slice of every "
         "layer's heads and FFN on each")
      ->check(CLI::IsMember({"none", "layer", "tensor"}));
  app.add_option("--tensor-split", o.tensor_split,
                 "Each device's share of the layers, e.g. 3,1 (default: by free memory)")
      ->delimiter(',');
  app.add_option("--host", o.host, "Address to listen on")->capture_default_str();
  app.add_option("--port", o.port, "Port to listen on (0: any free port)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  app.add_option("--slots", o.slots, "Concurrent sequences (continuous batching)")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  app.add_option("--ctx", o.n_ctx, "Context length per slot (0: the model's, at most 4096)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--threads", o.n_threads, "CPU threads (0: one per physical core)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--prefill-chunk", o.prefill_chunk,
                 "Prompt tokens per decode step (0: 512 on CUDA, 128 on the CPU)")
      ->check(CLI::Range(0, 4096))
      ->capture_default_str();
  app.add_option("--callback-url", o.callback_url,
                 "Hive URL to POST /v1/workers/ready to once loaded (implies --die-with-parent)");
  app.add_option("--token-file", token_file,
                 "File holding the API token (or set RBEE_WORKER_TOKEN; never pass it in argv)");
  app.add_flag("--die-with-parent", die_with_parent, "Exit when the parent process dies");
  app.add_option("--debug-load-delay-ms", debug_load_delay_ms,
                 "TEST ONLY: slow the model load down by this much, spread over its layers")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--debug-step-delay-ms", debug_step_delay_ms,
                 "TEST ONLY: pause this long before each decode step")
      ->check(CLI::Range(0, 60000));
  CLI11_PARSE(app, argc, argv);

  // Tokens come from the environment (set by the hive) or a file, never from argv.
  std::optional<common::config> cfg;
  try {
    cfg = common::config::load();
  } catch (const common::config_error& e) {
    std::cerr << "llm-worker-rbee: " << e.what() << "\n";
    return 1;
  }
  common::init_logging("llm-worker-rbee", cfg->log_level());
  o.backend = backend == "cuda" ? engine::backend_kind::cuda : engine::backend_kind::cpu;
  o.debug_load_delay = std::chrono::milliseconds(debug_load_delay_ms);
  o.debug_step_delay = std::chrono::milliseconds(debug_step_delay_ms);
  if (o.model_ref.empty()) o.model_ref = "file:" + o.model_path;
  if (o.worker_id.empty()) o.worker_id = "worker-" + std::to_string(o.port);

  if (auto token = cfg->worker_token()) {
    o.api_token = *token;
  } else if (!token_file.empty()) {
    try {
      o.api_token = common::read_secret_file(token_file);
    } catch (const std::exception& e) {
      std::cerr << "llm-worker-rbee: " << e.what() << "\n";
      return 1;
    }
  }
  o.hive_token = cfg->hive_token().value_or("");
  o.connection_limits = cfg->connection_limits();
  if (o.api_token.empty() && !common::is_loopback(o.host)) {
    std::cerr << "llm-worker-rbee: refusing to listen on " << o.host
              << " without an API token (set RBEE_WORKER_TOKEN or --token-file)\n";
    return 1;
  }

  install_signal_handlers();
  if (die_with_parent || !o.callback_url.empty()) common::exit_when_parent_dies();

  worker_app worker(o);
  try {
    worker.start();
  } catch (const common::address_in_use& e) {
    spdlog::error("cannot start: {}", e.what());
    return common::exit_address_in_use;  // the hive retries on another port
  } catch (const std::exception& e) {
    spdlog::error("cannot start: {}", e.what());
    return 1;
  }
  while (!worker.wait_for_stop_request(std::chrono::milliseconds(100))) {
    if (g_stop_signal != 0) {
      spdlog::info("signal {} received", static_cast<int>(g_stop_signal));
      break;
    }
  }
  return worker.shutdown();
}

}  // namespace rbee::worker
