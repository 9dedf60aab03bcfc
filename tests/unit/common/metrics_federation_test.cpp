#include "common/metrics_federation.h"

#include <gtest/gtest.h>

namespace rbee::common {
namespace {

TEST(MetricsFederation, LabelsEverySampleOfASource) {
  std::string name;
  EXPECT_EQ(label_sample("up +Inf 1700000000000", {}, &name), "up +Inf 1700000000000");
  EXPECT_EQ(label_sample("tok_total 5", {{"node", "a"}}, &name), "tok_total{node=\"a\"} 5");
  EXPECT_EQ(name, "tok_total");
  EXPECT_EQ(label_sample(R"(req{status="200",x="a\"}b"} 1)", {{"worker", "w1"}}, &name),
            R"(req{worker="w1",status="200",x="a\"}b"} 1)");
  // A label the process set itself keeps its value.
  EXPECT_EQ(label_sample(R"(g{node="own"} 1)", {{"node", "queen-view"}}, &name),
            R"(g{node="own"} 1)");
}

TEST(MetricsFederation, MalformedLinesAreSkipped) {
  std::string name;
  for (const char* bad : {"", "{a=\"1\"} 2", "m{a=1} 2", "m{a=\"1\" 2", "m", "m{a=\"1\"}",
                          "garbage line", "m 1 2 3", "m 1x"}) {
    EXPECT_EQ(label_sample(bad, {}, &name), "") << bad;
  }
}

TEST(MetricsFederation, FamiliesFromSeveralSourcesStayTogether) {
  metrics_registry worker_a;
  worker_a.counter_add("rbee_worker_tokens_generated_total", "Tokens generated", 7);
  worker_a.histogram_define("lat_seconds", "Latency", {0.05, 1});
  worker_a.histogram_observe("lat_seconds", "", 0.01);
  metrics_registry worker_b;
  worker_b.counter_add("rbee_worker_tokens_generated_total", "Tokens generated", 3);
  metrics_registry queen;
  queen.gauge_set("rbee_queen_queue_depth", "Queue", 0);

  exposition_merger merged;
  merged.add(queen.render());
  merged.add(worker_a.render(), {{"worker", "a"}, {"model", "m"}});
  merged.add(worker_b.render() + "garbage line\n", {{"worker", "b"}, {"model", "m"}});
  EXPECT_EQ(merged.render(),
            "# HELP lat_seconds Latency\n"
            "# TYPE lat_seconds histogram\n"
            "lat_seconds_bucket{worker=\"a\",model=\"m\",le=\"0.05\"} 1\n"
            "lat_seconds_bucket{worker=\"a\",model=\"m\",le=\"1\"} 1\n"
            "lat_seconds_bucket{worker=\"a\",model=\"m\",le=\"+Inf\"} 1\n"
            "lat_seconds_sum{worker=\"a\",model=\"m\"} 0.01\n"
            "lat_seconds_count{worker=\"a\",model=\"m\"} 1\n"
            "# HELP rbee_queen_queue_depth Queue\n"
            "# TYPE rbee_queen_queue_depth gauge\n"
            "rbee_queen_queue_depth 0\n"
            "# HELP rbee_worker_tokens_generated_total Tokens generated\n"
            "# TYPE rbee_worker_tokens_generated_total counter\n"
            "rbee_worker_tokens_generated_total{worker=\"a\",model=\"m\"} 7\n"
            "rbee_worker_tokens_generated_total{worker=\"b\",model=\"m\"} 3\n");
}

}  // namespace
}  // namespace rbee::common
