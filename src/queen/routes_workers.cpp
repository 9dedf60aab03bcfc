// Workers on all nodes and the nodes' model catalogs.

#include <spdlog/spdlog.h>

#include "common/http_client.h"
#include "common/json.h"
#include "queen/dispatch.h"
#include "queen/routes.h"

namespace rbee::queen {

namespace {

using common::http_server;
using nlohmann::json;
using namespace std::chrono_literals;

// A worker's own word on its health: "ok", "loading", ..., or "unreachable" with the cause.
void add_worker_health(const worker_info& w, json& entry) {
  try {
    common::client_options o;
    o.connect_timeout = 2s;
    o.read_timeout = 5s;
    o.bearer_token = w.token;
    auto h = common::http_client(w.url, o).get("/v1/health");
    auto body = json::parse(h.body, nullptr, false);
    entry["health"] = body.is_object() ? body.value("status", "unknown") : "unknown";
  } catch (const common::connection_error& e) {
    entry["health"] = "unreachable";
    entry["error"] = e.what();
  }
}

}  // namespace

void worker_routes::add_to(route_table& routes) {
  routes.get("/v2/workers/list", handler(this, &worker_routes::list_workers));
  routes.get("/v2/workers/health", handler(this, &worker_routes::workers_health));
  routes.post("/v2/workers/shutdown", handler(this, &worker_routes::shutdown_worker));
  routes.post("/v2/models/download", handler(this, &worker_routes::download_model));
  routes.get("/v2/models/list", handler(this, &worker_routes::list_models));
  routes.post("/v2/models/remove", handler(this, &worker_routes::remove_model));
}

void worker_routes::list_workers(const http_request&, http_response& res) {
  for (const auto& n : s_.nodes.list()) {
    if (!s_.hives.known_endpoint(n.node_name)) continue;
    try {
      s_.hives.refresh_workers(n.node_name);
    } catch (const std::exception& e) {
      spdlog::warn("workers of {}: {}", n.node_name, e.what());
    }
  }
  json workers = json::array();
  for (const auto& w : s_.sched.workers()) {
    if (w.pending) continue;
    json entry = to_json(w);
    entry["queue"] = s_.sched.queue_depth(w.info.model_ref);
    workers.push_back(std::move(entry));
  }
  http_server::send_json(res, 200, {{"workers", workers}});
}

void worker_routes::workers_health(const http_request& req, http_response& res) {
  auto node = node_or_404(s_.nodes, query(req, "node"));
  if (s_.hives.known_endpoint(node.node_name)) s_.hives.refresh_workers(node.node_name);
  json out = json::array();
  for (const auto& w : s_.sched.workers()) {
    if (w.pending || w.info.node != node.node_name) continue;
    json entry = to_json(w);
    add_worker_health(w.info, entry);
    out.push_back(entry);
  }
  http_server::send_json(res, 200, {{"node", node.node_name}, {"workers", out}});
}

void worker_routes::shutdown_worker(const http_request& req, http_response& res) {
  auto body = common::parse_body(req.body);
  auto id = common::require_string(body, "worker_id", 256);
  std::optional<worker_view> found;
  for (const auto& w : s_.sched.workers()) {
    if (w.info.worker_id == id && !w.pending) found = w;
  }
  if (!found) {
    throw error(common::codes::WORKER_NOT_FOUND, "Worker '" + id + "' not found",
                {{"worker_id", id}, {"hint", "list workers: rbee workers list"}});
  }
  auto ep = s_.hives.ensure_hive(node_or_404(s_.nodes, found->info.node));
  hive_client(ep, 35s).stop_worker(id);
  s_.hives.refresh_workers(found->info.node);
  http_server::send_json(res, 200,
                         {{"worker_id", id},
                          {"node", found->info.node},
                          {"message", "Worker '" + id + "' shut down"}});
}

void worker_routes::download_model(const http_request& req, http_response& res) {
  auto body = common::parse_body(req.body);
  auto node = node_or_404(s_.nodes, common::string_or(body, "node", localhost_node, 64));
  auto model = common::require_string(body, "model", 2048);
  auto hub = api::hub_access::from_json(body);
  serve_sse(res, [this, node, model, hub](common::sse_sink& sink) {
    auto send = [&sink](const json& e) { return sink.send(e); };
    try {
      hive_client hive(s_.hives.ensure_hive(node, send), 120s);
      ensure_model(hive, model, hub, send);
    } catch (const error& e) {
      sink.send(error_event(e));
    }
  });
}

void worker_routes::list_models(const http_request& req, http_response& res) {
  auto node = node_or_404(s_.nodes, query(req, "node"));
  json models = json::array();
  for (const auto& m : hive_client(s_.hives.ensure_hive(node)).list_models()) {
    models.push_back(m.to_json());
  }
  http_server::send_json(res, 200, {{"models", models}, {"node", node.node_name}});
}

void worker_routes::remove_model(const http_request& req, http_response& res) {
  auto body = common::parse_body(req.body);
  auto node = node_or_404(s_.nodes, common::string_or(body, "node", localhost_node, 64));
  auto model = common::require_string(body, "model", 2048);
  hive_client(s_.hives.ensure_hive(node)).remove_model(model);
  http_server::send_json(
      res, 200,
      {{"node", node.node_name},
       {"model", model},
       {"message", "Model '" + model + "' removed from '" + node.node_name + "'"}});
}

}  // namespace rbee::queen
