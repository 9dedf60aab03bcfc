#include "hive/gguf_header.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <string>

namespace rbee::hive {
namespace {

// Builds GGUF headers byte by byte, so every malformation can be produced on purpose.
struct gguf_bytes {
  std::string b;
  template <class T>
  gguf_bytes& raw(T v) {
    b.append(reinterpret_cast<const char*>(&v), sizeof v);
    return *this;
  }
  gguf_bytes& str(std::string_view s) {
    raw<uint64_t>(s.size());
    b.append(s);
    return *this;
  }
  gguf_bytes& header(uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    return raw<uint32_t>(0x46554747).raw(version).raw(n_tensors).raw(n_kv);
  }
  gguf_bytes& kv_string(std::string_view key, std::string_view value) {
    return str(key).raw<uint32_t>(8).str(value);
  }
  gguf_bytes& kv_u32(std::string_view key, uint32_t value) {
    return str(key).raw<uint32_t>(4).raw(value);
  }
  gguf_bytes& tensor(std::string_view name, std::vector<uint64_t> dims, uint32_t type,
                     uint64_t offset) {
    str(name).raw<uint32_t>(static_cast<uint32_t>(dims.size()));
    for (auto d : dims) raw(d);
    return raw(type).raw(offset);
  }
};

class GgufHeader : public ::testing::Test {
 protected:
  std::filesystem::path write(const std::string& bytes) {
    path_ = std::filesystem::temp_directory_path() /
            ("hive-gguf-" + std::to_string(::getpid()) + ".gguf");
    std::ofstream(path_, std::ios::binary) << bytes;
    return path_;
  }
  void TearDown() override { std::filesystem::remove(path_); }
  // The error message for a malformed file (fails the test if it parses).
  std::string error_for(const std::string& bytes) {
    try {
      read_gguf_header(write(bytes));
    } catch (const gguf_header_error& e) {
      return e.what();
    }
    ADD_FAILURE() << "parsed a malformed file";
    return "";
  }
  std::filesystem::path path_;
};

// A valid little llama-like header: 2 tensors, the keys the catalog and preflight need, plus an
// array the reader has to skip.
gguf_bytes small_model() {
  gguf_bytes g;
  g.header(3, 2, 8)
      .kv_string("general.architecture", "llama")
      .kv_string("general.name", "tiny")
      .kv_u32("general.file_type", 15)
      .kv_u32("llama.context_length", 4096)
      .kv_u32("llama.block_count", 2)
      .kv_u32("llama.embedding_length", 64)
      .kv_u32("llama.attention.head_count", 8);
  g.str("tokenizer.ggml.tokens")
      .raw<uint32_t>(9)
      .raw<uint32_t>(8)
      .raw<uint64_t>(2)
      .str("<s>")
      .str("</s>");
  g.tensor("token_embd.weight", {64, 100}, 12, 0).tensor("output_norm.weight", {64}, 0, 4096);
  g.b.append(8192, '\0');
  return g;
}

TEST_F(GgufHeader, ReadsTheKeysTheCatalogNeeds) {
  auto s = read_gguf_header(write(small_model().b));
  EXPECT_EQ(s.version, 3u);
  EXPECT_EQ(s.architecture, "llama");
  EXPECT_EQ(s.name, "tiny");
  EXPECT_EQ(s.context_length, 4096u);
  EXPECT_EQ(s.block_count, 2u);
  EXPECT_EQ(s.embedding_length, 64u);
  EXPECT_EQ(s.head_count, 8u);
  EXPECT_EQ(s.head_count_kv, 8u);  // absent: same as head_count
  EXPECT_EQ(s.quantization, "Q4_K_M");
  EXPECT_EQ(s.parameters, 64u * 100 + 64);
  EXPECT_EQ(s.tensor_count, 2u);
  EXPECT_EQ(s.file_size, small_model().b.size());
}

TEST_F(GgufHeader, QuantizationFallsBackToTheDominantTensorType) {
  gguf_bytes g;
  g.header(2, 3, 1).kv_string("general.architecture", "qwen2");
  g.tensor("a", {32, 32}, 8, 0).tensor("b", {32, 64}, 8, 0).tensor("c", {32, 16}, 1, 0);
  g.b.append(64, '\0');
  auto s = read_gguf_header(write(g.b));
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

TEST_F(GgufHeader, RejectsWhatIsNotAGguf) {
  EXPECT_NE(error_for("hello, this is plain text and not a model at all").find("bad magic"),
            std::string::npos);
  EXPECT_NE(error_for("GGUF").find("too small"), std::string::npos);
  gguf_bytes v1;
  v1.header(1, 0, 0);
  EXPECT_NE(error_for(v1.b).find("unsupported GGUF version 1"), std::string::npos);
}

TEST_F(GgufHeader, RejectsTruncatedFilesNamingWhatIsMissing) {
  auto full = small_model().b;
  // Cut inside the metadata: the reader must notice, never read past the end.
  for (size_t cut : {size_t{30}, size_t{60}, size_t{150}, size_t{250}}) {
    auto msg = error_for(full.substr(0, cut));
    EXPECT_FALSE(msg.empty()) << "cut at " << cut;
  }
}

TEST_F(GgufHeader, RejectsImpossibleCountsAndSizes) {
  gguf_bytes many_kv;
  many_kv.header(3, 0, uint64_t{1} << 60);
  many_kv.b.append(64, '\0');
  EXPECT_NE(error_for(many_kv.b).find("metadata count"), std::string::npos);

  gguf_bytes many_tensors;
  many_tensors.header(3, uint64_t{1} << 50, 0);
  many_tensors.b.append(64, '\0');
  EXPECT_NE(error_for(many_tensors.b).find("tensor count"), std::string::npos);

  gguf_bytes long_string;
  long_string.header(3, 0, 1).raw<uint64_t>(uint64_t{1} << 40);
  long_string.b.append(64, '\0');
  EXPECT_NE(error_for(long_string.b).find("impossible length"), std::string::npos);

  gguf_bytes huge_array;
  huge_array.header(3, 0, 1).str("x").raw<uint32_t>(9).raw<uint32_t>(6).raw<uint64_t>(uint64_t{1}
                                                                                      << 62);
  huge_array.b.append(64, '\0');
  EXPECT_NE(error_for(huge_array.b).find("more than the file holds"), std::string::npos);

  gguf_bytes bad_dims;
  bad_dims.header(3, 1, 1)
      .kv_string("general.architecture", "llama")
      .tensor("t", {1, 2, 3, 4, 5}, 0, 0);
  bad_dims.b.append(64, '\0');
  EXPECT_NE(error_for(bad_dims.b).find("dimensions"), std::string::npos);

  gguf_bytes bad_type;
  bad_type.header(3, 1, 1).kv_string("general.architecture", "llama").tensor("t", {4}, 99, 0);
  bad_type.b.append(64, '\0');
  EXPECT_NE(error_for(bad_type.b).find("unknown type id 99"), std::string::npos);

  gguf_bytes bad_value_type;
  bad_value_type.header(3, 0, 1).str("k").raw<uint32_t>(77);
  bad_value_type.b.append(64, '\0');
  EXPECT_NE(error_for(bad_value_type.b).find("unknown value type"), std::string::npos);
}

TEST_F(GgufHeader, RequiresAnArchitecture) {
  gguf_bytes g;
  g.header(3, 0, 1).kv_u32("general.file_type", 1);
  g.b.append(32, '\0');
  EXPECT_NE(error_for(g.b).find("general.architecture"), std::string::npos);
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
