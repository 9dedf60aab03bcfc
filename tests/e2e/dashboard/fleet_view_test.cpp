// The queen as the operator's one view of the fleet (issue 19): the dashboard's page is public
// while its data feed needs the API key, the feed's snapshots, and one /metrics scrape that
// holds every hive's and worker's metrics labelled by node, worker, model and device, beside the
// queen's per-model counters and histograms; docs/grafana-dashboard.json only names metrics
// that such a scrape holds.
#include <gtest/gtest.h>

#include <ctime>
#include <fstream>
#include <regex>
#include <set>

#include "harness/scenario_fixture.h"

namespace rbee::e2e::scenario {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

const std::string key = "fleet-view-key-0123456789";

common::http_client client_with(const scenario_queen& q, const std::string& token) {
  common::client_options o;
  o.bearer_token = token;
  o.read_timeout = 30s;
  return common::http_client(q.url(), o);
}

// The first fleet snapshot of GET /v2/events (status 0 when none came).
std::pair<int, json> first_snapshot(const scenario_queen& q, const std::string& token) {
  json snapshot;
  common::http_response error;
  int status = client_with(q, token).get_sse(
      "/v2/events",
      [&](const common::sse_event& ev) {
        snapshot = ev.json();
        return false;
      },
      &error);
  return {status, snapshot};
}

// Metric families (# TYPE lines) of an exposition.
std::set<std::string> families(const std::string& text) {
  std::set<std::string> out;
  std::regex type_line(R"(^# TYPE (\S+) \S+$)", std::regex::multiline);
  for (std::sregex_iterator it(text.begin(), text.end(), type_line), end; it != end; ++it) {
    out.insert((*it)[1]);
  }
  return out;
}

TEST(FleetView, PageIsPublicItsDataNeedsTheKey) {
  scenario_queen q;
  q.set_api_key(key);
  q.start();
  auto anonymous = client_with(q, "");
  auto page = anonymous.get("/");
  EXPECT_EQ(page.status, 200);
  EXPECT_TRUE(page.header("content-type").starts_with("text/html")) << page.header("content-type");
  EXPECT_TRUE(contains(page.body, "/dashboard/app.js"));
  EXPECT_TRUE(contains(page.header("content-security-policy"), "default-src 'self'"));
  auto script = anonymous.get("/dashboard/app.js");
  EXPECT_EQ(script.status, 200);
  EXPECT_TRUE(script.header("content-type").starts_with("text/javascript"));
  auto missing = anonymous.get("/dashboard/nope.js");
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.json_body()["error"]["code"], "NOT_FOUND");

  EXPECT_EQ(first_snapshot(q, "").first, 401);
  EXPECT_EQ(first_snapshot(q, "wrong-key-0123456789").first, 401);
  EXPECT_EQ(anonymous.get("/v2/registry/beehives/list").status, 401);
  EXPECT_EQ(anonymous.get("/metrics").status, 401);

  auto [status, snapshot] = first_snapshot(q, key);
  ASSERT_EQ(status, 200);
  EXPECT_EQ(snapshot["type"], "fleet");
  ASSERT_TRUE(snapshot["nodes"].is_array());
  ASSERT_FALSE(snapshot["nodes"].empty());
  EXPECT_EQ(snapshot["nodes"][0]["node_name"], "localhost");
  EXPECT_TRUE(snapshot["workers"].is_array());
  EXPECT_TRUE(snapshot["totals"].contains("generated_tokens"));
}

TEST(FleetView, OneScrapeHoldsTheFleetsMetrics) {
  scenario_queen q;
  q.set_api_key(key);
  q.start();
  for (int i = 0; i < 3; ++i) {
    auto s =
        q.run_task({{"model", stories_ref()}, {"prompt", "Once upon a time"}, {"max_tokens", 8}});
    ASSERT_EQ(s.status, 200) << s.error.body;
    ASSERT_TRUE(s.first("end")) << q.logs();
  }
  auto workers = q.workers();
  ASSERT_EQ(workers.size(), 1u) << workers.dump();
  const std::string worker = workers[0]["worker_id"];
  // The feed tells when the idle worker unloads (the hive's idle timeout, 300 s by default).
  auto [status, snapshot] = first_snapshot(q, key);
  ASSERT_EQ(status, 200);
  ASSERT_EQ(snapshot["workers"].size(), 1u) << snapshot.dump();
  auto now = static_cast<int64_t>(std::time(nullptr));
  EXPECT_EQ(snapshot["workers"][0]["state"], "idle");
  EXPECT_GT(snapshot["workers"][0]["unload_at_unix"].get<int64_t>(), now + 200);
  EXPECT_LE(snapshot["workers"][0]["unload_at_unix"].get<int64_t>(), now + 301);

  auto scrape = client_with(q, key).get("/metrics");
  ASSERT_EQ(scrape.status, 200);
  const std::string& text = scrape.body;
  const std::string model = stories_ref();
  // The worker's own counter, fetched by the queen with the worker's token and labelled.
  std::regex worker_tokens("rbee_worker_tokens_generated_total\\{node=\"localhost\",worker=\"" +
                           worker + "\",model=\"" + model + "\",device=\"cpu:0\"\\} ([0-9]+)");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(text, m, worker_tokens)) << text;
  EXPECT_GE(std::stoi(m[1]), 3 * 1);
  // The hive's metrics, labelled by node.
  EXPECT_TRUE(contains(text, "rbee_hive_models{node=\"localhost\"}")) << text;
  EXPECT_TRUE(contains(text, "rbee_scrape_target_up{node=\"localhost\",target=\"hive\"} 1"));
  // The queen's per-model counters and histograms, with clean bucket bounds.
  for (const char* name : {"rbee_queen_generated_tokens_total", "rbee_queen_prompt_tokens_total"}) {
    EXPECT_TRUE(contains(text, std::string(name) + "{model=\"" + model + "\"}")) << name;
  }
  EXPECT_TRUE(contains(
      text, "rbee_queen_model_requests_total{model=\"" + model + "\",outcome=\"completed\"} 3"));
  EXPECT_TRUE(contains(
      text, "rbee_queen_time_to_first_token_seconds_bucket{model=\"" + model + "\",le=\"0.05\"}"));
  EXPECT_TRUE(
      contains(text, "rbee_queen_inter_token_latency_seconds_count{model=\"" + model + "\"}"));
  EXPECT_FALSE(std::regex_search(text, std::regex(R"(le="[0-9.]*0000000)"))) << text;
  // Each family once: Prometheus refuses a scrape that repeats a # TYPE.
  std::regex type_line(R"(^# TYPE (\S+))", std::regex::multiline);
  std::set<std::string> seen;
  for (std::sregex_iterator it(text.begin(), text.end(), type_line), end; it != end; ++it) {
    EXPECT_TRUE(seen.insert((*it)[1]).second) << "repeated family " << (*it)[1];
  }

  // Every metric the Grafana dashboard charts is in this scrape.
  std::ifstream in(std::string(RBEE_SOURCE_DIR) + "/docs/grafana-dashboard.json");
  auto dashboard = json::parse(in);
  auto present = families(text);
  std::regex metric_name(R"(rbee_[a-z_]+)");
  int checked = 0;
  ASSERT_TRUE(dashboard["panels"].is_array());
  for (const auto& panel : dashboard["panels"]) {
    for (const auto& target : panel.value("targets", json::array())) {
      std::string expr = target.value("expr", "");
      for (std::sregex_iterator it(expr.begin(), expr.end(), metric_name), end; it != end; ++it) {
        std::string name = std::regex_replace(it->str(), std::regex("_(bucket|sum|count)$"), "");
        EXPECT_TRUE(present.contains(name)) << "panel '" << panel.value("title", "") << "' uses "
                                            << name << ", absent from the scrape";
        ++checked;
      }
    }
  }
  EXPECT_GE(checked, 8);
  EXPECT_TRUE(q.stop_all());
}

}  // namespace
}  // namespace rbee::e2e::scenario
