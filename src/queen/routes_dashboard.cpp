// The dashboard's files and its fleet event feed.

#include "queen/routes_dashboard.h"

#include <thread>

#include "common/version.h"
#include "queen/dashboard_files.h"

namespace rbee::queen {

namespace {

using nlohmann::json;
using namespace std::chrono_literals;

std::string_view content_type_for(std::string_view path) {
  auto ends = [&](std::string_view ext) { return path.ends_with(ext); };
  if (ends(".html")) return "text/html; charset=utf-8";
  if (ends(".js")) return "text/javascript; charset=utf-8";
  if (ends(".css")) return "text/css; charset=utf-8";
  if (ends(".svg")) return "image/svg+xml";
  if (ends(".png")) return "image/png";
  return "application/octet-stream";
}

void send_file(std::string_view path, http_response& res) {
  for (const auto& f : dashboard_files()) {
    if (f.path != path) continue;
    res.status = 200;
    // The page talks to this queen only, and no other site may frame it.
    res.set_header("Content-Security-Policy",
                   "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'");
    res.set_header("X-Content-Type-Options", "nosniff");
    res.set_header("Cache-Control", "no-cache");
    res.set_content(std::string(f.bytes), std::string(content_type_for(path)));
    return;
  }
  throw error(common::codes::NOT_FOUND, "No dashboard file '" + std::string(path) + "'",
              {{"path", std::string(path)}});
}

json node_entry(const node_record& n, const std::optional<hive_endpoint>& hive) {
  return {
      {"node_name", n.node_name},
      {"ssh_host", n.ssh_host},
      {"ssh_user", n.ssh_user},
      {"status", n.status},
      {"last_error", n.last_error},
      {"last_connected_unix", n.last_connected_unix},
      {"backends", n.backends},
      {"devices", n.devices},
      {"hive", {{"running", hive.has_value()}, {"version", hive ? json(hive->version) : json()}}}};
}

}  // namespace

void dashboard_routes::add_to(route_table& routes) {
  routes.get("/", &dashboard_routes::index);
  routes.get("/dashboard/(.+)", &dashboard_routes::file);
  routes.get("/v2/events", handler(this, &dashboard_routes::events));
}

void dashboard_routes::index(const http_request&, http_response& res) {
  send_file("index.html", res);
}

void dashboard_routes::file(const http_request& req, http_response& res) {
  send_file(std::string(req.matches[1]), res);
}

json dashboard_routes::fleet_snapshot() const {
  json nodes = json::array();
  for (const auto& n : s_.nodes.list()) {
    nodes.push_back(node_entry(n, s_.hives.known_endpoint(n.node_name)));
  }
  json workers = json::array();
  for (const auto& w : s_.sched.workers()) {
    json entry = to_json(w);
    entry["queue"] = s_.sched.queue_depth(w.info.model_ref);
    // The queen's own measure is fresher than the hive's health checks.
    double relayed = s_.metrics.value("rbee_queen_worker_last_tokens_per_second",
                                      {{"worker", w.info.worker_id}, {"model", w.info.model_ref}});
    if (relayed > 0) entry["tokens_per_second"] = relayed;
    workers.push_back(std::move(entry));
  }
  auto ttft = s_.metrics.histogram_total("rbee_queen_time_to_first_token_seconds");
  return {{"type", "fleet"},
          {"version", common::version_string()},
          {"nodes", nodes},
          {"workers", workers},
          {"queue_depth", s_.sched.queue_depth()},
          {"active_tasks", s_.tasks.active()},
          {"totals",
           {{"generated_tokens", s_.metrics.total("rbee_queen_generated_tokens_total")},
            {"prompt_tokens", s_.metrics.total("rbee_queen_prompt_tokens_total")},
            {"requests", s_.metrics.total("rbee_queen_model_requests_total")},
            {"ttft_count", ttft.count},
            {"ttft_sum_seconds", ttft.sum}}}};
}

void dashboard_routes::events(const http_request&, http_response& res) {
  serve_sse(res, [this](common::sse_sink& sink) {
    // A snapshot at once, then one whenever the fleet changed (checked twice a second); the
    // SSE keep-alives cover quiet times.
    std::string last;
    while (sink.connected() && !s_.shutting_down) {
      json snapshot = fleet_snapshot();
      std::string text = snapshot.dump();
      if (text != last) {
        if (!sink.send(snapshot)) return;
        last = std::move(text);
      }
      std::this_thread::sleep_for(500ms);
    }
  });
}

}  // namespace rbee::queen
