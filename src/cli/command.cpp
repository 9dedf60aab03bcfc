#include "cli/command.h"

#include <unistd.h>

#include <ctime>
#include <map>

#include "cli/cli.h"
#include "common/http_server.h"
#include "common/paths.h"
#include "common/process.h"

namespace rbee::cli {

using nlohmann::json;
using namespace std::chrono_literals;

namespace {

// HF_ENDPOINT and HF_TOKEN as this command was given them (environment or config file): the
// hive that downloads a model for it uses them instead of its own. Defaults are not sent.
api::hub_access hub_of(const common::config& config) {
  auto given = [&](const char* key) {
    auto source = config.source(key);
    return source == common::config_source::env || source == common::config_source::file ||
           source == common::config_source::flag;
  };
  api::hub_access hub;
  if (given("hf.endpoint")) hub.endpoint = config.hf_endpoint();
  if (given("hf.token")) hub.token = config.hf_token().value_or("");
  return hub;
}

}  // namespace

context::context(const global_options& g)
    : config(load(g)),
      client(client::client_config{
          .queen_url = config.queen_url(), .api_key = config.api_key(), .hub = hub_of(config)}) {}

common::config context::load(const global_options& g) {
  std::map<std::string, std::string> overrides;
  if (!g.queen_url.empty()) overrides["queen.url"] = g.queen_url;
  if (!g.api_key.empty()) overrides["api_key"] = g.api_key;
  return common::config::load(overrides);
}

void context::ensure_queen() {
  if (client.healthy(1500ms)) return;
  auto parts = parse_http_url(client.config().queen_url);
  if (!parts || !common::is_loopback(parts->host)) {
    throw common::connection_error(client.config().queen_url, "no queen-rbee answers there");
  }
  std::fprintf(stderr, "Starting queen-rbee at %s (log: %s)\n", client.config().queen_url.c_str(),
               (common::logs_dir(config.rbee_home()) / "queen.log").c_str());
  started = start_queen(client, common::self_executable_dir(), config.rbee_home());
}

bool is_tty(std::FILE* f) {
  return ::isatty(::fileno(f)) == 1;
}

void print_json(const json& j) {
  std::printf("%s\n", j.dump(2).c_str());
}

int print_listing(const json& r, bool as_json, const char* list_key,
                  const std::vector<std::string>& header,
                  const std::function<std::vector<std::string>(const json&)>& row) {
  if (as_json) {
    print_json(r);
    return exit_ok;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& e : r.value(list_key, json::array())) rows.push_back(row(e));
  std::printf("%s", format_table(header, rows).c_str());
  return exit_ok;
}

std::string str(const json& j, const char* key) {
  if (!j.contains(key) || j[key].is_null()) return "-";
  return j[key].is_string() ? j[key].get<std::string>() : j[key].dump();
}

std::string ago(int64_t unix_time) {
  if (unix_time <= 0) return "never";
  std::time_t t = unix_time;
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", std::localtime(&t));
  return buf;
}

bool stream_printer::operator()(const json& e) {
  std::string type = e.value("type", "");
  if (type == "error") {
    error = e;
  } else if (type == "narration") {
    printer.print(e);
  } else if (e.contains("line")) {
    std::printf("%s\n", e.value("line", "").c_str());
    std::fflush(stdout);
  } else {
    std::printf("%s\n", e.dump().c_str());
    std::fflush(stdout);
  }
  return true;
}

int stream_printer::finish() {
  printer.close_bar();
  if (error) {
    print_error(stderr, error->value("message", "failed"), error->value("details", json()),
                error->value("code", "ERROR"));
    return exit_error;
  }
  return exit_ok;
}

}  // namespace rbee::cli
