// A model split by layers into parts on the CPU (the cases: split_cases.h), bit-identical to
// the model in one part; and the split settings that model_load refuses.
#include "split_cases.h"

namespace rbee::engine::split_cases {

const auto* const cleanup = testing::AddGlobalTestEnvironment(new synth_model_cleanup);

INSTANTIATE_TEST_SUITE_P(engine, split_model, testing::Values(backend_kind::cpu), backend_name);

error_code load_error(const model_params& mp, std::string* message = nullptr) {
  try {
    model_load(models_dir() + "/stories260K.gguf", mp);
  } catch (const engine_error& e) {
    if (message) *message = e.what();
    return e.code;
  }
  ADD_FAILURE() << "model_load accepted the settings";
  return error_code::file_not_found;
}

TEST(split_settings, refused_with_a_clear_error) {
  model_params mp = model_default_params();
  mp.n_threads = 1;
  std::string message;
  mp.split = split_mode::tensor;
  mp.devices = {0, 1};
  EXPECT_EQ(load_error(mp, &message), error_code::backend_unavailable);
  EXPECT_NE(message.find("device 1 does not exist"), std::string::npos) << message;
  mp.devices = {0, 0};
  mp.split = split_mode::none;
  EXPECT_EQ(load_error(mp, &message), error_code::invalid_argument);
  EXPECT_NE(message.find("split layer"), std::string::npos) << message;
  mp.split = split_mode::layer;
  mp.devices = {0, 1};
  EXPECT_EQ(load_error(mp, &message), error_code::backend_unavailable);
  EXPECT_NE(message.find("device 1 does not exist"), std::string::npos) << message;
  mp.devices = {0, -1};
  EXPECT_EQ(load_error(mp), error_code::invalid_argument);
  mp.devices = {0, 0};
  mp.tensor_split = {1, 1, 1};
  EXPECT_EQ(load_error(mp), error_code::invalid_argument);
  mp.tensor_split = {0, 0};
  EXPECT_EQ(load_error(mp), error_code::invalid_argument);
  mp.devices = std::vector<int>(100, 0);
  mp.tensor_split = {};
  EXPECT_EQ(load_error(mp, &message), error_code::invalid_argument);
  EXPECT_NE(message.find("100 devices"), std::string::npos) << message;
  mp = model_default_params();
  mp.tensor_split = {1};
  EXPECT_EQ(load_error(mp), error_code::invalid_argument);
}

TEST(split_settings, one_device_named_without_a_split_is_that_device) {
  model_params mp = model_default_params();
  mp.n_threads = 1;
  mp.devices = {1};  // the CPU has only device 0: a named device is not ignored
  EXPECT_EQ(load_error(mp), error_code::backend_unavailable);
  mp.devices = {0};
  const auto m = model_load(models_dir() + "/stories260K.gguf", mp);
  ASSERT_EQ(model_get_parts(*m).size(), 1u);
  EXPECT_EQ(model_get_parts(*m)[0].device, 0);
}

TEST(split_settings, split_modes_have_names) {
  for (const split_mode m : {split_mode::none, split_mode::layer, split_mode::tensor})
    EXPECT_EQ(split_mode_from_string(to_string(m)), m);
  EXPECT_THROW(split_mode_from_string("row"), engine_error);
}

}  // namespace rbee::engine::split_cases
