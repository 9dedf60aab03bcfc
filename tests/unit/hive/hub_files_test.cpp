#include "hive/hub_files.h"

#include <gtest/gtest.h>

namespace rbee::hive {
namespace {

TEST(HubFiles, QuantizationFromFileName) {
  EXPECT_EQ(quantization_from_name("tinyllama-1.1b.Q4_K_M.gguf"), "Q4_K_M");
  EXPECT_EQ(quantization_from_name("model-q8_0.gguf"), "Q8_0");
  EXPECT_EQ(quantization_from_name("synth-tiny-f16.gguf"), "F16");
  EXPECT_EQ(quantization_from_name("Q4_K_S-model.gguf"), "Q4_K_S");
  EXPECT_EQ(quantization_from_name("plain.gguf"), "");
  EXPECT_EQ(quantization_from_name("XQ4_0X.gguf"), "");
}

TEST(HubFiles, PicksGgufByPreference) {
  EXPECT_EQ(pick_gguf_file({"README.md", "m.Q8_0.gguf", "m.Q4_K_M.gguf", "m.Q5_K_M.gguf"}),
            "m.Q4_K_M.gguf");
  EXPECT_EQ(pick_gguf_file({"m.Q8_0.gguf", "m.Q5_K_M.gguf"}), "m.Q5_K_M.gguf");
  EXPECT_EQ(pick_gguf_file({"m.F16.gguf", "m.Q8_0.gguf"}), "m.Q8_0.gguf");
  EXPECT_EQ(pick_gguf_file({"m.Q4_0.gguf", "m.Q6_K.gguf"}), "m.Q4_0.gguf");
  // Unknown tags come after known ones; split shards are never picked.
  EXPECT_EQ(pick_gguf_file({"m.weird.gguf", "m.F32.gguf"}), "m.F32.gguf");
  EXPECT_EQ(pick_gguf_file({"m.weird.gguf"}), "m.weird.gguf");
  EXPECT_EQ(pick_gguf_file({"m.Q4_K_M-00001-of-00002.gguf", "m.Q8_0.gguf"}), "m.Q8_0.gguf");
  EXPECT_EQ(pick_gguf_file({"config.json", "model.safetensors"}), "");
}

TEST(HubFiles, PickNeverChoosesANameThatIsNotASafeRepoPath) {
  // The listing comes from the network: a hostile hub's names must not become paths.
  EXPECT_EQ(
      pick_gguf_file({"../../../../evil.Q4_K_M.gguf", "/tmp/evil.Q4_K_M.gguf", "m.Q8_0.gguf"}),
      "m.Q8_0.gguf");
  EXPECT_EQ(pick_gguf_file({"../../evil.gguf", "/abs/evil.gguf", "a//b.gguf", "a b.gguf",
                            "q4/./m.gguf", "q4\\..\\m.gguf"}),
            "");
}

}  // namespace
}  // namespace rbee::hive
