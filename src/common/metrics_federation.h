#pragma once
// One scrape for the whole fleet: the queen merges the Prometheus text of its own registry, of
// every hive and of every worker into one exposition, each sample labelled with where it came
// from (node, worker, model, device). Families keep one HELP/TYPE block with all their series
// together, as the text format requires.

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/metrics.h"

namespace rbee::common {

class exposition_merger {
 public:
  // Adds one process's exposition; `labels` go on every sample of it (a label the sample
  // already carries keeps its own value). Lines that are not valid samples are skipped: a
  // scrape target's text is untrusted input.
  void add(std::string_view text, const metric_labels& labels = {});
  // The merged exposition, families sorted by name.
  std::string render() const;

 private:
  struct family {
    std::string help;
    std::string type;
    std::vector<std::string> samples;  // whole lines, labels already added
  };
  // The family a sample belongs to: a histogram's _bucket/_sum/_count lines go to their base.
  family& family_of(const std::string& sample_name, const std::string& current_family);

  std::map<std::string, family> families_;
};

// A sample line with labels added: `name{a="1"} 2` + {b="x"} -> `name{b="x",a="1"} 2`.
// "" when the line is not a sample. The metric name goes to *name.
std::string label_sample(std::string_view line, const metric_labels& labels, std::string* name);

}  // namespace rbee::common
