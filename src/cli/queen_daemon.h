#pragma once
// Finding, auto-starting and stopping queen-rbee for the CLI (SPEC §6): when no queen answers
// at a loopback URL, the CLI starts one in the background (own session, log under
// $RBEE_HOME/logs) and leaves it running, unless --ephemeral.

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>

#include "client/queen_client.h"
#include "common/process.h"

namespace rbee::cli {

struct url_parts {
  std::string host;
  int port = 0;
};
// "http://host:port[/]" -> host, port (80 when absent); nullopt for anything else.
std::optional<url_parts> parse_http_url(const std::string& url);

// A queen this CLI started: it keeps running after the CLI exits (a daemon child).
struct started_queen {
  common::child_process process;
  std::filesystem::path log_path;
};

// Starts queen-rbee (from bin_dir) detached in its own session, listening on url's host:port,
// and waits until /health answers. Throws std::runtime_error with the log's tail on failure.
started_queen start_queen(client::queen_client& client, const std::filesystem::path& bin_dir,
                          const std::filesystem::path& rbee_home,
                          std::chrono::milliseconds timeout = std::chrono::seconds(30));

// SIGTERM to a queen this process started, waiting for it to exit (then SIGKILL).
void stop_started_queen(started_queen& queen, std::chrono::milliseconds grace);

}  // namespace rbee::cli
