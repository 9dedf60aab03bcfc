#include "api/model_entry.h"

#include <gtest/gtest.h>

#include "api/worker_record.h"

namespace rbee::api {
namespace {

TEST(ModelEntry, WhatAHiveWritesTheQueenReadsBack) {
  model_entry m{.id = "stories260k",
                .provider = "hf",
                .reference = "hf:org/repo:stories260K.gguf",
                .file = "stories260K.gguf",
                .local_path = "/models/hf/org/repo/stories260K.gguf",
                .size_bytes = 1'185'376,
                .sha256 = "ab12",
                .architecture = "llama",
                .quantization = "F32",
                .parameters = 260'000,
                .context_length = 512,
                .downloaded_at_unix = 1700000000};
  EXPECT_EQ(model_entry::from_json(m.to_json()).to_json(), m.to_json());
}

TEST(ModelEntry, FieldsOfAnotherTypeKeepTheirDefaults) {
  auto m = model_entry::from_json({{"id", 5}, {"reference", "hf:o/r:f.gguf"}, {"size_bytes", -3}});
  EXPECT_EQ(m.id, "");
  EXPECT_EQ(m.reference, "hf:o/r:f.gguf");
  EXPECT_EQ(m.size_bytes, 0u);
  EXPECT_EQ(model_entry::from_json(nlohmann::json::array()).to_json(), model_entry{}.to_json());
}

TEST(WorkerExit, WhatAHiveWritesTheQueenReadsBack) {
  worker_exit e{.worker_id = "worker-3",
                .model_ref = "hf:o/r",
                .reason = "loading_timeout",
                .code = "LOADING_TIMEOUT",
                .exit_status = 137,
                .at_unix = 1700000000,
                .seq = 4};
  EXPECT_EQ(worker_exit::from_json(e.to_json()).to_json(), e.to_json());
  EXPECT_EQ(worker_exit::from_json({{"worker_id", "w"}}).reason, "crashed");
}

}  // namespace
}  // namespace rbee::api
