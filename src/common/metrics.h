#pragma once
// Minimal Prometheus text exposition (format 0.0.4): counters, gauges and histograms with
// labels. Thread-safe; a metric's help and type are fixed by its first use.

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rbee::common {

using metric_labels = std::vector<std::pair<std::string, std::string>>;

// Observations of a histogram over all its series.
struct histogram_totals {
  uint64_t count = 0;
  double sum = 0;
};

class metrics_registry {
 public:
  void counter_add(std::string_view name, std::string_view help, double value = 1.0,
                   const metric_labels& labels = {});
  void gauge_set(std::string_view name, std::string_view help, double value,
                 const metric_labels& labels = {});
  void gauge_add(std::string_view name, std::string_view help, double delta,
                 const metric_labels& labels = {});
  // Declares a histogram's buckets (upper bounds, ascending); observe() of an undeclared
  // histogram uses default_buckets().
  void histogram_define(std::string_view name, std::string_view help, std::vector<double> buckets);
  void histogram_observe(std::string_view name, std::string_view help, double value,
                         const metric_labels& labels = {});
  // Removes one labelled series (e.g. a worker that is gone).
  void remove(std::string_view name, const metric_labels& labels);

  // Current value of a counter/gauge series (0 when absent); for tests and /health summaries.
  double value(std::string_view name, const metric_labels& labels = {}) const;
  // Sum of every series of a counter/gauge, and a histogram's count and sum over all series
  // (0 when absent): the dashboard's fleet-wide totals.
  double total(std::string_view name) const;
  histogram_totals histogram_total(std::string_view name) const;

  // Text format: "# HELP", "# TYPE", then one line per series, metrics sorted by name.
  std::string render() const;

  static std::vector<double> default_buckets();

 private:
  enum class kind { counter, gauge, histogram };
  struct histogram_series {
    std::vector<uint64_t> bucket_counts;  // per bucket, not cumulative
    uint64_t count = 0;
    double sum = 0;
  };
  struct family {
    kind type;
    std::string help;
    std::vector<double> buckets;
    std::map<metric_labels, double> values;
    std::map<metric_labels, histogram_series> histograms;
  };
  family& family_for(std::string_view name, std::string_view help, kind type);

  mutable std::mutex mutex_;
  std::map<std::string, family, std::less<>> families_;
};

// Escapes a label value for the text format (\\, \", \n).
std::string escape_label_value(std::string_view value);

}  // namespace rbee::common
