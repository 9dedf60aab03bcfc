// The layer split's plan (engine/layer_split.h): which consecutive layers each device gets,
// by ratios or by free memory, what each part holds, and the errors of bad ratios and of
// devices too small for their part.
#include <cmath>

#include <gtest/gtest.h>

#include "engine/layer_split.h"
#include "engine/model.h"

namespace rbee::engine {
namespace {

const std::string models_dir = RBEE_SHARED_MODELS_DIR;

// n_layer layers of `layer` bytes each.
split_costs uniform_costs(int n_layer, uint64_t layer, uint64_t input = 0, uint64_t output = 0,
                          uint64_t part = 0) {
  return {.layer_bytes = std::vector<uint64_t>(static_cast<size_t>(n_layer), layer),
          .input_bytes = input,
          .output_bytes = output,
          .part_bytes = part};
}

// Devices of unknown free memory (the host).
std::vector<split_device> unknown_devices(std::initializer_list<int> ordinals) {
  std::vector<split_device> out;
  for (const int o : ordinals) out.push_back({.ordinal = o, .free_bytes = 0});
  return out;
}

struct range {
  int device, first, end;
  bool operator==(const range&) const = default;
};

std::vector<range> ranges_of(const std::vector<layer_part>& parts) {
  std::vector<range> out;
  for (const auto& p : parts) out.push_back({p.device, p.layers.first, p.layers.end});
  return out;
}

void PrintTo(const range& r, std::ostream* os) {
  *os << "device " << r.device << " [" << r.first << ", " << r.end << ")";
}

std::vector<layer_part> plan(const split_costs& costs, const std::vector<split_device>& devices,
                             const std::vector<float>& ratios = {}) {
  return plan_layer_split(costs, devices, ratios);
}

error_code code_of(const split_costs& costs, const std::vector<split_device>& devices,
                   const std::vector<float>& ratios, std::string* message = nullptr) {
  try {
    plan_layer_split(costs, devices, ratios);
  } catch (const engine_error& e) {
    if (message) *message = e.what();
    return e.code;
  }
  ADD_FAILURE() << "the plan was accepted";
  return error_code::file_not_found;
}

TEST(layer_split, ratios_share_the_layers_in_order) {
  const auto parts = plan(uniform_costs(8, 10), unknown_devices({0, 1}), {3, 1});
  EXPECT_EQ(ranges_of(parts), (std::vector<range>{{0, 0, 6}, {1, 6, 8}}));
}

TEST(layer_split, without_ratios_or_known_memory_shares_are_equal) {
  EXPECT_EQ(ranges_of(plan(uniform_costs(8, 10), unknown_devices({0, 1}))),
            (std::vector<range>{{0, 0, 4}, {1, 4, 8}}));
  EXPECT_EQ(ranges_of(plan(uniform_costs(8, 10), unknown_devices({2, 0, 1}))),
            (std::vector<range>{{2, 0, 3}, {0, 3, 5}, {1, 5, 8}}));
}

TEST(layer_split, free_memory_left_beside_embeddings_and_output_sets_the_shares) {
  // Device 0 has 125 - 5 (part) - 20 (embeddings) = 100 left for layers, device 1
  // 95 - 5 - 30 (output) = 60: 10 layers split 100:60, 6.25 of them on device 0.
  const auto costs = uniform_costs(10, 10, 20, 30, 5);
  const std::vector<split_device> devices{{.ordinal = 0, .free_bytes = 125},
                                          {.ordinal = 1, .free_bytes = 95}};
  const auto parts = plan(costs, devices);
  EXPECT_EQ(ranges_of(parts), (std::vector<range>{{0, 0, 6}, {1, 6, 10}}));
  EXPECT_EQ(parts[0].bytes, 5u + 6 * 10 + 20);  // scratch, layers, embeddings
  EXPECT_EQ(parts[1].bytes, 5u + 4 * 10 + 30);  // scratch, layers, output
}

TEST(layer_split, kv_cache_and_weights_of_a_layer_count_together) {
  split_costs costs = uniform_costs(4, 0);
  costs.layer_bytes = {1, 2, 4, 8};
  const auto parts = plan(costs, unknown_devices({0, 1}), {1, 1});
  EXPECT_EQ(parts[0].bytes, 3u);
  EXPECT_EQ(parts[1].bytes, 12u);
}

TEST(layer_split, a_device_of_ratio_zero_gets_no_part) {
  const auto parts = plan(uniform_costs(6, 10, 1, 2), unknown_devices({0, 1, 2}), {1, 0, 1});
  EXPECT_EQ(ranges_of(parts), (std::vector<range>{{0, 0, 3}, {2, 3, 6}}));
  EXPECT_EQ(parts[0].bytes, 31u);  // the embeddings on the first part that has layers
  EXPECT_EQ(parts[1].bytes, 32u);  // the output on the last
}

TEST(layer_split, every_device_of_a_positive_share_gets_a_layer) {
  EXPECT_EQ(ranges_of(plan(uniform_costs(4, 10), unknown_devices({0, 1}), {100, 1})),
            (std::vector<range>{{0, 0, 3}, {1, 3, 4}}));
  EXPECT_EQ(ranges_of(plan(uniform_costs(4, 10), unknown_devices({0, 1}), {1, 100})),
            (std::vector<range>{{0, 0, 1}, {1, 1, 4}}));
  EXPECT_EQ(ranges_of(plan(uniform_costs(3, 10), unknown_devices({0, 1, 2}))),
            (std::vector<range>{{0, 0, 1}, {1, 1, 2}, {2, 2, 3}}));
}

TEST(layer_split, one_device_holds_the_whole_model) {
  EXPECT_EQ(ranges_of(plan(uniform_costs(5, 10), unknown_devices({3}))),
            (std::vector<range>{{3, 0, 5}}));
}

TEST(layer_split, a_device_named_twice_holds_two_parts_within_its_memory) {
  // 200 bytes free: each of its parts counts on 100 for the shares; together they must fit.
  const std::vector<split_device> twice{{.ordinal = 0, .free_bytes = 200},
                                        {.ordinal = 0, .free_bytes = 200}};
  const auto parts = plan(uniform_costs(4, 40), twice);
  EXPECT_EQ(ranges_of(parts), (std::vector<range>{{0, 0, 2}, {0, 2, 4}}));
  const std::vector<split_device> small{{.ordinal = 0, .free_bytes = 150},
                                        {.ordinal = 0, .free_bytes = 150}};
  EXPECT_EQ(code_of(uniform_costs(4, 40), small, {}), error_code::out_of_memory);
}

TEST(layer_split, bad_ratios_are_invalid_arguments) {
  const auto costs = uniform_costs(4, 10);
  const auto two = unknown_devices({0, 1});
  std::string message;
  EXPECT_EQ(code_of(costs, two, {1, -1}, &message), error_code::invalid_argument);
  EXPECT_NE(message.find("ratio 1 is -1"), std::string::npos) << message;
  EXPECT_EQ(code_of(costs, two, {0, 0}, &message), error_code::invalid_argument);
  EXPECT_NE(message.find("every tensor_split ratio is 0"), std::string::npos) << message;
  EXPECT_EQ(code_of(costs, two, {1, 2, 3}, &message), error_code::invalid_argument);
  EXPECT_NE(message.find("3 ratios for 2 devices"), std::string::npos) << message;
  EXPECT_EQ(code_of(costs, two, {1, std::nanf("")}), error_code::invalid_argument);
  EXPECT_EQ(code_of(costs, two, {1, INFINITY}), error_code::invalid_argument);
}

TEST(layer_split, more_devices_than_layers_is_an_invalid_argument) {
  std::string message;
  EXPECT_EQ(code_of(uniform_costs(2, 10), unknown_devices({0, 1, 2}), {}, &message),
            error_code::invalid_argument);
  EXPECT_NE(message.find("3 devices for a model of 2 layers"), std::string::npos) << message;
  // Only devices that get layers count.
  EXPECT_EQ(plan(uniform_costs(2, 10), unknown_devices({0, 1, 2}), {1, 0, 1}).size(), 2u);
  EXPECT_EQ(code_of(uniform_costs(2, 10), {}, {}), error_code::invalid_argument);
}

TEST(layer_split, a_device_that_cannot_hold_its_part_is_named) {
  // Ratios put 3 of 4 layers of 100 bytes on device 1, which has 250 free.
  const std::vector<split_device> devices{{.ordinal = 0, .free_bytes = 1000},
                                          {.ordinal = 1, .free_bytes = 250}};
  std::string message;
  EXPECT_EQ(code_of(uniform_costs(4, 100), devices, {1, 3}, &message), error_code::out_of_memory);
  EXPECT_NE(message.find("device 1 needs"), std::string::npos) << message;
  EXPECT_NE(message.find("layers 1-3"), std::string::npos) << message;
  // Without ratios the shares follow the memory and the same model fits.
  EXPECT_EQ(ranges_of(plan(uniform_costs(4, 100), devices)),
            (std::vector<range>{{0, 0, 3}, {1, 3, 4}}));
}

TEST(layer_split, no_memory_left_for_layers_is_out_of_memory) {
  const std::vector<split_device> devices{{.ordinal = 0, .free_bytes = 10},
                                          {.ordinal = 1, .free_bytes = 10}};
  EXPECT_EQ(code_of(uniform_costs(4, 1, 0, 0, 50), devices, {}), error_code::out_of_memory);
}

TEST(layer_split, costs_of_a_model_are_its_weights_and_kv_cache) {
  model_params mp = model_default_params();
  mp.n_threads = 1;
  const auto m = model_load(models_dir + "/stories260K.gguf", mp);
  const split_costs weights_only = split_costs_of(*m, 0, 7);
  ASSERT_EQ(weights_only.layer_bytes.size(), static_cast<size_t>(m->hp.n_layer));
  EXPECT_GT(weights_only.layer_bytes[0], 0u);
  for (const uint64_t b : weights_only.layer_bytes) EXPECT_EQ(b, weights_only.layer_bytes[0]);
  EXPECT_EQ(weights_only.input_bytes,
            static_cast<uint64_t>(m->tok_embd.n_rows) * m->tok_embd.row_bytes());
  EXPECT_GE(weights_only.output_bytes, static_cast<uint64_t>(m->hp.n_embd) * 4);
  EXPECT_EQ(weights_only.part_bytes, 7u);
  // f16 K and V of every position for each layer's KV heads.
  const split_costs with_kv = split_costs_of(*m, 100, 7);
  EXPECT_EQ(with_kv.layer_bytes[0] - weights_only.layer_bytes[0],
            2ull * 2 * 100 * static_cast<uint64_t>(m->hp.n_head_kv) * m->hp.head_dim);
}

}  // namespace
}  // namespace rbee::engine
