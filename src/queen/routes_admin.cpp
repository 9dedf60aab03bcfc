// Health, metrics, shutdown, and the logs of a node's hive or one worker.

#include <unistd.h>

#include <map>

#include "common/version.h"
#include "queen/routes.h"

namespace rbee::queen {

namespace {

using common::http_server;
using nlohmann::json;
using namespace std::chrono_literals;

}  // namespace

void admin_routes::add_to(common::http_server& server, route_table& routes) {
  server.get("/health", &admin_routes::health);
  routes.post("/v2/admin/shutdown", handler(this, &admin_routes::shutdown));
  routes.get("/metrics", handler(this, &admin_routes::metrics));
  routes.get("/v2/logs", handler(this, &admin_routes::logs));
}

void admin_routes::health(const http_request&, http_response& res) {
  // The pid lets `rbee queen stop` on this machine wait until the process is gone.
  http_server::send_json(res, 200,
                         {{"status", "ok"},
                          {"version", common::version_string()},
                          {"api_version", "v2"},
                          {"pid", ::getpid()}});
}

void admin_routes::shutdown(const http_request&, http_response& res) {
  s_.shutdown_requested = true;
  http_server::send_json(res, 202, {{"message", "queen-rbee is shutting down"}});
}

void admin_routes::metrics(const http_request&, http_response& res) {
  s_.metrics.gauge_set("rbee_queen_queue_depth", "Tasks waiting in the queue",
                       static_cast<double>(s_.sched.queue_depth()));
  s_.metrics.gauge_set("rbee_queen_active_tasks", "Tasks streaming now",
                       static_cast<double>(s_.tasks.active()));
  std::map<std::pair<std::string, std::string>, int> by_state;
  for (const auto& w : s_.sched.workers()) {
    ++by_state[{w.info.node, std::string(w.pending ? "spawning" : to_string(w.info.state))}];
  }
  for (const auto& n : s_.nodes.list()) {
    for (auto state : {worker_state::spawning, worker_state::loading, worker_state::idle,
                       worker_state::busy, worker_state::draining, worker_state::error}) {
      std::string name(to_string(state));
      auto it = by_state.find({n.node_name, name});
      s_.metrics.gauge_set("rbee_queen_workers", "Workers by node and state",
                           it == by_state.end() ? 0 : it->second,
                           {{"node", n.node_name}, {"state", name}});
    }
  }
  res.status = 200;
  res.set_content(s_.metrics.render(), "text/plain; version=0.0.4");
}

void admin_routes::logs(const http_request& req, http_response& res) {
  auto node = node_or_404(s_.nodes, query(req, "node"));
  auto ep = s_.hives.ensure_hive(node);
  log_request request{.worker_id = query(req, "worker"), .follow = query(req, "follow") == "true"};
  serve_sse(res, [ep, request](common::sse_sink& sink) {
    // Log lines may be rare: the hive's keep-alives let a client that left, or a queen that
    // stops, end this relay.
    hive_client(ep, 24h, [&sink] {
      return sink.connected();
    }).follow_logs(request, [&sink](const json& e) { return sink.send(e); });
  });
}

}  // namespace rbee::queen
