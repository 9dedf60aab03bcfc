// A model split by tensors into parts on the CPU (the cases: tensor_split_cases.h), the
// splits model_load refuses, and the host communicator's all-reduce.
#include <thread>

#include "engine/communicator.h"
#include "tensor_split_cases.h"

namespace rbee::engine::tensor_split_cases {

const auto* const cleanup = testing::AddGlobalTestEnvironment(new split_cases::synth_model_cleanup);

INSTANTIATE_TEST_SUITE_P(engine, tensor_split_model, testing::Values(backend_kind::cpu),
                         backend_name);

// The message of model_load's engine_error(invalid_argument) for a tensor split.
std::string refusal(const std::string& file, std::vector<int> devices,
                    std::vector<float> tensor_split = {}) {
  model_params mp = model_default_params();
  mp.n_threads = 1;
  mp.split = split_mode::tensor;
  mp.devices = std::move(devices);
  mp.tensor_split = std::move(tensor_split);
  try {
    model_load(models_dir() + "/" + file, mp);
  } catch (const engine_error& e) {
    EXPECT_EQ(e.code, error_code::invalid_argument) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "model_load accepted the split";
  return "";
}

TEST(tensor_split_settings, heads_that_do_not_divide_are_refused) {
  EXPECT_NE(refusal("stories260K.gguf", {0, 0, 0}).find("8 attention heads do not divide into 3"),
            std::string::npos);
  EXPECT_NE(refusal("stories260K.gguf", std::vector<int>(8, 0)).find("4 KV heads"),
            std::string::npos);
}

// Q4_K_M's matrices are K-quants of 256-column blocks: attn_output's 256 columns in two
// parts of 128 would cut them. The split refuses rather than dequantizing.
TEST(tensor_split_settings, column_slices_inside_quant_blocks_are_refused) {
  const std::string message = refusal("synth-tiny-Q4_K_M.gguf", {0, 0});
  EXPECT_NE(message.find("blk.0.attn_output.weight"), std::string::npos) << message;
  EXPECT_NE(message.find("blocks of 256"), std::string::npos) << message;
}

TEST(tensor_split_settings, ratios_belong_to_the_layer_split) {
  EXPECT_NE(refusal("stories260K.gguf", {0, 0}, {1, 1}).find("tensor_split needs split layer"),
            std::string::npos);
}

// (1e8 + 1) - 1e8 is 0 in float, 1 + (1e8 - 1e8) is 1: every rank adds in rank order, so
// every rank gets 0, round after round.
// A tensor split loads every layer once per part; its progress still runs once, in order, from
// 0 to all layers (a worker's loading bar).
TEST(tensor_split_settings, load_progress_runs_once_over_the_whole_model) {
  std::vector<load_progress> seen;
  model_params mp = model_default_params();
  mp.n_threads = 1;
  mp.split = split_mode::tensor;
  mp.devices = {0, 0};
  mp.on_progress = [&](const load_progress& p) { seen.push_back(p); };
  const model_ptr m = model_load(models_dir() + "/stories260K.gguf", mp);
  ASSERT_FALSE(seen.empty());
  const int n_layer = model_get_info(*m).n_layer;
  for (size_t i = 0; i < seen.size(); ++i) {
    EXPECT_EQ(seen[i].layers_total, n_layer);
    EXPECT_LE(seen[i].layers_loaded, n_layer);
    EXPECT_LE(seen[i].bytes_loaded, seen[i].bytes_total);
    if (i > 0) {
      EXPECT_GE(seen[i].layers_loaded, seen[i - 1].layers_loaded) << "at report " << i;
      EXPECT_GE(seen[i].bytes_loaded, seen[i - 1].bytes_loaded) << "at report " << i;
    }
  }
  EXPECT_EQ(seen.back().layers_loaded, n_layer);
  EXPECT_EQ(seen.back().tensors_loaded, seen.back().tensors_total);
}

TEST(host_communicator, every_rank_gets_the_same_sum_in_rank_order) {
  constexpr int n_ranks = 3;
  const auto comm = make_host_communicator(n_ranks);
  const float part[n_ranks] = {1e8f, 1.0f, -1e8f};
  std::vector<std::vector<float>> got(n_ranks);
  std::vector<std::thread> threads;
  for (int r = 0; r < n_ranks; ++r)
    threads.emplace_back([&, r] {
      for (int round = 0; round < 50; ++round) {
        std::vector<float> data{part[r], float(r), float(round)};
        comm->all_reduce_sum(r, data.data(), data.size());
        got[r].insert(got[r].end(), data.begin(), data.end());
      }
    });
  for (auto& t : threads) t.join();
  for (int r = 0; r < n_ranks; ++r) {
    ASSERT_EQ(got[r].size(), 150u);
    for (int round = 0; round < 50; ++round) {
      EXPECT_EQ(got[r][round * 3], 0.0f);
      EXPECT_EQ(got[r][round * 3 + 1], 3.0f);
      EXPECT_EQ(got[r][round * 3 + 2], 3.0f * round);
    }
  }
}

TEST(host_communicator, an_abort_fails_the_ranks_that_wait) {
  const auto comm = make_host_communicator(2);
  float x = 1;
  std::thread waiting([&] { EXPECT_THROW(comm->all_reduce_sum(0, &x, 1), engine_error); });
  comm->abort();
  waiting.join();
  EXPECT_THROW(comm->all_reduce_sum(1, &x, 1), engine_error);
}

}  // namespace rbee::engine::tensor_split_cases
