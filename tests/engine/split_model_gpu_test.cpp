// A model split by layers into two parts on CUDA device 0 (the cases: split_cases.h): the
// residual stream handed from one part's device buffers to the next, each part's KV cache
// holding its layers, sampling on the last part. Two parts on one device run all of it but
// the copy between two ordinals (cudaMemcpyPeer, peer access), which needs a second GPU;
// skips where no CUDA device exists.
#include "split_cases.h"

namespace rbee::engine::split_cases {

const auto* const cleanup = testing::AddGlobalTestEnvironment(new synth_model_cleanup);

INSTANTIATE_TEST_SUITE_P(engine, split_model, testing::Values(backend_kind::cuda), backend_name);

}  // namespace rbee::engine::split_cases
