// A model split by tensors into parts on CUDA device 0 (the cases: tensor_split_cases.h):
// every part a slice of each layer in device memory, partial sums joined on the device by the
// same-device communicator, rank 0 computing the logits and sampling. Parts on two GPUs
// (NCCL) need a second GPU; here only NCCL's clear error when its library is missing. Skips
// where no CUDA device exists.
#include "tensor_split_cases.h"

#if RBEE_HAVE_CUDA
#include "engine/cuda/nccl_api.h"
#endif

namespace rbee::engine::tensor_split_cases {

const auto* const cleanup = testing::AddGlobalTestEnvironment(new split_cases::synth_model_cleanup);

INSTANTIATE_TEST_SUITE_P(engine, tensor_split_model, testing::Values(backend_kind::cuda),
                         backend_name);

#if RBEE_HAVE_CUDA
TEST(nccl, a_missing_library_is_a_clear_error) {
  try {
    cuda::load_nccl("libnccl-rbee-test-absent.so.2");
    FAIL() << "a library that does not exist was loaded";
  } catch (const engine_error& e) {
    EXPECT_EQ(e.code, error_code::backend_unavailable);
    const std::string message = e.what();
    EXPECT_NE(message.find("tensor parallelism across GPUs needs libnccl-rbee-test-absent.so.2"),
              std::string::npos)
        << message;
  }
}
#endif

}  // namespace rbee::engine::tensor_split_cases
