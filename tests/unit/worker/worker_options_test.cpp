#include <gtest/gtest.h>

#include "worker/worker_app.h"

namespace rbee::worker {
namespace {

// A prompt chunk per step that fits the backend: the CPU's keeps running answers moving, the
// GPU's fills a step (--prefill-chunk 0 picks it; a given value is used as it is).
TEST(worker_options, the_default_prefill_chunk_follows_the_backend) {
  EXPECT_EQ(worker_options{}.prefill_chunk, 0);
  EXPECT_EQ(default_prefill_chunk(engine::backend_kind::cpu), 128);
  EXPECT_EQ(default_prefill_chunk(engine::backend_kind::cuda), 512);
}

}  // namespace
}  // namespace rbee::worker
