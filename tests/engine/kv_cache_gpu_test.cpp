// The paged KV cache and the prefix cache on the CUDA backend (the cases: kv_cache_cases.h):
// the block tables reach the attention and rope kernels, the single-token steps replayed as
// CUDA graphs read the tables uploaded before them, and copies of partial blocks stay on the
// device. Skips where no CUDA device exists.
#include "kv_cache_cases.h"

namespace rbee::engine::kv_cache_cases {

INSTANTIATE_TEST_SUITE_P(engine, paged_kv_cache, testing::Values(backend_kind::cuda), backend_name);
INSTANTIATE_TEST_SUITE_P(engine, prefix_cache, testing::Values(backend_kind::cuda), backend_name);

}  // namespace rbee::engine::kv_cache_cases
