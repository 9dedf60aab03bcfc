// Health, metrics, shutdown, and the logs of a node's hive or one worker.

#include <unistd.h>

#include <future>
#include <map>
#include <optional>

#include "common/http_client.h"
#include "common/metrics_federation.h"
#include "common/text.h"
#include "common/version.h"
#include "queen/routes.h"

namespace rbee::queen {

namespace {

using common::http_server;
using nlohmann::json;
using namespace std::chrono_literals;

// A whole number from a query parameter (absent = 0); INVALID_REQUEST naming it otherwise.
uint64_t whole_number(const http_request& req, const char* name, const std::string& meaning) {
  if (!req.has_param(name)) return 0;
  auto value = common::parse_u64(req.get_param_value(name));
  if (!value) throw invalid_field(name, std::string(name) + " must be " + meaning);
  return *value;
}

// One process the queen scrapes for the fleet's /metrics, with the labels its samples get.
struct scrape_target {
  std::string kind;  // "hive" or "worker"
  std::string url;
  std::string token;
  common::metric_labels labels;
};

// A target's exposition, nullopt when it did not answer 200 in time (a scrape must not hang on
// one slow worker).
std::optional<std::string> scrape(const scrape_target& t) {
  common::client_options o;
  o.connect_timeout = 1s;
  o.read_timeout = 3s;
  o.bearer_token = t.token;
  try {
    auto r = common::http_client(t.url, o).get("/metrics");
    if (r.status == 200) return r.body;
  } catch (const std::exception&) {
    // unreachable: reported as rbee_scrape_target_up 0
  }
  return std::nullopt;
}

// Every hive the queen knows and every worker it placed, with the credentials the queen
// already holds for them.
std::vector<scrape_target> scrape_targets(queen_services& s) {
  std::vector<scrape_target> targets;
  for (const auto& n : s.nodes.list()) {
    if (auto ep = s.hives.known_endpoint(n.node_name)) {
      targets.push_back({"hive", ep->base_url, ep->token, {{"node", n.node_name}}});
    }
  }
  for (const auto& w : s.sched.workers()) {
    if (w.pending || w.info.url.empty()) continue;
    targets.push_back({"worker",
                       w.info.url,
                       w.info.token,
                       {{"node", w.info.node},
                        {"worker", w.info.worker_id},
                        {"model", w.info.model_ref},
                        {"device", w.info.backend + ":" + std::to_string(w.info.device)}}});
  }
  return targets;
}

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
  // The hives and workers are scraped in parallel, outside the metrics lock.
  auto targets = scrape_targets(s_);
  std::vector<std::future<std::optional<std::string>>> answers;
  for (const auto& t : targets) answers.push_back(std::async(std::launch::async, scrape, t));
  common::exposition_merger merged;
  merged.add(s_.metrics.render());
  common::metrics_registry up;
  for (size_t i = 0; i < targets.size(); ++i) {
    auto text = answers[i].get();
    if (text) merged.add(*text, targets[i].labels);
    auto labels = targets[i].labels;
    labels.emplace_back("target", targets[i].kind);
    up.gauge_set("rbee_scrape_target_up", "1 when the queen could scrape this hive or worker",
                 text ? 1 : 0, labels);
  }
  merged.add(up.render());
  res.status = 200;
  res.set_content(merged.render(), "text/plain; version=0.0.4");
}

void admin_routes::logs(const http_request& req, http_response& res) {
  auto node = node_or_404(s_.nodes, query(req, "node"));
  auto ep = s_.hives.ensure_hive(node);
  log_request request{
      .worker_id = query(req, "worker"),
      .follow = query(req, "follow") == "true",
      .tail = whole_number(req, "tail", "a whole number of lines (0 = all)"),
      .since_unix = static_cast<int64_t>(whole_number(req, "since", "a Unix time in seconds"))};
  serve_sse(res, [ep, request](common::sse_sink& sink) {
    // Log lines may be rare: the hive's keep-alives let a client that left, or a queen that
    // stops, end this relay.
    hive_client(ep, 24h, [&sink] {
      return sink.connected();
    }).follow_logs(request, [&sink](const json& e) { return sink.send(e); });
  });
}

}  // namespace rbee::queen
