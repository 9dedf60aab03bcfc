#include "gguf/summary.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace rbee::gguf {
namespace {

const std::filesystem::path models_dir = RBEE_SHARED_MODELS_DIR;

class HeaderSummary : public ::testing::Test {
 protected:
  std::string write(const writer& w) {
    w.write(path_.string());
    return path_.string();
  }
  std::string write_bytes(const std::string& bytes) {
    std::ofstream(path_, std::ios::binary) << bytes;
    return path_.string();
  }
  void TearDown() override { std::filesystem::remove(path_); }
  // The error message for a malformed file (fails the test if it parses).
  std::string error_for(const std::string& path) {
    try {
      read_header_summary(path);
    } catch (const format_error& e) {
      return e.what();
    }
    ADD_FAILURE() << "parsed a malformed file";
    return "";
  }
  void add_tensor(writer& w, const std::string& name, tensor_type type,
                  std::vector<int64_t> shape) {
    std::vector<uint8_t> bytes(writer::tensor_bytes(type, shape));
    w.add_tensor(name, type, std::move(shape), bytes);
  }
  std::filesystem::path path_ = std::filesystem::temp_directory_path() /
                                ("gguf-summary-" + std::to_string(::getpid()) + ".gguf");
};

TEST_F(HeaderSummary, ReadsTheKeysTheCatalogNeeds) {
  writer w;
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
  auto s = read_header_summary(write(w));
  EXPECT_EQ(s.version, 3u);
  EXPECT_EQ(s.architecture, "llama");
  EXPECT_EQ(s.name, "tiny");
  EXPECT_EQ(s.context_length, 4096u);
  EXPECT_EQ(s.block_count, 2u);
  EXPECT_EQ(s.embedding_length, 256u);
  EXPECT_EQ(s.head_count, 8u);
  EXPECT_EQ(s.head_count_kv, 8u);  // absent: same as head_count
  EXPECT_EQ(s.vocab_size, 100u);
  EXPECT_EQ(s.file_type, 15u);
  EXPECT_EQ(s.quantization, "Q4_K_M");
  EXPECT_EQ(s.parameters, 256u * 100 + 256);
  EXPECT_EQ(s.tensor_count, 2u);
  EXPECT_EQ(s.file_size, std::filesystem::file_size(path_));
}

// Without general.file_type only the tensor type can be named: Q4_K, not a mix such as Q4_K_M.
TEST_F(HeaderSummary, WithoutAFileTypeTheTensorTypeOfMostWeightsIsNamed) {
  writer w;
  w.set_string("general.architecture", "llama");
  add_tensor(w, "a", tensor_type::q4_k, {256, 8});
  add_tensor(w, "b", tensor_type::q6_k, {256, 4});
  add_tensor(w, "norm", tensor_type::f32, {4096});  // vectors do not count
  auto s = read_header_summary(write(w));
  EXPECT_FALSE(s.file_type);
  EXPECT_EQ(s.quantization, "Q4_K");
  EXPECT_EQ(s.context_length, 0u);
}

TEST_F(HeaderSummary, AnUnknownFileTypeFallsBackToTheTensorType) {
  writer w;
  w.set_string("general.architecture", "qwen2");
  w.set_uint32("general.file_type", 1000);
  add_tensor(w, "a", tensor_type::q8_0, {32, 32});
  add_tensor(w, "b", tensor_type::q8_0, {32, 64});
  add_tensor(w, "c", tensor_type::f16, {32, 16});
  auto s = read_header_summary(write(w));
  EXPECT_EQ(s.architecture, "qwen2");
  EXPECT_EQ(s.file_type, 1000u);
  EXPECT_EQ(s.quantization, "Q8_0");
}

TEST_F(HeaderSummary, ReadsTheSharedSynthModel) {
  auto s = read_header_summary((models_dir / "synth-tiny-Q4_K_M.gguf").string());
  EXPECT_EQ(s.architecture, "llama");
  EXPECT_EQ(s.file_type, 15u);
  // Q4_K x 25, Q6_K x 5: the file type names the mix, as llama.cpp's quantizer wrote it.
  EXPECT_EQ(s.quantization, "Q4_K_M");
  EXPECT_EQ(s.block_count, 4u);
  EXPECT_EQ(s.embedding_length, 256u);
  EXPECT_EQ(s.head_count, 8u);
  EXPECT_EQ(s.head_count_kv, 4u);
  EXPECT_EQ(s.vocab_size, 512u);
  EXPECT_EQ(s.tensor_count, 39u);
  // 2 x (512 x 256) embeddings/output + 4 layers x (q 256x256, k/v 256x128, o 256x256,
  // 3 x 256x768 FFN, 2 norms) + output norm.
  EXPECT_EQ(s.parameters, 2u * 512 * 256 + 4u * (2 * 65536 + 2 * 32768 + 3 * 196608 + 512) + 256);
}

TEST_F(HeaderSummary, EverySharedModelIsNamedByItsFileType) {
  const std::pair<const char*, const char*> files[] = {
      {"synth-tiny-Q4_0.gguf", "Q4_0"},
      {"synth-tiny-Q4_1.gguf", "Q4_1"},
      {"synth-tiny-Q5_0.gguf", "Q5_0"},
      {"synth-tiny-Q5_1.gguf", "Q5_1"},
      {"synth-tiny-Q8_0.gguf", "Q8_0"},
      {"synth-tiny-Q4_K_M.gguf", "Q4_K_M"},
      {"synth-tiny-Q5_K_M.gguf", "Q5_K_M"},
      {"synth-tiny-Q6_K.gguf", "Q6_K"},
      {"synth-tiny-f16.gguf", "F16"},
      {"stories260K.gguf", "F32"},  // no file type: every matrix is F32
  };
  for (const auto& [file, quantization] : files) {
    EXPECT_EQ(read_header_summary((models_dir / file).string()).quantization, quantization) << file;
  }
}

// Malformed files are the reader's to diagnose (gguf_test covers each kind of damage); the
// summary passes its message on.
TEST_F(HeaderSummary, MalformedFilesRaiseTheReadersMessage) {
  EXPECT_NE(
      error_for(write_bytes("hello, this is plain text and not a model at all")).find("magic"),
      std::string::npos);
  std::string full;
  {
    std::ifstream in(models_dir / "stories260K.gguf", std::ios::binary);
    full.assign(std::istreambuf_iterator<char>(in), {});
  }
  EXPECT_FALSE(error_for(write_bytes(full.substr(0, full.size() / 2))).empty());
}

TEST_F(HeaderSummary, RequiresAnArchitecture) {
  writer w;
  w.set_uint32("general.file_type", 1);
  EXPECT_NE(error_for(write(w)).find("general.architecture"), std::string::npos);
}

TEST(FileTypeNames, NameLlamaCppsFileTypes) {
  EXPECT_EQ(file_type_name(7), "Q8_0");
  EXPECT_EQ(file_type_name(15), "Q4_K_M");
  EXPECT_EQ(file_type_name(17), "Q5_K_M");
  EXPECT_EQ(file_type_name(1000), "");
}

}  // namespace
}  // namespace rbee::gguf
