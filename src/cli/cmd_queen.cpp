// `rbee queen start|stop|status`: the queen on this machine (or at --queen-url).

#include <thread>

#include <spdlog/spdlog.h>

#include "cli/cli.h"
#include "cli/command.h"
#include "common/http_server.h"
#include "common/process.h"

namespace rbee::cli {

namespace {

using nlohmann::json;
using namespace std::chrono_literals;

bool url_is_loopback(const std::string& url) {
  auto start = url.find("://");
  start = start == std::string::npos ? 0 : start + 3;
  std::string host = url.substr(start, url.find_first_of(":/", start) - start);
  return common::is_loopback(host);
}

// Asks the queen to stop and waits until it is gone: until its process has exited when it runs
// on this machine (/health gives its pid), else until it stops answering. "stopped" is only
// said once that holds, within the queen's shutdown budget (30 s) and a margin.
int stop_queen(client::queen_client& client) {
  std::optional<pid_t> pid;
  try {
    auto health = client.health();
    if (url_is_loopback(client.config().queen_url) && health.contains("pid") &&
        health["pid"].is_number_integer()) {
      pid = health["pid"].get<pid_t>();
    }
  } catch (const std::exception& e) {
    spdlog::debug("queen health before stop: {}", e.what());
  }
  client.shutdown_queen();
  auto gone = [&] { return pid ? !common::process_exists(*pid) : !client.healthy(200ms); };
  const auto deadline = std::chrono::steady_clock::now() + 35s;
  while (!gone()) {
    if (std::chrono::steady_clock::now() >= deadline) {
      std::fprintf(stderr, "rbee: queen-rbee did not stop within 35 s%s\n",
                   pid ? (" (pid " + std::to_string(*pid) + " still runs)").c_str() : "");
      return exit_error;
    }
    std::this_thread::sleep_for(100ms);
  }
  std::printf("queen-rbee stopped\n");
  return exit_ok;
}

int start(context& c) {
  if (c.client.healthy(1500ms)) {
    std::printf("queen-rbee is already running at %s\n", c.client.config().queen_url.c_str());
    return exit_ok;
  }
  c.ensure_queen();
  std::printf("queen-rbee started at %s (pid %d)\n", c.client.config().queen_url.c_str(),
              c.started ? c.started->process.pid() : -1);
  return exit_ok;
}

int stop(context& c) {
  if (!c.client.healthy(1500ms)) {
    std::printf("queen-rbee is not running at %s\n", c.client.config().queen_url.c_str());
    return exit_ok;
  }
  return stop_queen(c.client);
}

int status(context& c, bool as_json) {
  if (!c.client.healthy(1500ms)) {
    if (as_json) print_json({{"running", false}, {"url", c.client.config().queen_url}});
    if (!as_json) {
      std::printf("queen-rbee is not running at %s\n", c.client.config().queen_url.c_str());
    }
    return exit_error;
  }
  auto h = c.client.health();
  h["running"] = true;
  h["url"] = c.client.config().queen_url;
  if (as_json) {
    print_json(h);
  } else {
    std::printf("queen-rbee %s is running at %s\n", str(h, "version").c_str(),
                c.client.config().queen_url.c_str());
  }
  return exit_ok;
}

}  // namespace

void add_queen_commands(CLI::App& app, invocation& inv) {
  auto* queen = app.add_subcommand("queen", "Control queen-rbee");
  queen->require_subcommand(1);
  queen->footer("Examples:\n  rbee queen start\n  rbee queen status --json\n  rbee queen stop");
  // These decide themselves whether a queen should run: none is started before them.
  auto use = [&inv](std::function<int(context&)> action) {
    inv.start_queen_first = false;
    inv.action = std::move(action);
  };
  auto* qstart = queen->add_subcommand("start", "Start queen-rbee in the background");
  qstart->footer(
      "Examples:\n  rbee queen start\n  RBEE_QUEEN_URL=http://127.0.0.1:9000 rbee queen start");
  qstart->callback([use] { use(start); });
  auto* qstop = queen->add_subcommand("stop", "Stop queen-rbee (and the hives it started)");
  qstop->footer("Example:\n  rbee queen stop");
  qstop->callback([use] { use(stop); });
  auto as_json = std::make_shared<bool>(false);
  auto* qstatus = queen->add_subcommand("status", "Is queen-rbee running?");
  qstatus->add_flag("--json", *as_json, "JSON output");
  qstatus->footer("Examples:\n  rbee queen status\n  rbee queen status --json");
  qstatus->callback([use, as_json] { use([as_json](context& c) { return status(c, *as_json); }); });
}

}  // namespace rbee::cli
