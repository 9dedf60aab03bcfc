#include "engine/layer_split.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "engine/model.h"

namespace rbee::engine {

namespace {

[[noreturn]] void throw_invalid(const std::string& message) {
  throw engine_error(error_code::invalid_argument, "layer split: " + message);
}

uint64_t mib(uint64_t bytes) {
  return (bytes + (1u << 20) - 1) >> 20;
}

int times_named(std::span<const split_device> devices, int ordinal) {
  return static_cast<int>(std::count_if(
      devices.begin(), devices.end(), [&](const split_device& d) { return d.ordinal == ordinal; }));
}

std::vector<double> shares_from_ratios(std::span<const float> ratios, size_t n_devices) {
  if (ratios.size() != n_devices)
    throw_invalid(str("tensor_split has ", ratios.size(), " ratios for ", n_devices,
                      " devices; give one per device"));
  std::vector<double> shares;
  for (size_t i = 0; i < ratios.size(); ++i) {
    if (!std::isfinite(ratios[i]) || ratios[i] < 0)
      throw_invalid(
          str("tensor_split ratio ", i, " is ", ratios[i], "; ratios must be finite and >= 0"));
    shares.push_back(ratios[i]);
  }
  if (std::accumulate(shares.begin(), shares.end(), 0.0) <= 0)
    throw_invalid("every tensor_split ratio is 0; at least one device must get layers");
  return shares;
}

// Each part's free memory beside what it holds whatever its layers (its share of a device
// named twice); equal shares when a device's free memory is not known.
std::vector<double> shares_from_memory(const split_costs& costs,
                                       std::span<const split_device> devices) {
  const bool known = std::all_of(devices.begin(), devices.end(),
                                 [](const split_device& d) { return d.free_bytes > 0; });
  if (!known) return std::vector<double>(devices.size(), 1.0);
  std::vector<double> shares;
  for (size_t i = 0; i < devices.size(); ++i) {
    const uint64_t free = devices[i].free_bytes / times_named(devices, devices[i].ordinal);
    const uint64_t fixed = costs.part_bytes + (i == 0 ? costs.input_bytes : 0) +
                           (i + 1 == devices.size() ? costs.output_bytes : 0);
    shares.push_back(free > fixed ? static_cast<double>(free - fixed) : 0.0);
  }
  if (std::accumulate(shares.begin(), shares.end(), 0.0) <= 0)
    throw engine_error(error_code::out_of_memory,
                       "layer split: no device has memory left for layers beside the "
                       "embeddings, the output weights and the scratch");
  return shares;
}

// One past the last layer of each device: consecutive ranges in proportion to the shares,
// at least one layer for each positive share.
std::vector<int> layer_ends(const std::vector<double>& shares, int n_layer) {
  const int n_positive =
      static_cast<int>(std::count_if(shares.begin(), shares.end(), [](double s) { return s > 0; }));
  if (n_positive > n_layer)
    throw_invalid(str(n_positive, " devices for a model of ", n_layer,
                      " layers; each device needs at least one layer"));
  const double total = std::accumulate(shares.begin(), shares.end(), 0.0);
  std::vector<int> ends;
  double so_far = 0;
  int end = 0, positive_after = n_positive;
  for (const double share : shares) {
    if (share > 0) {
      so_far += share;
      --positive_after;
      const int rounded = static_cast<int>(std::lround(n_layer * (so_far / total)));
      end = std::clamp(rounded, end + 1, n_layer - positive_after);
    }
    ends.push_back(end);
  }
  return ends;
}

void check_capacity(const std::vector<layer_part>& parts, std::span<const split_device> devices) {
  for (const split_device& d : devices) {
    if (d.free_bytes == 0) continue;
    uint64_t need = 0;
    std::string ranges;
    for (const layer_part& p : parts) {
      if (p.device != d.ordinal) continue;
      need += p.bytes;
      ranges += str(ranges.empty() ? "" : ", ", p.layers.first, "-", p.layers.end - 1);
    }
    if (need > d.free_bytes)
      throw engine_error(error_code::out_of_memory,
                         str("layer split: device ", d.ordinal, " needs ", mib(need),
                             " MiB for layers ", ranges, " but has ", mib(d.free_bytes),
                             " MiB free; give it a smaller share (tensor_split) or more devices"));
  }
}

uint64_t weight_bytes(const weight& w) {
  return w ? static_cast<uint64_t>(w.n_rows) * w.row_bytes() : 0;
}

}  // namespace

std::vector<layer_part> plan_layer_split(const split_costs& costs,
                                         std::span<const split_device> devices,
                                         std::span<const float> ratios) {
  if (devices.empty()) throw_invalid("no devices given");
  const int n_layer = static_cast<int>(costs.layer_bytes.size());
  const std::vector<double> shares = ratios.empty() ? shares_from_memory(costs, devices)
                                                    : shares_from_ratios(ratios, devices.size());
  const std::vector<int> ends = layer_ends(shares, n_layer);
  std::vector<layer_part> parts;
  int first = 0;
  for (size_t i = 0; i < devices.size(); ++i) {
    if (ends[i] > first) {
      layer_part p{
          .device = devices[i].ordinal, .layers = {first, ends[i]}, .bytes = costs.part_bytes};
      for (int l = first; l < ends[i]; ++l) p.bytes += costs.layer_bytes[static_cast<size_t>(l)];
      parts.push_back(p);
    }
    first = ends[i];
  }
  parts.front().bytes += costs.input_bytes;
  parts.back().bytes += costs.output_bytes;
  check_capacity(parts, devices);
  return parts;
}

split_costs split_costs_of(const model& m, int64_t kv_positions, uint64_t part_bytes) {
  const hparams& hp = m.hp;
  split_costs costs{.layer_bytes = std::vector<uint64_t>(static_cast<size_t>(hp.n_layer), 0),
                    .input_bytes = weight_bytes(m.tok_embd),
                    .output_bytes = weight_bytes(m.output) + weight_bytes(m.output_norm),
                    .part_bytes = part_bytes};
  const uint64_t kv_bytes = 2ull * 2 * static_cast<uint64_t>(std::max<int64_t>(0, kv_positions)) *
                            static_cast<uint64_t>(hp.n_head_kv) *
                            static_cast<uint64_t>(hp.head_dim);
  for (uint64_t& b : costs.layer_bytes) b = kv_bytes;
  for (const weight_slot& s : m.weight_slots) {
    if (s.layer >= 0)
      costs.layer_bytes[static_cast<size_t>(s.layer)] += weight_bytes(*s.w);
    else if (s.w != &m.tok_embd && s.w != &m.output && s.w != &m.output_norm)
      costs.part_bytes += weight_bytes(*s.w);  // rope factors: every part rotates
  }
  return costs;
}

}  // namespace rbee::engine
