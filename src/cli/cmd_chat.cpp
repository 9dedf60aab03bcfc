// `rbee chat` and `rbee run`: a conversation through the queen's OpenAI chat endpoint
// (/v1/chat/completions, streamed). Each turn sends the whole history. The model is made ready
// first through /v2/tasks so that a cold start shows its download and loading progress; Ctrl+C
// stops an answer (the session goes on), Ctrl+D or /bye leaves.

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <mutex>
#include <thread>

#include "cli/chat_session.h"
#include "cli/cli.h"
#include "cli/command.h"
#include "common/paths.h"
#include "common/text.h"

namespace rbee::cli {

namespace {

using nlohmann::json;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

std::atomic<bool> sigint_seen{false};

extern "C" void note_sigint(int) {
  sigint_seen = true;
}

// While alive, Ctrl+C sets sigint_seen instead of ending the process, and interrupts a blocking
// read of the terminal (no SA_RESTART).
class sigint_catcher {
 public:
  sigint_catcher() {
    struct sigaction sa {};
    sa.sa_handler = note_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    sigaction(SIGINT, &sa, &previous_);
  }
  ~sigint_catcher() { sigaction(SIGINT, &previous_, nullptr); }
  sigint_catcher(const sigint_catcher&) = delete;
  sigint_catcher& operator=(const sigint_catcher&) = delete;

 private:
  struct sigaction previous_ {};
};

enum class line_status { line, interrupted, end_of_input };

// One line of stdin without its newline. At end of input a last unterminated line still counts.
line_status read_line(std::string& line) {
  line.clear();
  for (;;) {
    char c = 0;
    ssize_t n = ::read(STDIN_FILENO, &c, 1);
    if (n < 0 && errno == EINTR) {
      if (sigint_seen.exchange(false)) return line_status::interrupted;
      continue;
    }
    if (n <= 0) return line.empty() ? line_status::end_of_input : line_status::line;
    if (c == '\n') return line_status::line;
    line.push_back(c);
  }
}

// What a stream thread leaves for the main thread. Shared: a stream that does not end soon
// after Ctrl+C is left to finish on its own.
struct stream_state {
  std::atomic<bool> stop{false};
  std::atomic<bool> done{false};
  std::mutex output;  // held while tokens are written, so none follow the stop
  std::string text;
  std::optional<json> usage;
  std::optional<json> error;  // {"message", "details"}
  std::optional<common::http_error> http_failure;
  std::optional<std::string> failure;  // connection or other error
  std::optional<steady::time_point> first_token_at;
};

// Runs body(state) on a thread with SIGINT blocked while this thread watches for Ctrl+C.
// Returns true when Ctrl+C came: the stream is asked to stop and given a few seconds to end.
bool run_interruptible(const std::shared_ptr<stream_state>& state,
                       std::function<void(stream_state&)> body) {
  sigset_t blocked, previous;
  sigemptyset(&blocked);
  sigaddset(&blocked, SIGINT);
  pthread_sigmask(SIG_BLOCK, &blocked, &previous);
  std::thread([state, body = std::move(body)] {
    try {
      body(*state);
    } catch (const common::http_error& e) {
      state->http_failure = e;
    } catch (const common::connection_error& e) {
      if (!state->stop) state->failure = "Cannot connect to queen-rbee at " + e.host_port();
    } catch (const std::exception& e) {
      if (!state->stop) state->failure = e.what();
    }
    state->done = true;
  }).detach();
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);

  while (!state->done) {
    if (sigint_seen.exchange(false)) {
      {
        std::lock_guard lock(state->output);
        state->stop = true;
      }
      // The queen sends a keep-alive at least every 5 s; the stream notices the stop then.
      const auto deadline = steady::now() + 6s;
      while (!state->done && steady::now() < deadline) std::this_thread::sleep_for(20ms);
      return true;
    }
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

// Prints what went wrong in a stream; true when something did.
bool report_failure(const stream_state& s) {
  if (s.http_failure) {
    print_error(stderr, *s.http_failure);
  } else if (s.failure) {
    print_error(stderr, *s.failure, {{"hint", "check that queen-rbee runs: `rbee queen status`"}});
  } else if (s.error) {
    print_error(stderr, s.error->value("message", "the answer failed"),
                s.error->value("details", json()));
  } else {
    return false;
  }
  return true;
}

enum class outcome { ok, failed, interrupted };

// Makes sure a worker serves the model (on the node, when one is named) before the first turn:
// a one-token task whose narration shows a cold start's download and loading progress.
outcome prepare_model(context& ctx, const std::string& model, const std::string& node) {
  json request = {{"model", model}, {"prompt", "Hello"}, {"max_tokens", 1}};
  if (!node.empty()) request["node"] = node;
  auto state = std::make_shared<stream_state>();
  auto printer = std::make_shared<narration_printer>(stderr, is_tty(stderr));
  client::queen_client client(ctx.client.config());
  bool interrupted = run_interruptible(state, [client, request, printer](stream_state& s) mutable {
    client.run_task(
        request,
        [&](const json& e) {
          std::string type = e.value("type", "");
          if (type == "narration") {
            std::lock_guard lock(s.output);
            if (!s.stop) printer->print(e);
          } else if (type == "error") {
            s.error = e;
          }
          return !s.stop;
        },
        [&s] { return !s.stop; });
  });
  std::lock_guard lock(state->output);
  printer->close_bar();
  if (interrupted) return outcome::interrupted;
  return report_failure(*state) ? outcome::failed : outcome::ok;
}

// The text of an OpenAI chunk's first choice, if it carries any.
std::string delta_text(const json& chunk) {
  if (!chunk.contains("choices") || !chunk["choices"].is_array() || chunk["choices"].empty()) {
    return "";
  }
  const auto& choice = chunk["choices"][0];
  if (!choice.contains("delta") || !choice["delta"].is_object()) return "";
  const auto& d = choice["delta"];
  return d.contains("content") && d["content"].is_string() ? d["content"].get<std::string>() : "";
}

struct turn_result {
  outcome how = outcome::ok;
  std::string text;
  std::string error_code;  // the queen's code when the answer failed
};

// One answer, streamed to stdout as it comes; stats on stderr when verbose.
turn_result answer(context& ctx, const json& body, bool verbose) {
  auto state = std::make_shared<stream_state>();
  client::queen_client client(ctx.client.config());
  const auto started = steady::now();
  bool interrupted = run_interruptible(state, [client, body](stream_state& s) mutable {
    client.chat_completion(
        body,
        [&](const json& chunk) {
          if (chunk.contains("error")) {
            s.error = chunk["error"];
            return false;
          }
          if (chunk.contains("usage") && chunk["usage"].is_object()) s.usage = chunk["usage"];
          std::string t = delta_text(chunk);
          std::lock_guard lock(s.output);
          if (s.stop) return false;
          if (!t.empty()) {
            if (!s.first_token_at) s.first_token_at = steady::now();
            s.text += t;
            std::fwrite(t.data(), 1, t.size(), stdout);
            std::fflush(stdout);
          }
          return true;
        },
        [&s] { return !s.stop; });
  });
  std::lock_guard lock(state->output);
  turn_result r{interrupted ? outcome::interrupted : outcome::ok, state->text, ""};
  // The answer ends with a newline, on a terminal or not, so nothing is glued to it.
  if (!r.text.empty() && r.text.back() != '\n') std::fputc('\n', stdout);
  std::fflush(stdout);
  if (interrupted) return r;
  if (report_failure(*state)) {
    r.how = outcome::failed;
    if (state->http_failure) r.error_code = state->http_failure->code;
    if (state->error) r.error_code = state->error->value("code", "");
    return r;
  }
  if (verbose && state->usage) {
    double seconds = std::chrono::duration<double>(steady::now() - started).count();
    int tokens_out = state->usage->value("completion_tokens", 0);
    double ttft_ms =
        state->first_token_at
            ? std::chrono::duration<double, std::milli>(*state->first_token_at - started).count()
            : 0.0;
    std::fprintf(stderr, "%d prompt tokens, %d tokens, %.1f tok/s, time to first token %.0f ms\n",
                 state->usage->value("prompt_tokens", 0), tokens_out,
                 seconds > 0 ? tokens_out / seconds : 0.0, ttft_ms);
  }
  return r;
}

struct chat_options {
  chat_settings settings;
  std::vector<std::pair<std::string, std::string>> initial_params;  // from flags
  bool verbose = false;
  std::string prompt;  // `rbee run MODEL PROMPT`: one turn, no session
};

// The interactive session and what its slash commands do.
class chat_loop {
 public:
  chat_loop(context& ctx, chat_session& session, bool verbose)
      : ctx_(ctx), session_(session), verbose_(verbose), interactive_(is_tty(stdin)) {}

  int run() {
    if (interactive_) {
      std::fprintf(stderr,
                   "Chatting with %s. /? for help, Ctrl+C stops an answer, Ctrl+D or "
                   "/bye leaves.\n",
                   session_.settings().model.c_str());
    }
    chat_input input;
    std::string line;
    for (;;) {
      if (interactive_) {
        std::fputs(input.in_block() || pending_ ? "... " : ">>> ", stderr);
        std::fflush(stderr);
      }
      auto status = read_line(line);
      if (status == line_status::interrupted) {
        input.reset();
        pending_ = false;
        std::fputs("\n(Ctrl+D or /bye to leave)\n", stderr);
        continue;
      }
      if (status == line_status::end_of_input) break;
      auto message = input.feed(line);
      pending_ = !message && !input.in_block();
      if (!message || common::trim(*message).empty()) continue;
      if (!input.in_block() && message->front() == '/' &&
          message->find('\n') == std::string::npos) {
        if (!command(parse_chat_command(*message))) break;
        continue;
      }
      turn(*message);
    }
    if (interactive_) std::fputc('\n', stderr);
    return failed_ && !interactive_ ? exit_error : exit_ok;
  }

  // One user message and its answer, kept in the history (a stopped answer as far as it got).
  void turn(const std::string& text) {
    auto r = answer(ctx_, session_.request_body(text), verbose_);
    if (r.how == outcome::failed) {
      failed_ = true;
      // The usual way a conversation becomes an invalid request: it outgrew the context.
      if (r.error_code == "INVALID_REQUEST" && !session_.messages().empty()) {
        std::fputs("If the conversation outgrew the model's context, /clear starts over.\n",
                   stderr);
      }
      return;
    }
    if (r.how == outcome::interrupted) std::fputs("(answer stopped)\n", stderr);
    session_.add_turn(text, r.text);
  }
  bool failed() const { return failed_; }

 private:
  // Runs a slash command; false when the session ends.
  bool command(const chat_command& c) {
    using k = chat_command::kind;
    switch (c.what) {
      case k::bye:
        return false;
      case k::help:
        std::fputs(chat_help_text().c_str(), stderr);
        break;
      case k::clear:
        session_.clear();
        std::fputs("Conversation cleared.\n", stderr);
        break;
      case k::model:
        switch_model(c.argument);
        break;
      case k::set:
        set(c.argument);
        break;
      case k::unset:
        say(session_.unset(c.argument), "Unset " + c.argument + ".");
        break;
      case k::show:
        show();
        break;
      case k::save:
        save(c.argument);
        break;
      case k::load:
        load(c.argument);
        break;
      case k::unknown:
        std::fprintf(stderr, "Unknown command '%s'. Type /? for help.\n", c.name.c_str());
        break;
    }
    return true;
  }

  void say(const std::string& error, const std::string& done) {
    std::fprintf(stderr, "%s\n", error.empty() ? done.c_str() : ("Error: " + error).c_str());
  }

  void switch_model(const std::string& model) {
    if (model.empty()) {
      std::fprintf(stderr, "Model: %s (usage: /model NAME)\n", session_.settings().model.c_str());
      return;
    }
    if (prepare_model(ctx_, model, session_.settings().node) != outcome::ok) {
      std::fprintf(stderr, "Still talking to %s.\n", session_.settings().model.c_str());
      return;
    }
    session_.set_model(model);
    std::fprintf(stderr, "Now talking to %s.\n", model.c_str());
  }

  void set(const std::string& argument) {
    if (argument.empty()) {
      show();
      return;
    }
    size_t space = argument.find_first_of(" \t");
    std::string name = argument.substr(0, space);
    std::string value = space == std::string::npos ? "" : common::trim(argument.substr(space + 1));
    say(session_.set(name, value), "Set " + name + " to " + value + ".");
  }

  void show() {
    const auto& s = session_.settings();
    std::fprintf(stderr, "model:  %s\nnode:   %s\nsystem: %s\n", s.model.c_str(),
                 s.node.empty() ? "(the scheduler picks)" : s.node.c_str(),
                 s.system.empty() ? "(none)" : s.system.c_str());
    for (const auto& [name, value] : s.params.items()) {
      std::fprintf(stderr, "%s: %s\n", name.c_str(), value.dump().c_str());
    }
    std::fprintf(stderr, "turns:  %zu\n", session_.messages().size() / 2);
  }

  void save(const std::string& file) {
    if (file.empty()) {
      say("usage: /save FILE", "");
      return;
    }
    std::string path = common::expand_user(file);
    std::ofstream out(path);
    out << session_.to_json().dump(2) << "\n";
    out.close();
    say(out ? "" : "cannot write " + path,
        "Saved " + std::to_string(session_.messages().size() / 2) + " turns to " + path + ".");
  }

  void load(const std::string& file) {
    if (file.empty()) {
      say("usage: /load FILE", "");
      return;
    }
    std::string path = common::expand_user(file);
    std::ifstream in(path);
    if (!in) {
      say("cannot read " + path, "");
      return;
    }
    auto saved = json::parse(in, nullptr, false);
    say(saved.is_discarded() ? path + " is not JSON" : session_.load(saved),
        "Loaded " + std::to_string(session_.messages().size() / 2) + " turns from " + path + ".");
  }

  context& ctx_;
  chat_session& session_;
  bool verbose_;
  bool interactive_;
  bool pending_ = false;  // a line ended in a backslash
  bool failed_ = false;
};

int cmd_chat(context& ctx, chat_options o) {
  chat_session session(o.settings);
  for (const auto& [name, value] : o.initial_params) {
    std::string why = session.set(name, value);
    if (!why.empty()) {
      print_error(stderr, why, json());
      return exit_usage;
    }
  }
  sigint_catcher catcher;
  ctx.ensure_queen();
  switch (prepare_model(ctx, session.settings().model, session.settings().node)) {
    case outcome::interrupted:
      std::fputs("Canceled.\n", stderr);
      return exit_interrupted;
    case outcome::failed:
      return exit_error;
    case outcome::ok:
      break;
  }
  chat_loop loop(ctx, session, o.verbose);
  if (o.prompt.empty()) return loop.run();
  loop.turn(o.prompt);
  return loop.failed() ? exit_error : exit_ok;
}

// Flags both commands take: the node, a system prompt and the sampling settings.
void add_chat_flags(CLI::App* cmd, chat_options& o) {
  cmd->add_option("--node", o.settings.node, "Node to run on (default: the scheduler picks)");
  cmd->add_option("--system", o.settings.system, "System prompt (default: none)");
  for (const char* name :
       {"temperature", "top-p", "top-k", "min-p", "repeat-penalty", "seed", "max-tokens"}) {
    std::string flag = std::string("--") + name;
    std::string key = name;
    std::replace(key.begin(), key.end(), '-', '_');
    cmd->add_option_function<std::string>(
        flag, [&o, key](const std::string& v) { o.initial_params.emplace_back(key, v); },
        "Sets " + key + " (default: the worker's; /set " + key + " changes it later)");
  }
  cmd->add_flag("-v,--verbose", o.verbose, "Print token counts and speed after each answer");
}

}  // namespace

void add_chat_commands(CLI::App& app, invocation& inv) {
  auto chat_o = std::make_shared<chat_options>();
  auto* chat = app.add_subcommand("chat", "Talk with a model (interactive, keeps the history)");
  chat->add_option("-m,--model", chat_o->settings.model,
                   "Model reference (hf:ORG/REPO[:FILE], file:/path.gguf)")
      ->required();
  add_chat_flags(chat, *chat_o);
  chat->footer(
      "Examples:\n"
      "  rbee chat -m hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF:qwen2.5-0.5b-instruct-q4_k_m.gguf\n"
      "  rbee chat -m file:/models/llama.gguf --node gpu1 --system \"Answer briefly.\"\n"
      "Inside: /? for help, /set temperature 0.7, /save chat.json, Ctrl+D or /bye leaves.");
  chat->callback([&inv, chat_o] {
    inv.start_queen_first = false;  // it starts the queen itself, inside its Ctrl+C handling
    inv.action = [chat_o](context& c) { return cmd_chat(c, *chat_o); };
  });

  auto run_o = std::make_shared<chat_options>();
  auto* run =
      app.add_subcommand("run", "Chat with a model, or answer one prompt (the quickest way in)");
  run->add_option("model", run_o->settings.model, "Model reference (hf:ORG/REPO[:FILE], file:...)")
      ->required();
  run->add_option("prompt", run_o->prompt,
                  "One prompt to answer (default: a chat session; - reads stdin)");
  add_chat_flags(run, *run_o);
  run->footer(
      "Examples:\n"
      "  rbee run hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF:qwen2.5-0.5b-instruct-q4_k_m.gguf\n"
      "  rbee run file:/models/llama.gguf \"Why is the sky blue?\"\n"
      "  git diff | rbee run file:/models/llama.gguf -");
  run->callback([&inv, run_o] {
    inv.start_queen_first = false;
    if (run_o->prompt == "-") {
      run_o->prompt.assign(std::istreambuf_iterator<char>(std::cin),
                           std::istreambuf_iterator<char>());
      if (common::trim(run_o->prompt).empty())
        throw CLI::ValidationError("prompt", "stdin was empty");
    }
    inv.action = [run_o](context& c) { return cmd_chat(c, *run_o); };
  });
}

}  // namespace rbee::cli
