#pragma once
// The layer split (pipeline) of one model across devices (docs/multi-gpu.md): which
// consecutive layers each device runs, in proportion to a ratio list the user gives
// (--tensor-split, as llama.cpp's -ts) or to each device's free memory. Each part holds its
// layers' weights and KV cache; the first also the token embeddings, the last the output
// weights. plan_layer_split is pure: model_load gives it the sizes and the free memory.
#include <cstdint>
#include <span>
#include <vector>

#include "engine/backend.h"

namespace rbee::engine {

struct model;

// What the parts of a split hold, in bytes.
struct split_costs {
  std::vector<uint64_t> layer_bytes;  // (n_layer,) each layer's weights and KV cache
  uint64_t input_bytes = 0;           // on the first part: the token embeddings
  uint64_t output_bytes = 0;          // on the last part: the output norm and matrix
  uint64_t part_bytes = 0;            // on every part: activations, scratch, runtime
};

// A device the user named, in the order named. A device named twice gets two parts, each
// with half its free memory.
struct split_device {
  int ordinal = 0;
  uint64_t free_bytes = 0;  // 0: not known (the host), no share by memory and no check
};

struct layer_part {
  int device = 0;  // its ordinal
  layer_range layers;
  uint64_t bytes = 0;  // what it holds (split_costs)
};

// The parts, in layer order, of the devices that get layers: with `ratios` (one per device,
// not negative, not all zero) each device's share of the layers is its ratio's share of
// their sum, and a device of ratio 0 gets none; without, the share is the free memory each
// part has left beside what it holds anyway (equal shares when a device's free memory is not
// known). Every device of a positive share gets at least one layer. Throws
// engine_error(invalid_argument) for bad ratios or more devices than layers, and
// engine_error(out_of_memory) naming the device when a device of known free memory cannot
// hold its parts.
std::vector<layer_part> plan_layer_split(const split_costs& costs,
                                         std::span<const split_device> devices,
                                         std::span<const float> ratios);

// The costs of a loaded model's parts: weights as stored, `kv_positions` positions of f16 K
// and V per layer (every layer as if it kept them all: an upper bound for sliding layers),
// and `part_bytes` per part.
split_costs split_costs_of(const model& m, int64_t kv_positions, uint64_t part_bytes);

}  // namespace rbee::engine
