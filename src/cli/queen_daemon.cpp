#include "cli/queen_daemon.h"

#include <signal.h>

#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "common/config.h"
#include "common/paths.h"

namespace rbee::cli {

std::optional<url_parts> parse_http_url(const std::string& url) {
  constexpr std::string_view scheme = "http://";
  if (!url.starts_with(scheme)) return std::nullopt;
  std::string rest = url.substr(scheme.size());
  if (auto slash = rest.find('/'); slash != std::string::npos) rest.resize(slash);
  url_parts parts;
  auto colon = rest.rfind(':');
  if (colon == std::string::npos || rest.back() == ']') {
    parts.host = rest;
    parts.port = 80;
  } else {
    parts.host = rest.substr(0, colon);
    try {
      parts.port = std::stoi(rest.substr(colon + 1));
    } catch (const std::exception&) {
      return std::nullopt;
    }
  }
  if (parts.host.empty() || parts.port <= 0 || parts.port > 65535) return std::nullopt;
  return parts;
}

namespace {

std::string tail_of(const std::filesystem::path& path, size_t bytes = 2000) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  return text.size() > bytes ? text.substr(text.size() - bytes) : text;
}

}  // namespace

started_queen start_queen(client::queen_client& client, const std::filesystem::path& bin_dir,
                          const std::filesystem::path& rbee_home,
                          std::chrono::milliseconds timeout) {
  auto parts = parse_http_url(client.config().queen_url);
  if (!parts) throw std::runtime_error("queen URL must be http://host:port");
  auto logs = common::ensure_dir(common::logs_dir(rbee_home));
  started_queen q;
  q.log_path = logs / "queen.log";
  // A daemon: its own session, so Ctrl+C in the terminal does not reach it, and it outlives
  // this command.
  common::process_spec spec{.executable = (bin_dir / "queen-rbee").string(),
                            .args = {"--addr", parts->host + ":" + std::to_string(parts->port)},
                            .log_path = q.log_path.string(),
                            .daemon = true};
  // The queen reads its credentials from the environment it is started with, like the CLI;
  // a child gets a secret only when handed it.
  for (const char* key : {"api_key", "queen.api_keys", "hf.token"}) {
    if (auto value = common::env_value(key)) spec.env[common::env_var_for(key)] = *value;
  }
  q.process = common::child_process::spawn(spec);

  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!client.healthy(std::chrono::milliseconds(500))) {
    if (!q.process.running()) {
      throw std::runtime_error("queen-rbee exited during start; its log (" + q.log_path.string() +
                               ") ends with:\n" + tail_of(q.log_path));
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      q.process.kill(SIGTERM);
      throw std::runtime_error("queen-rbee did not become healthy; its log (" +
                               q.log_path.string() + ") ends with:\n" + tail_of(q.log_path));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return q;
}

void stop_started_queen(started_queen& queen, std::chrono::milliseconds grace) {
  queen.process.stop(grace);
}

}  // namespace rbee::cli
