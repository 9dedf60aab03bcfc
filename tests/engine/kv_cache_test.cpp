// The paged KV cache and the prefix cache on the CPU backend (the cases: kv_cache_cases.h).
#include "kv_cache_cases.h"

namespace rbee::engine::kv_cache_cases {

INSTANTIATE_TEST_SUITE_P(engine, paged_kv_cache, testing::Values(backend_kind::cpu), backend_name);
INSTANTIATE_TEST_SUITE_P(engine, prefix_cache, testing::Values(backend_kind::cpu), backend_name);

}  // namespace rbee::engine::kv_cache_cases
