#include "hive/gguf_header.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include "engine/gguf.h"

namespace rbee::hive {
namespace {
namespace gguf = engine::gguf;
using engine::tensor_type;

class GgufHeader : public ::testing::Test {
 protected:
  std::filesystem::path write(const gguf::writer& w) {
    w.write(path_.string());
    return path_;
  }
  std::filesystem::path write_bytes(const std::string& bytes) {
    std::ofstream(path_, std::ios::binary) << bytes;
    return path_;
  }
  void TearDown() override { std::filesystem::remove(path_); }
  // The error message for a malformed file (fails the test if it parses).
  std::string error_for(const std::filesystem::path& path) {
    try {
      read_gguf_header(path);
    } catch (const gguf_header_error& e) {
      return e.what();
    }
    ADD_FAILURE() << "parsed a malformed file";
    return "";
  }
  void add_tensor(gguf::writer& w, const std::string& name, tensor_type type,
                  std::vector<int64_t> shape) {
    std::vector<uint8_t> bytes(gguf::writer::tensor_bytes(type, shape));
    w.add_tensor(name, type, std::move(shape), bytes);
  }
  std::filesystem::path path_ = std::filesystem::temp_directory_path() /
                                ("hive-gguf-" + std::to_string(::getpid()) + ".gguf");
};

TEST_F(GgufHeader, ReadsTheKeysTheCatalogNeeds) {
  gguf::writer w;
  w.set_string("general.architecture", "llama");
  w.set_string("general.name", "tiny");
  w.set_uint32("general.file_type", 15);
  w.set_uint32("llama.context_length", 4096);
  w.set_uint32("llama.block_count", 2);
  w.set_uint32("llama.embedding_length", 256);
  w.set_uint32("llama.attention.head_count", 8);
  w.set_string_array("tokenizer.ggml.tokens", {"<s>", "</s>"});
  add_tensor(w, "token_embd.weight", tensor_type::q4_k, {256, 100});
  add_tensor(w, "output_norm.weight", tensor_type::f32, {256});
  auto s = read_gguf_header(write(w));
  EXPECT_EQ(s.version, 3u);
  EXPECT_EQ(s.architecture, "llama");
  EXPECT_EQ(s.name, "tiny");
  EXPECT_EQ(s.context_length, 4096u);
  EXPECT_EQ(s.block_count, 2u);
  EXPECT_EQ(s.embedding_length, 256u);
  EXPECT_EQ(s.head_count, 8u);
  EXPECT_EQ(s.head_count_kv, 8u);  // absent: same as head_count
  EXPECT_EQ(s.quantization, "Q4_K_M");
  EXPECT_EQ(s.parameters, 256u * 100 + 256);
  EXPECT_EQ(s.tensor_count, 2u);
  EXPECT_EQ(s.file_size, std::filesystem::file_size(path_));
}

TEST_F(GgufHeader, QuantizationFallsBackToTheDominantTensorType) {
  gguf::writer w;
  w.set_string("general.architecture", "qwen2");
  add_tensor(w, "a", tensor_type::q8_0, {32, 32});
  add_tensor(w, "b", tensor_type::q8_0, {32, 64});
  add_tensor(w, "c", tensor_type::f16, {32, 16});
  auto s = read_gguf_header(write(w));
  EXPECT_EQ(s.architecture, "qwen2");
  EXPECT_EQ(s.quantization, "Q8_0");
  EXPECT_EQ(s.context_length, 0u);
}

TEST_F(GgufHeader, ReadsTheSharedSynthModel) {
  auto s =
      read_gguf_header(std::filesystem::path(RBEE_SHARED_MODELS_DIR) / "synth-tiny-Q4_K_M.gguf");
  EXPECT_EQ(s.architecture, "llama");
  EXPECT_EQ(s.quantization, "Q4_K_M");
  EXPECT_EQ(s.block_count, 4u);
  EXPECT_EQ(s.embedding_length, 256u);
  EXPECT_EQ(s.head_count, 8u);
  EXPECT_EQ(s.head_count_kv, 4u);
  EXPECT_EQ(s.tensor_count, 39u);
  // 2 x (512 x 256) embeddings/output + 4 layers x (q 256x256, k/v 256x128, o 256x256,
  // 3 x 256x768 FFN, 2 norms) + output norm.
  EXPECT_EQ(s.parameters, 2u * 512 * 256 + 4u * (2 * 65536 + 2 * 32768 + 3 * 196608 + 512) + 256);
}

// Malformed files are the GGUF reader's to diagnose (tests/engine/gguf_test.cpp covers each kind
// of damage); here: its message reaches the hive as gguf_header_error.
TEST_F(GgufHeader, MalformedFilesRaiseTheReadersMessage) {
  EXPECT_NE(
      error_for(write_bytes("hello, this is plain text and not a model at all")).find("magic"),
      std::string::npos);
  auto shared = std::filesystem::path(RBEE_SHARED_MODELS_DIR) / "stories260K.gguf";
  std::string full;
  {
    std::ifstream in(shared, std::ios::binary);
    full.assign(std::istreambuf_iterator<char>(in), {});
  }
  EXPECT_FALSE(error_for(write_bytes(full.substr(0, full.size() / 2))).empty());
}

TEST_F(GgufHeader, RequiresAnArchitecture) {
  gguf::writer w;
  w.set_uint32("general.file_type", 1);
  EXPECT_NE(error_for(write(w)).find("general.architecture"), std::string::npos);
}

TEST(GgufNames, FileAndTensorTypes) {
  EXPECT_EQ(file_type_name(7), "Q8_0");
  EXPECT_EQ(file_type_name(17), "Q5_K_M");
  EXPECT_EQ(file_type_name(1000), "");
  EXPECT_EQ(tensor_type_name(14), "Q6_K");
  EXPECT_EQ(tensor_type_name(5), "");
}

}  // namespace
}  // namespace rbee::hive
