#include "common/metrics.h"

#include <gtest/gtest.h>

#include <thread>

namespace rbee::common {
namespace {

TEST(Metrics, TextFormatWithHelpTypeAndLabels) {
  metrics_registry m;
  m.counter_add("rbee_tokens_total", "Tokens generated.", 5, {{"model", "tiny"}});
  m.counter_add("rbee_tokens_total", "Tokens generated.", 2, {{"model", "tiny"}});
  m.gauge_set("rbee_slots_busy", "Slots decoding now.", 1);
  m.gauge_add("rbee_slots_busy", "Slots decoding now.", 2);
  EXPECT_EQ(m.render(),
            "# HELP rbee_slots_busy Slots decoding now.\n"
            "# TYPE rbee_slots_busy gauge\n"
            "rbee_slots_busy 3\n"
            "# HELP rbee_tokens_total Tokens generated.\n"
            "# TYPE rbee_tokens_total counter\n"
            "rbee_tokens_total{model=\"tiny\"} 7\n");
  EXPECT_EQ(m.value("rbee_tokens_total", {{"model", "tiny"}}), 7);
  EXPECT_EQ(m.value("rbee_tokens_total", {{"model", "other"}}), 0);
}

TEST(Metrics, LabelEscapingAndFractions) {
  metrics_registry m;
  m.gauge_set("g", "help with \\ and\nnewline", 0.25, {{"a", "q\"uote\\"}, {"b", "line\nbreak"}});
  EXPECT_EQ(m.render(),
            "# HELP g help with \\\\ and\\nnewline\n"
            "# TYPE g gauge\n"
            "g{a=\"q\\\"uote\\\\\",b=\"line\\nbreak\"} 0.25\n");
}

TEST(Metrics, HistogramBucketsAreCumulative) {
  metrics_registry m;
  m.histogram_define("rbee_decode_seconds", "Decode time.", {0.1, 1});
  m.histogram_observe("rbee_decode_seconds", "", 0.05);
  m.histogram_observe("rbee_decode_seconds", "", 0.5);
  m.histogram_observe("rbee_decode_seconds", "", 3);
  EXPECT_EQ(m.render(),
            "# HELP rbee_decode_seconds Decode time.\n"
            "# TYPE rbee_decode_seconds histogram\n"
            "rbee_decode_seconds_bucket{le=\"0.1\"} 1\n"
            "rbee_decode_seconds_bucket{le=\"1\"} 2\n"
            "rbee_decode_seconds_bucket{le=\"+Inf\"} 3\n"
            "rbee_decode_seconds_sum 3.55\n"
            "rbee_decode_seconds_count 3\n");
}

TEST(Metrics, BucketBoundsPrintAsWritten) {
  metrics_registry m;
  m.histogram_define("ttft_seconds", "TTFT.", {0.005, 0.05, 0.1, 2.5});
  m.histogram_observe("ttft_seconds", "", 0.3, {{"model", "a"}});
  m.histogram_observe("ttft_seconds", "", 0.01, {{"model", "b"}});
  std::string text = m.render();
  for (const char* le : {"le=\"0.005\"", "le=\"0.05\"", "le=\"0.1\"", "le=\"2.5\""}) {
    EXPECT_NE(text.find(le), std::string::npos) << le << " in\n" << text;
  }
  auto totals = m.histogram_total("ttft_seconds");
  EXPECT_EQ(totals.count, 2u);
  EXPECT_DOUBLE_EQ(totals.sum, 0.31);
}

TEST(Metrics, TotalSumsEverySeries) {
  metrics_registry m;
  m.counter_add("tokens_total", "t", 4, {{"model", "a"}});
  m.counter_add("tokens_total", "t", 6, {{"model", "b"}});
  EXPECT_EQ(m.total("tokens_total"), 10);
  EXPECT_EQ(m.total("absent"), 0);
}

TEST(Metrics, MisuseIsALogicError) {
  metrics_registry m;
  m.counter_add("c", "c");
  EXPECT_THROW(m.gauge_set("c", "c", 1), std::logic_error);
  EXPECT_THROW(m.counter_add("c", "c", -1), std::logic_error);
}

TEST(Metrics, RemoveSeriesAndConcurrentUpdates) {
  metrics_registry m;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) m.counter_add("n", "n", 1, {{"w", "1"}});
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(m.value("n", {{"w", "1"}}), 4000);
  m.remove("n", {{"w", "1"}});
  EXPECT_EQ(m.render(), "# HELP n n\n# TYPE n counter\n");
}

}  // namespace
}  // namespace rbee::common
