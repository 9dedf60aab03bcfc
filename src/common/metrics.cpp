#include "common/metrics.h"

#include <charconv>
#include <cmath>
#include <stdexcept>

namespace rbee::common {

namespace {

std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    return std::to_string(static_cast<int64_t>(v));
  }
  // The shortest text that reads back as v: a bucket of 0.05 is le="0.05", not
  // le="0.050000000000000003".
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, end);
}

std::string escape_help(std::string_view help) {
  std::string out;
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

// {a="1",b="2"} plus an optional extra label (histogram "le"); "" when there are no labels.
std::string format_labels(const metric_labels& labels, std::string_view extra_name = {},
                          std::string_view extra_value = {}) {
  if (labels.empty() && extra_name.empty()) return "";
  std::string out = "{";
  bool first = true;
  for (const auto& [k, v] : labels) {
    if (!first) out.push_back(',');
    out += k + "=\"" + escape_label_value(v) + "\"";
    first = false;
  }
  if (!extra_name.empty()) {
    if (!first) out.push_back(',');
    out += std::string(extra_name) + "=\"" + std::string(extra_value) + "\"";
  }
  out.push_back('}');
  return out;
}

}  // namespace

std::string escape_label_value(std::string_view value) {
  std::string out;
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::vector<double> metrics_registry::default_buckets() {
  return {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

metrics_registry::family& metrics_registry::family_for(std::string_view name, std::string_view help,
                                                       kind type) {
  auto it = families_.find(name);
  if (it == families_.end()) {
    family f{type, std::string(help), {}, {}, {}};
    if (type == kind::histogram) f.buckets = default_buckets();
    it = families_.emplace(std::string(name), std::move(f)).first;
  } else if (it->second.type != type) {
    throw std::logic_error("metric '" + std::string(name) + "' used with two different types");
  }
  return it->second;
}

void metrics_registry::counter_add(std::string_view name, std::string_view help, double value,
                                   const metric_labels& labels) {
  if (value < 0) throw std::logic_error("counter '" + std::string(name) + "' cannot decrease");
  std::lock_guard lock(mutex_);
  family_for(name, help, kind::counter).values[labels] += value;
}

void metrics_registry::gauge_set(std::string_view name, std::string_view help, double value,
                                 const metric_labels& labels) {
  std::lock_guard lock(mutex_);
  family_for(name, help, kind::gauge).values[labels] = value;
}

void metrics_registry::gauge_add(std::string_view name, std::string_view help, double delta,
                                 const metric_labels& labels) {
  std::lock_guard lock(mutex_);
  family_for(name, help, kind::gauge).values[labels] += delta;
}

void metrics_registry::histogram_define(std::string_view name, std::string_view help,
                                        std::vector<double> buckets) {
  std::lock_guard lock(mutex_);
  auto& f = family_for(name, help, kind::histogram);
  if (!f.histograms.empty()) {
    throw std::logic_error("histogram '" + std::string(name) + "' defined after first use");
  }
  f.buckets = std::move(buckets);
}

void metrics_registry::histogram_observe(std::string_view name, std::string_view help, double value,
                                         const metric_labels& labels) {
  std::lock_guard lock(mutex_);
  auto& f = family_for(name, help, kind::histogram);
  auto& h = f.histograms[labels];
  if (h.bucket_counts.empty()) h.bucket_counts.assign(f.buckets.size(), 0);
  for (size_t i = 0; i < f.buckets.size(); ++i) {
    if (value <= f.buckets[i]) {
      ++h.bucket_counts[i];
      break;
    }
  }
  ++h.count;
  h.sum += value;
}

void metrics_registry::remove(std::string_view name, const metric_labels& labels) {
  std::lock_guard lock(mutex_);
  auto it = families_.find(name);
  if (it == families_.end()) return;
  it->second.values.erase(labels);
  it->second.histograms.erase(labels);
}

double metrics_registry::value(std::string_view name, const metric_labels& labels) const {
  std::lock_guard lock(mutex_);
  auto it = families_.find(name);
  if (it == families_.end()) return 0;
  auto v = it->second.values.find(labels);
  return v == it->second.values.end() ? 0 : v->second;
}

double metrics_registry::total(std::string_view name) const {
  std::lock_guard lock(mutex_);
  auto it = families_.find(name);
  if (it == families_.end()) return 0;
  double sum = 0;
  for (const auto& [labels, v] : it->second.values) sum += v;
  return sum;
}

histogram_totals metrics_registry::histogram_total(std::string_view name) const {
  std::lock_guard lock(mutex_);
  histogram_totals out;
  auto it = families_.find(name);
  if (it == families_.end()) return out;
  for (const auto& [labels, h] : it->second.histograms) {
    out.count += h.count;
    out.sum += h.sum;
  }
  return out;
}

std::string metrics_registry::render() const {
  std::lock_guard lock(mutex_);
  std::string out;
  for (const auto& [name, f] : families_) {
    const char* type = f.type == kind::counter ? "counter"
                       : f.type == kind::gauge ? "gauge"
                                               : "histogram";
    out += "# HELP " + name + " " + escape_help(f.help) + "\n";
    out += "# TYPE " + name + " " + type + "\n";
    for (const auto& [labels, v] : f.values) {
      out += name + format_labels(labels) + " " + format_value(v) + "\n";
    }
    for (const auto& [labels, h] : f.histograms) {
      uint64_t cumulative = 0;
      for (size_t i = 0; i < f.buckets.size(); ++i) {
        cumulative += h.bucket_counts[i];
        out += name + "_bucket" + format_labels(labels, "le", format_value(f.buckets[i])) + " " +
               std::to_string(cumulative) + "\n";
      }
      out += name + "_bucket" + format_labels(labels, "le", "+Inf") + " " +
             std::to_string(h.count) + "\n";
      out += name + "_sum" + format_labels(labels) + " " + format_value(h.sum) + "\n";
      out += name + "_count" + format_labels(labels) + " " + std::to_string(h.count) + "\n";
    }
  }
  return out;
}

}  // namespace rbee::common
