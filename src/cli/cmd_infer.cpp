// `rbee infer`: a task streamed from the queen; tokens on stdout, narration on stderr, Ctrl-C
// cancels the task on the queen.

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <future>
#include <iostream>
#include <iterator>
#include <mutex>
#include <thread>

#include "api/requests.h"
#include "api/sampling.h"
#include "cli/cli.h"
#include "cli/command.h"

namespace rbee::cli {

namespace {

using nlohmann::json;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

struct infer_options {
  std::string node;
  std::string model;
  std::string prompt;
  int max_tokens = 0;
  std::optional<double> temperature;
  std::optional<double> top_p;
  std::optional<int> top_k;
  std::optional<double> min_p;
  std::optional<double> repeat_penalty;
  std::optional<int64_t> seed;
  std::vector<std::string> stop;
  std::string backend;
  std::string device;
  // The size of a worker this task starts (api::worker_overrides).
  std::optional<int> ctx;
  std::optional<int> slots;
  std::string keep_alive;  // "30s", "15m", "2h", "1d"
  // A worker this starts split by layers across these devices (docs/multi-gpu.md).
  std::vector<int> devices;
  std::string split;
  bool json_output = false;
  bool ephemeral = false;
};

bool retryable_busy(const common::http_error& e) {
  return e.code == common::codes::QUEUE_FULL || e.code == common::codes::ALL_SLOTS_BUSY;
}

// The POST /v2/tasks body; options left out get the queen's defaults.
json task_body(const infer_options& o) {
  json request = {{"model", o.model}, {"prompt", o.prompt}, {"stop", o.stop}};
  if (!o.node.empty()) request["node"] = o.node;
  if (o.max_tokens > 0) request["max_tokens"] = o.max_tokens;
  if (o.temperature) request["temperature"] = *o.temperature;
  if (o.top_p) request["top_p"] = *o.top_p;
  if (o.top_k) request["top_k"] = *o.top_k;
  if (o.min_p) request["min_p"] = *o.min_p;
  if (o.repeat_penalty) request["repeat_penalty"] = *o.repeat_penalty;
  if (o.seed) request["seed"] = *o.seed;
  if (!o.backend.empty()) request["backend"] = o.backend;
  if (!o.device.empty()) request["device"] = o.device;
  if (o.ctx) request["ctx"] = *o.ctx;
  if (o.slots) request["slots"] = *o.slots;
  if (!o.keep_alive.empty()) request["keep_alive_s"] = *seconds_in(o.keep_alive);
  if (!o.devices.empty()) request["devices"] = o.devices;
  if (!o.split.empty()) request["split"] = o.split;
  return request;
}

// One task's stream, run on a thread of its own while the main thread waits for signals.
class task_stream {
 public:
  task_stream(context& ctx, const infer_options& o) : ctx_(ctx), o_(o) {}

  // Streams the task; QUEUE_FULL / ALL_SLOTS_BUSY are tried again (1, 2, 4 s).
  void run(const json& request) {
    for (int attempt = 0;; ++attempt) {
      try {
        ctx_.client.run_task(request, [&](const json& e) { return on_event(e); });
        return;
      } catch (const common::http_error& e) {
        if (retryable_busy(e) && attempt < 3 && !interrupted) {
          int delay = 1 << attempt;
          std::fprintf(stderr, "%s; retrying in %d s\n", e.message.c_str(), delay);
          for (int i = 0; i < delay * 10 && !interrupted; ++i) std::this_thread::sleep_for(100ms);
          if (!interrupted) continue;
        }
        http_failure = e;
        if (retryable_busy(e) && (!e.details.is_object() || !e.details.contains("hint"))) {
          http_failure->details = {{"hint",
                                    "the queen is busy: try again later, or raise queen.queue_size "
                                    "(RBEE_QUEUE_SIZE)"}};
        }
        return;
      } catch (const common::connection_error& e) {
        if (!interrupted) connection_failure = e.what();
        return;
      }
    }
  }

  std::string task_id() {
    std::lock_guard lock(mutex_);
    return task_id_;
  }

  // The outcome, printed once the stream ended.
  int report() {
    printer.close_bar();
    // The text ends with a newline, on a terminal or in a pipe, so nothing is glued to it.
    if (tokens > 0 && !o_.json_output && text.back() != '\n') std::fputc('\n', stdout);
    std::fflush(stdout);
    if (http_failure) {
      print_error(stderr, *http_failure);
      return exit_error;
    }
    if (connection_failure) {
      print_error(stderr, "Cannot connect to queen-rbee: " + *connection_failure,
                  {{"hint", "start it with `rbee queen start` or check RBEE_QUEEN_URL"}},
                  "QUEEN_UNREACHABLE");
      return exit_error;
    }
    if (error_event) {
      print_error(stderr, error_event->value("message", "inference failed"),
                  error_event->value("details", json()), error_event->value("code", "ERROR"));
      return exit_error;
    }
    if (!end_event) {
      print_error(stderr, "the stream ended before the task finished", json(), "INTERNAL");
      return exit_error;
    }
    print_summary();
    return exit_ok;
  }

  std::atomic<bool> interrupted{false};
  narration_printer printer{stderr, is_tty(stderr)};
  int tokens = 0;

 private:
  bool on_event(const json& e) {
    if (interrupted) return false;
    std::string type = e.value("type", "");
    if (type == "narration") {
      if (e.contains("task_id") && e["task_id"].is_string()) {
        std::lock_guard lock(mutex_);
        task_id_ = e["task_id"].get<std::string>();
      }
      // A note mid-answer (a failover) starts on a line of its own on a shared terminal.
      if (answer_line_open_ && is_tty(stdout) && is_tty(stderr)) std::fputc('\n', stderr);
      answer_line_open_ = false;
      printer.print(e);
      note_step(e.value("action", ""));
    } else if (type == "token") {
      // A request of n choices streams them interleaved; the command line shows choice 0.
      if (e.value("index", 0) != 0) return !interrupted;
      printer.close_bar();
      if (!first_token_at) first_token_at = steady::now();
      std::string t = e.value("t", "");
      ++tokens;
      text += t;
      if (!o_.json_output) {
        std::fwrite(t.data(), 1, t.size(), stdout);
        std::fflush(stdout);
        if (!t.empty()) answer_line_open_ = t.back() != '\n';
      }
    } else if (type == "end") {
      end_event = e;
    } else if (type == "error") {
      error_event = e;
    }
    return !interrupted;
  }

  // The narration's actions in the order they first happened ("worker_selected" for a warm
  // start; "hive_start", "download_start", "worker_spawn", ... for a cold one), for scripts.
  void note_step(const std::string& action) {
    if (!action.empty() && std::find(steps_.begin(), steps_.end(), action) == steps_.end()) {
      steps_.push_back(action);
    }
  }

  void print_summary() {
    double ttft_ms =
        first_token_at
            ? std::chrono::duration<double, std::milli>(*first_token_at - started_at).count()
            : 0.0;
    double tps = end_event->value("tokens_per_sec", 0.0);
    int tokens_out = end_event->value("tokens_out", tokens);
    if (o_.json_output) {
      print_json({{"task_id", task_id()},
                  {"text", text},
                  {"tokens_in", end_event->value("tokens_in", 0)},
                  {"tokens_out", tokens_out},
                  {"tokens_per_sec", tps},
                  {"time_to_first_token_ms", ttft_ms},
                  {"stop_reason", end_event->value("stop_reason", "")},
                  {"steps", steps_}});
    }
    std::fprintf(stderr, "%d tokens, %.1f tok/s, time to first token %.0f ms\n", tokens_out, tps,
                 ttft_ms);
  }

  context& ctx_;
  const infer_options& o_;
  std::mutex mutex_;
  std::string task_id_;
  std::vector<std::string> steps_;
  std::optional<json> end_event;
  std::optional<json> error_event;
  bool answer_line_open_ = false;  // stdout's last answer text did not end its line
  std::optional<common::http_error> http_failure;
  std::optional<std::string> connection_failure;
  std::string text;
  const steady::time_point started_at = steady::now();
  std::optional<steady::time_point> first_token_at;
};

// Waits until the stream ends or SIGINT/SIGTERM arrives; true when a signal came.
bool interrupted_while(std::future<void>& stream, sigset_t& signals) {
  timespec tick{0, 100'000'000};
  while (stream.wait_for(0ms) != std::future_status::ready) {
    int sig = sigtimedwait(&signals, nullptr, &tick);
    if (sig == SIGINT || sig == SIGTERM) return true;
  }
  return false;
}

void cancel_on_queen(context& ctx, const std::string& task_id) {
  if (task_id.empty()) return;
  try {
    client::client_config quick = ctx.client.config();
    quick.read_timeout = 3s;
    client::queen_client(quick).cancel_task(task_id);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cancel failed: %s\n", e.what());
  }
}

int cmd_infer(context& ctx, infer_options o) {
  if (o.prompt == "-") {
    o.prompt.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  }
  if (o.prompt.empty()) {
    print_error(stderr, "the prompt is empty", json(), "USAGE");
    return exit_usage;
  }
  const json request = task_body(o);
  try {
    api::device_split_from_json(request);  // the contract's check, before any daemon
  } catch (const common::http_error& e) {
    print_error(stderr, "--" + e.details.value("field", std::string("devices")) + ": " + e.message,
                json(), "USAGE");
    return exit_usage;
  }

  // Signals are taken synchronously by this thread (sigtimedwait) while another streams.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  ctx.ensure_queen();
  auto teardown = [&] {
    if (o.ephemeral && ctx.started) {
      std::fprintf(stderr, "Stopping the queen-rbee this command started (--ephemeral)\n");
      stop_started_queen(*ctx.started, 40s);
    }
  };

  task_stream task(ctx, o);
  auto stream = std::async(std::launch::async, [&] { task.run(request); });
  if (interrupted_while(stream, signals)) {
    task.interrupted = true;
    cancel_on_queen(ctx, task.task_id());
    task.printer.close_bar();
    if (task.tokens > 0 && !o.json_output) std::fputc('\n', stdout);
    std::fflush(stdout);
    std::fprintf(stderr, "Canceled.\n");
    std::fflush(stderr);
    teardown();
    // The stream ends once the worker stops; do not wait on a wedged connection.
    if (stream.wait_for(3s) != std::future_status::ready) std::_Exit(exit_interrupted);
    return exit_interrupted;
  }
  stream.get();
  int rc = task.report();
  teardown();
  return rc;
}

}  // namespace

void add_infer_command(CLI::App& app, invocation& inv) {
  auto o = std::make_shared<infer_options>();
  auto* infer = app.add_subcommand("infer", "Generate text; tokens stream to stdout");
  infer->add_option("--node", o->node, "Node to run on (default: the scheduler picks)");
  infer->add_option("-m,--model", o->model, "Model reference (hf:ORG/REPO[:FILE], file:/path)")
      ->required();
  infer->add_option("-p,--prompt", o->prompt, "Prompt text, or - to read stdin")->required();
  // The request's limits are the contract's (api/sampling.h), checked before any daemon work.
  auto in = [](auto limits) { return CLI::Range(limits.min, limits.max); };
  infer
      ->add_option("--max-tokens", o->max_tokens,
                   "Tokens to generate (default: until end of generation or the end of the "
                   "worker's context)")
      ->check(in(api::max_tokens_limits));
  infer
      ->add_option("--temperature", o->temperature,
                   "Sampling temperature, 0 = greedy (default: the worker's, 0.8)")
      ->check(in(api::temperature_limits));
  infer->add_option("--top-p", o->top_p, "Nucleus sampling, 1 = off (default: 0.95)")
      ->check(in(api::top_p_limits));
  infer->add_option("--top-k", o->top_k, "Top-k sampling, 0 = off (default: 40)")
      ->check(in(api::top_k_limits));
  infer->add_option("--min-p", o->min_p, "Min-p sampling, 0 = off (default: 0.05)")
      ->check(in(api::min_p_limits));
  infer
      ->add_option("--repeat-penalty", o->repeat_penalty,
                   "Repetition penalty, 1 = off (default: 1)")
      ->check(in(api::repeat_penalty_limits));
  infer->add_option("--seed", o->seed, "Random seed, same seed same answer (default: random)")
      ->check(in(api::seed_limits));
  infer->add_option("--stop", o->stop, "Stop string, repeatable (default: none)");
  infer->add_option("--backend", o->backend, "cpu or cuda (default: any)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  infer->add_option("--device", o->device, "Device index (default: any)");
  infer->add_option("--ctx", o->ctx, "Context per slot of a worker this starts (default: sized)")
      ->check(CLI::Range(256, 1 << 20));
  infer->add_option("--slots", o->slots, "Slots of a worker this starts (default: sized)")
      ->check(CLI::Range(1, 256));
  infer
      ->add_option("--keep-alive", o->keep_alive,
                   "Idle time before a worker this starts unloads: 30s, 15m, 2h, 1d (default: 5m)")
      ->check([](const std::string& text) {
        return seconds_in(text) && *seconds_in(text) <= 7 * 86400
                   ? std::string()
                   : "expected a duration such as 30s, 15m, 2h or 1d, at most 7d";
      });
  infer
      ->add_option("--devices", o->devices,
                   "Split a worker this starts across these devices, e.g. 0,1 (with --split "
                   "layer or tensor; default: one device)")
      ->delimiter(',')
      ->check(CLI::NonNegativeNumber);
  infer
      ->add_option("--split", o->split,
                   "How a worker this starts uses --devices: layer (consecutive layers on "
                   "each) or tensor (a slice of every layer on each); default: none")
      ->check(CLI::IsMember({"none", "layer", "tensor"}));
  infer->add_flag("--json", o->json_output, "Print the result as JSON");
  infer->add_flag("--ephemeral", o->ephemeral, "Stop what this command started when it exits");
  infer->footer(
      "Examples:\n"
      "  rbee infer -m file:/models/llama.gguf -p \"Once upon a time\" --max-tokens 32\n"
      "  echo \"Summarise: ...\" | rbee infer -m hf:ORG/REPO -p - --json\n"
      "The prompt is sent as it is (no chat template); `rbee run` and `rbee chat` use the "
      "model's.");
  infer->callback([&inv, o] {
    inv.start_queen_first = false;  // it starts the queen itself, after reading the prompt
    inv.action = [o](context& c) { return cmd_infer(c, *o); };
  });
}

}  // namespace rbee::cli
