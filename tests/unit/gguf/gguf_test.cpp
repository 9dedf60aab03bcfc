// GGUF reader/writer: the shared real files, writer round trips, and one test per kind of
// damage a file can have (each must be a format_error naming the problem, never a crash).
#include "gguf/gguf.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <numbers>
#include <optional>
#include <random>
#include <system_error>

namespace rbee::gguf {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::StartsWith;

const fs::path models_dir = RBEE_SHARED_MODELS_DIR;

// A fresh directory under the system temp dir, removed with everything in it.
class temp_dir {
 public:
  temp_dir() {
    std::string tmpl = (fs::temp_directory_path() / "rbee-gguf-test-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) throw std::system_error(errno, std::generic_category(), tmpl);
    path_ = tmpl;
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  fs::path operator/(const std::string& name) const { return path_ / name; }

 private:
  fs::path path_;
};

std::vector<uint8_t> read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const fs::path& path, std::span<const uint8_t> bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

// The format_error message of parsing `bytes`; a test failure when it parses or throws
// anything else.
std::string parse_error(std::span<const uint8_t> bytes) {
  try {
    file::parse(bytes);
  } catch (const format_error& e) {
    return e.what();
  }
  ADD_FAILURE() << "parsed without error";
  return {};
}

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> out(n);
  for (uint8_t& b : out) b = static_cast<uint8_t>(rng());
  return out;
}

// ---------------------------------------------------------------------------------------------
// The real files (facts from models/README.md and the llama2.c stories260K config).

TEST(GgufShared, Stories260KMetadata) {
  file f = file::open(models_dir / "stories260K.gguf");
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_uint("llama.context_length"), 2048u);
  EXPECT_EQ(f.get_uint("llama.embedding_length"), 64u);
  EXPECT_EQ(f.get_uint("llama.block_count"), 5u);
  EXPECT_EQ(f.get_uint("llama.attention.head_count"), 8u);
  EXPECT_EQ(f.get_uint("llama.attention.head_count_kv"), 4u);
  EXPECT_EQ(f.get_int("llama.attention.head_count_kv"), 4);
  EXPECT_NEAR(*f.get_float("llama.attention.layer_norm_rms_epsilon"), 1e-5, 1e-9);
  EXPECT_EQ(f.get_string("tokenizer.ggml.model"), "llama");
  EXPECT_EQ(f.get_uint("tokenizer.ggml.bos_token_id"), 1u);
  EXPECT_EQ(f.get_uint("tokenizer.ggml.eos_token_id"), 2u);

  const array_value* tokens = f.get_array("tokenizer.ggml.tokens");
  ASSERT_NE(tokens, nullptr);
  EXPECT_EQ(tokens->element_type, value_type::string);
  EXPECT_EQ(tokens->size(), 512u);
  EXPECT_EQ(tokens->strings[1], "<s>");
  EXPECT_EQ(tokens->strings[2], "</s>");
  const array_value* scores = f.get_array("tokenizer.ggml.scores");
  ASSERT_NE(scores, nullptr);
  EXPECT_EQ(scores->element_type, value_type::float32);
  EXPECT_EQ(scores->floats.size(), 512u);

  EXPECT_EQ(f.get_string("no.such.key"), std::nullopt);
  EXPECT_EQ(f.get_array("no.such.key"), nullptr);
}

TEST(GgufShared, Stories260KTensors) {
  file f = file::open(models_dir / "stories260K.gguf");
  // token_embd, output_norm, output and 9 per layer x 5 layers, all F32.
  ASSERT_EQ(f.tensors().size(), 3u + 9u * 5u);
  for (const tensor_info& t : f.tensors()) {
    EXPECT_EQ(t.type, tensor_type::f32) << t.name;
    EXPECT_EQ(t.n_bytes, static_cast<uint64_t>(t.n_elements()) * 4) << t.name;
    EXPECT_EQ(t.offset % f.alignment(), 0u) << t.name;
    EXPECT_GE(t.offset, f.data_offset()) << t.name;
    EXPECT_LE(t.offset + t.n_bytes, f.size_bytes()) << t.name;
    EXPECT_NE(t.data, nullptr);
  }
  const tensor_info* embd = f.find_tensor("token_embd.weight");
  ASSERT_NE(embd, nullptr);
  EXPECT_EQ(embd->shape, (std::vector<int64_t>{64, 512}));
  const tensor_info* wq = f.find_tensor("blk.4.attn_q.weight");
  ASSERT_NE(wq, nullptr);
  EXPECT_EQ(wq->shape, (std::vector<int64_t>{64, 64}));
  EXPECT_EQ(f.find_tensor("blk.5.attn_q.weight"), nullptr);

  // A copy keeps the mapping alive after the original is gone.
  auto original = std::make_optional(std::move(f));
  file copy = *original;
  const uint8_t* data = copy.find_tensor("output_norm.weight")->data;
  const std::vector<uint8_t> before(data, data + 256);
  original.reset();
  EXPECT_EQ(std::memcmp(data, before.data(), before.size()), 0);
}

// maps(): the tensors of an opened file lie in its mapping, nothing outside it does, and bytes
// given to parse() are the caller's, never the file's to drop.
TEST(GgufShared, MapsOnlyWhatOpenMapped) {
  const fs::path path = models_dir / "stories260K.gguf";
  const file f = file::open(path);
  const tensor_info& t = *f.find_tensor("output_norm.weight");
  EXPECT_TRUE(f.maps(t.data, t.n_bytes));
  const tensor_info& last = f.tensors().back();
  const uint8_t* end = last.data + last.n_bytes;
  EXPECT_TRUE(f.maps(last.data, static_cast<size_t>(end - last.data)));
  EXPECT_FALSE(f.maps(last.data, static_cast<size_t>(end - last.data) + f.size_bytes()));
  const uint8_t outside = 0;
  EXPECT_FALSE(f.maps(&outside, 1));

  std::ifstream in(path, std::ios::binary);
  const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), {});
  const file parsed = file::parse(bytes);
  EXPECT_FALSE(parsed.maps(parsed.find_tensor("output_norm.weight")->data, 4));
}

struct synth_case {
  const char* file;
  std::map<tensor_type, int> types;
};

class GgufSynth : public ::testing::TestWithParam<synth_case> {};

TEST_P(GgufSynth, TypesAndShapesAsTheReadmeSays) {
  const synth_case& c = GetParam();
  file f = file::open(models_dir / c.file);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_uint("llama.embedding_length"), 256u);
  EXPECT_EQ(f.get_uint("llama.block_count"), 4u);
  EXPECT_EQ(f.get_uint("llama.feed_forward_length"), 768u);
  EXPECT_EQ(f.get_uint("llama.attention.head_count"), 8u);
  EXPECT_EQ(f.get_uint("llama.attention.head_count_kv"), 4u);
  EXPECT_EQ(f.get_array("tokenizer.ggml.tokens")->size(), 512u);

  std::map<tensor_type, int> types;
  for (const tensor_info& t : f.tensors()) ++types[t.type];
  EXPECT_EQ(types, c.types);

  // Same names and shapes as the F16 original; norms are F32 and close to 1.
  file original = file::open(models_dir / "synth-tiny-f16.gguf");
  ASSERT_EQ(f.tensors().size(), original.tensors().size());
  for (const tensor_info& t : original.tensors()) {
    const tensor_info* q = f.find_tensor(t.name);
    ASSERT_NE(q, nullptr) << t.name;
    EXPECT_EQ(q->shape, t.shape) << t.name;
  }
  const tensor_info* norm = f.find_tensor("output_norm.weight");
  ASSERT_NE(norm, nullptr);
  ASSERT_EQ(norm->type, tensor_type::f32);
  ASSERT_EQ(norm->shape, (std::vector<int64_t>{256}));
  double sum = 0;
  for (int64_t i = 0; i < 256; ++i) {
    float x;
    std::memcpy(&x, norm->data + i * 4, 4);
    sum += x;
  }
  EXPECT_NEAR(sum / 256, 1.0, 0.2);
}

INSTANTIATE_TEST_SUITE_P(
    Readme, GgufSynth,
    ::testing::Values(
        synth_case{"synth-tiny-f16.gguf", {{tensor_type::f16, 30}, {tensor_type::f32, 9}}},
        synth_case{"synth-tiny-Q8_0.gguf", {{tensor_type::q8_0, 30}, {tensor_type::f32, 9}}},
        synth_case{"synth-tiny-Q4_0.gguf",
                   {{tensor_type::q4_0, 29}, {tensor_type::q6_k, 1}, {tensor_type::f32, 9}}},
        synth_case{"synth-tiny-Q4_1.gguf",
                   {{tensor_type::q4_1, 29}, {tensor_type::q6_k, 1}, {tensor_type::f32, 9}}},
        synth_case{"synth-tiny-Q5_0.gguf",
                   {{tensor_type::q5_0, 29}, {tensor_type::q6_k, 1}, {tensor_type::f32, 9}}},
        synth_case{"synth-tiny-Q5_1.gguf",
                   {{tensor_type::q5_1, 29}, {tensor_type::q6_k, 1}, {tensor_type::f32, 9}}},
        synth_case{"synth-tiny-Q4_K_M.gguf",
                   {{tensor_type::q4_k, 25}, {tensor_type::q6_k, 5}, {tensor_type::f32, 9}}},
        synth_case{"synth-tiny-Q5_K_M.gguf",
                   {{tensor_type::q5_k, 25}, {tensor_type::q6_k, 5}, {tensor_type::f32, 9}}},
        synth_case{"synth-tiny-Q6_K.gguf", {{tensor_type::q6_k, 30}, {tensor_type::f32, 9}}}));

TEST(GgufShared, VocabOnlyFiles) {
  file spm = file::open(models_dir / "tokenizer" / "ggml-vocab-llama-spm.gguf");
  EXPECT_TRUE(spm.tensors().empty());
  EXPECT_EQ(spm.get_string("tokenizer.ggml.model"), "llama");
  EXPECT_EQ(spm.get_array("tokenizer.ggml.tokens")->size(), 32000u);
  EXPECT_EQ(spm.get_array("tokenizer.ggml.scores")->floats.size(), 32000u);
  const array_value* token_type = spm.get_array("tokenizer.ggml.token_type");
  ASSERT_NE(token_type, nullptr);
  EXPECT_EQ(token_type->element_type, value_type::int32);
  EXPECT_EQ(token_type->ints.size(), 32000u);
  EXPECT_EQ(spm.get_bool("tokenizer.ggml.add_bos_token"), true);

  // GPT-2: 50257 tokens, 50000 merges; the file ends right after the metadata.
  file gpt2 = file::open(models_dir / "tokenizer" / "ggml-vocab-gpt-2.gguf");
  EXPECT_EQ(gpt2.get_string("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(gpt2.get_array("tokenizer.ggml.tokens")->size(), 50257u);
  EXPECT_EQ(gpt2.get_array("tokenizer.ggml.merges")->strings.size(), 50000u);
  EXPECT_TRUE(gpt2.tensors().empty());
}

TEST(GgufShared, OpenErrorsNameThePath) {
  try {
    file::open("/nonexistent-rbee-dir/model.gguf");
    ADD_FAILURE() << "opened a missing file";
  } catch (const std::system_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("/nonexistent-rbee-dir/model.gguf"));
    EXPECT_EQ(e.code(), std::errc::no_such_file_or_directory);
  }
  temp_dir dir;
  try {
    fs::create_directory(dir / "a-dir.gguf");
    file::open(dir / "a-dir.gguf");
    ADD_FAILURE() << "opened a directory";
  } catch (const format_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("a-dir.gguf: not a regular file"));
  }
  write_bytes(dir / "empty.gguf", {});
  try {
    file::open(dir / "empty.gguf");
    ADD_FAILURE() << "opened an empty file";
  } catch (const format_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("empty.gguf: header: truncated: magic"));
  }
}

// A copy of stories260K cut inside the header, the kv pairs, the tensor infos and the data.
TEST(GgufShared, TruncatedStories260KCopies) {
  const fs::path original = models_dir / "stories260K.gguf";
  const std::vector<uint8_t> bytes = read_bytes(original);
  file whole = file::parse(bytes);
  const uint64_t data = whole.data_offset();
  temp_dir dir;
  const std::vector<std::pair<uint64_t, std::string>> cuts = {
      {3, "header: truncated: magic"},
      {6, "header: truncated: version"},
      {20, "header: truncated: kv count"},
      {30, "header: kv count 19 exceeds what the remaining 6 bytes can hold"},
      {2000, "key 'tokenizer.ggml.tokens': array of 512 string needs at least"},
      {5000, "key 'tokenizer.ggml.tokens': truncated: array string"},
      {data - 100, "truncated"},
      {data + 1000, "extends past end of file"},
      {bytes.size() / 2, "extends past end of file"},
      {bytes.size() - 1, "tensor 'blk.4.ffn_norm.weight': data"},
  };
  for (const auto& [size, expected] : cuts) {
    const fs::path cut = dir / ("cut-" + std::to_string(size) + ".gguf");
    write_bytes(cut, std::span(bytes).first(size));
    try {
      file::open(cut);
      ADD_FAILURE() << "cut at " << size << " parsed";
    } catch (const format_error& e) {
      EXPECT_THAT(e.what(), StartsWith("gguf: " + cut.string() + ": ")) << size;
      EXPECT_THAT(e.what(), HasSubstr(expected)) << size;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Writer round trip

array_value ints(value_type t, std::vector<int64_t> v) {
  return {t, std::move(v), {}, {}, {}};
}
array_value floats(value_type t, std::vector<double> v) {
  return {t, {}, std::move(v), {}, {}};
}

// One metadata entry of every type, arrays of every element type, nested arrays.
std::vector<metadata_entry> every_value_type() {
  std::vector<metadata_entry> m = {
      {"t.uint8", value_type::uint8, uint64_t{200}},
      {"t.int8", value_type::int8, int64_t{-100}},
      {"t.uint16", value_type::uint16, uint64_t{60000}},
      {"t.int16", value_type::int16, int64_t{-30000}},
      {"t.uint32", value_type::uint32, uint64_t{4000000000}},
      {"t.int32", value_type::int32, int64_t{-2000000000}},
      {"t.float32", value_type::float32, 1.5},
      {"t.bool", value_type::boolean, true},
      {"t.string", value_type::string, std::string("h\xc3\xa9llo, w\0rld", 13)},
      {"t.uint64", value_type::uint64, uint64_t{(1ull << 63) + 5}},
      {"t.int64", value_type::int64, int64_t{-(1ll << 62)}},
      {"t.float64", value_type::float64, std::numbers::pi},
      {"t.empty_string", value_type::string, std::string()},
  };
  auto add_array = [&](std::string key, array_value a) {
    m.push_back({std::move(key), value_type::array, std::move(a)});
  };
  add_array("a.uint8", ints(value_type::uint8, {0, 1, 255}));
  add_array("a.int8", ints(value_type::int8, {-128, 0, 127}));
  add_array("a.uint16", ints(value_type::uint16, {0, 65535}));
  add_array("a.int16", ints(value_type::int16, {-32768, 32767}));
  add_array("a.uint32", ints(value_type::uint32, {0, 4294967295}));
  add_array("a.int32", ints(value_type::int32, {-2147483648, 2147483647}));
  add_array("a.uint64", ints(value_type::uint64, {0, -1}));  // -1: the bits of UINT64_MAX
  add_array("a.int64", ints(value_type::int64, {INT64_MIN, INT64_MAX}));
  add_array("a.bool", ints(value_type::boolean, {1, 0, 1}));
  add_array("a.float32", floats(value_type::float32, {0.25, -2.0, static_cast<double>(3e38f)}));
  add_array("a.float64", floats(value_type::float64, {std::numbers::e, -1e-300}));
  add_array("a.string", {value_type::string, {}, {}, {"<s>", "", "\xe2\x96\x81the"}, {}});
  add_array("a.empty", ints(value_type::int32, {}));
  array_value nested{value_type::array, {}, {}, {}, {}};
  nested.arrays.push_back(ints(value_type::int16, {1, -2}));
  nested.arrays.push_back({value_type::string, {}, {}, {"x", "yz"}, {}});
  array_value deeper{value_type::array, {}, {}, {}, {}};
  deeper.arrays.push_back(floats(value_type::float64, {0.5}));
  nested.arrays.push_back(deeper);
  add_array("a.nested", nested);
  return m;
}

struct test_tensor {
  std::string name;
  tensor_type type;
  std::vector<int64_t> shape;
};

const std::vector<test_tensor> every_tensor_type = {
    {"f32", tensor_type::f32, {3}},  // not a multiple of anything: padding follows
    {"f16", tensor_type::f16, {5, 3}},    {"bf16", tensor_type::bf16, {7, 2, 2}},
    {"q8_0", tensor_type::q8_0, {64, 3}}, {"q4_0", tensor_type::q4_0, {32, 2, 1, 3}},
    {"q4_1", tensor_type::q4_1, {96}},    {"q5_0", tensor_type::q5_0, {32, 5}},
    {"q5_1", tensor_type::q5_1, {64, 1}}, {"q4_k", tensor_type::q4_k, {256, 2}},
    {"q5_k", tensor_type::q5_k, {512}},   {"q6_k", tensor_type::q6_k, {256, 3}},
};

TEST(GgufWriter, RoundTripsEveryValueAndTensorType) {
  const std::vector<metadata_entry> metadata = every_value_type();
  writer w;
  for (const metadata_entry& e : metadata) w.set(e);
  std::vector<std::vector<uint8_t>> data;
  for (size_t i = 0; i < every_tensor_type.size(); ++i) {
    const test_tensor& t = every_tensor_type[i];
    data.push_back(random_bytes(writer::tensor_bytes(t.type, t.shape), static_cast<uint32_t>(i)));
    w.add_tensor(t.name, t.type, t.shape, data.back());
  }
  const std::vector<uint8_t> lazy_bytes =
      random_bytes(writer::tensor_bytes(tensor_type::q8_0, std::vector<int64_t>{32, 4}), 99);
  size_t fill_calls = 0;
  w.add_tensor_lazy("lazy", tensor_type::q8_0, {32, 4}, [&](std::span<uint8_t> out) {
    ++fill_calls;
    ASSERT_EQ(out.size(), lazy_bytes.size());
    std::memcpy(out.data(), lazy_bytes.data(), out.size());
  });

  temp_dir dir;
  w.write(dir / "all.gguf");
  EXPECT_EQ(fill_calls, 1u);
  file f = file::open(dir / "all.gguf");

  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  ASSERT_EQ(f.metadata().size(), metadata.size());
  for (size_t i = 0; i < metadata.size(); ++i) {
    EXPECT_EQ(f.metadata()[i].key, metadata[i].key);  // insertion order
    EXPECT_EQ(f.metadata()[i].type, metadata[i].type) << metadata[i].key;
    EXPECT_TRUE(f.metadata()[i].v == metadata[i].v) << metadata[i].key;
  }

  ASSERT_EQ(f.tensors().size(), every_tensor_type.size() + 1);
  uint64_t expected_offset = f.data_offset();
  for (size_t i = 0; i <= every_tensor_type.size(); ++i) {
    const tensor_info& t = f.tensors()[i];
    // llama.cpp requires each tensor right after the previous one, padded to the alignment.
    EXPECT_EQ(t.offset, expected_offset) << t.name;
    expected_offset += (t.n_bytes + 31) / 32 * 32;
    const bool lazy = i == every_tensor_type.size();
    const std::vector<uint8_t>& expected = lazy ? lazy_bytes : data[i];
    EXPECT_EQ(t.name, lazy ? "lazy" : every_tensor_type[i].name);
    EXPECT_EQ(t.type, lazy ? tensor_type::q8_0 : every_tensor_type[i].type);
    EXPECT_EQ(t.shape, (lazy ? std::vector<int64_t>{32, 4} : every_tensor_type[i].shape));
    EXPECT_EQ(t.offset % 32, 0u) << t.name;
    ASSERT_EQ(t.n_bytes, expected.size()) << t.name;
    EXPECT_EQ(std::memcmp(t.data, expected.data(), expected.size()), 0) << t.name;
  }
  // Padded after the last tensor too.
  EXPECT_EQ(f.size_bytes(), expected_offset);
}

TEST(GgufWriter, CustomAlignmentAndVersion2) {
  writer w;
  w.set_uint32("general.alignment", 256);
  w.set_string("general.architecture", "llama");
  const std::vector<uint8_t> a = random_bytes(4 * 5, 1);
  const std::vector<uint8_t> b = random_bytes(34, 2);
  w.add_tensor("a", tensor_type::f32, {5}, a);
  w.add_tensor("b", tensor_type::q8_0, {32}, b);
  temp_dir dir;
  w.write(dir / "aligned.gguf");
  std::vector<uint8_t> bytes = read_bytes(dir / "aligned.gguf");
  file f = file::parse(bytes);
  EXPECT_EQ(f.alignment(), 256u);
  EXPECT_EQ(f.data_offset() % 256, 0u);
  EXPECT_EQ(f.tensors()[0].offset, f.data_offset());
  EXPECT_EQ(f.tensors()[1].offset, f.data_offset() + 256);
  EXPECT_EQ(std::memcmp(f.tensors()[1].data, b.data(), b.size()), 0);

  // v2 has the same layout as v3 (both 64-bit counts).
  bytes[4] = 2;
  file v2 = file::parse(bytes);
  EXPECT_EQ(v2.version(), 2u);
  EXPECT_EQ(v2.tensors().size(), 2u);
}

TEST(GgufWriter, SetReplacesInPlace) {
  writer w;
  w.set_string("a", "1");
  w.set_uint32("b", 2);
  w.set_float32("a", 3.0f);
  temp_dir dir;
  w.write(dir / "x.gguf");
  file f = file::open(dir / "x.gguf");
  ASSERT_EQ(f.metadata().size(), 2u);
  EXPECT_EQ(f.metadata()[0].key, "a");
  EXPECT_EQ(f.get_float("a"), 3.0);
  EXPECT_EQ(f.get_uint("b"), 2u);
}

TEST(GgufWriter, RejectsMisuse) {
  writer w;
  std::vector<uint8_t> data(64 * 4);
  EXPECT_THROW(w.set("k", uint64_t{256}, value_type::uint8), std::invalid_argument);
  EXPECT_THROW(w.set("k", int64_t{-1}, value_type::uint32), std::invalid_argument);
  EXPECT_THROW(w.set("k", int64_t{128}, value_type::int8), std::invalid_argument);
  EXPECT_THROW(w.set("k", uint64_t{1}, value_type::string), std::invalid_argument);
  EXPECT_THROW(w.set("k", 1.0, value_type::int32), std::invalid_argument);
  EXPECT_THROW(w.set("", true, value_type::boolean), std::invalid_argument);
  EXPECT_THROW(w.set_array("k", ints(value_type::uint8, {256})), std::invalid_argument);
  EXPECT_THROW(w.set_array("k", ints(value_type::boolean, {2})), std::invalid_argument);
  EXPECT_THROW(w.set_uint32("general.alignment", 48), std::invalid_argument);
  EXPECT_THROW(w.set_uint64("general.alignment", 64), std::invalid_argument);

  EXPECT_THROW(w.add_tensor("t", tensor_type::f32, {32}, data), std::invalid_argument);
  EXPECT_THROW(w.add_tensor("t", tensor_type::q8_0, {48, 2}, data), std::invalid_argument);
  EXPECT_THROW(w.add_tensor("t", tensor_type::f32, {0, 64}, data), std::invalid_argument);
  EXPECT_THROW(w.add_tensor("t", tensor_type::f32, {}, data), std::invalid_argument);
  EXPECT_THROW(w.add_tensor("t", tensor_type::f32, {4, 4, 4, 1, 1}, data), std::invalid_argument);
  EXPECT_THROW(w.add_tensor(std::string(64, 'n'), tensor_type::f32, {64}, data),
               std::invalid_argument);
  EXPECT_THROW(w.add_tensor_lazy("t", tensor_type::q8_k, {256}, [](std::span<uint8_t>) {}),
               std::invalid_argument);
  w.add_tensor("t", tensor_type::f32, {16, 4}, data);
  try {
    w.add_tensor("t", tensor_type::f32, {64}, data);
    ADD_FAILURE() << "duplicate tensor accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), HasSubstr("'t': duplicate tensor name"));
  }
}

TEST(GgufWriter, IoErrorsAreReportedAndPartialFilesRemoved) {
  writer w;
  w.set_string("general.architecture", "llama");
  w.add_tensor_lazy("big", tensor_type::f32, {1024, 1024}, [](std::span<uint8_t>) {});
  try {
    w.write("/nonexistent-rbee-dir/out.gguf");
    ADD_FAILURE() << "wrote into a missing directory";
  } catch (const std::system_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("/nonexistent-rbee-dir/out.gguf"));
  }
  if (fs::exists("/dev/full")) {
    EXPECT_THROW(w.write("/dev/full"), std::system_error);  // every write fails with ENOSPC
  }

  writer failing;
  failing.add_tensor_lazy("t", tensor_type::f32, {4},
                          [](std::span<uint8_t>) { throw std::runtime_error("generator failed"); });
  temp_dir dir;
  EXPECT_THROW(failing.write(dir / "partial.gguf"), std::runtime_error);
  EXPECT_FALSE(fs::exists(dir / "partial.gguf"));
}

TEST(GgufFile, TypedLookups) {
  writer w;
  for (const metadata_entry& e : every_value_type()) w.set(e);
  temp_dir dir;
  w.write(dir / "values.gguf");
  file f = file::open(dir / "values.gguf");

  EXPECT_EQ(f.get_uint("t.uint8"), 200u);
  EXPECT_EQ(f.get_int("t.uint8"), 200);
  EXPECT_EQ(f.get_int("t.int8"), -100);
  EXPECT_EQ(f.get_uint("t.uint32"), 4000000000u);
  EXPECT_EQ(f.get_int("t.int64"), -(1ll << 62));
  EXPECT_EQ(f.get_uint("t.uint64"), (1ull << 63) + 5);
  EXPECT_EQ(f.get_float("t.float32"), 1.5);
  EXPECT_EQ(f.get_float("t.float64"), std::numbers::pi);
  EXPECT_EQ(f.get_bool("t.bool"), true);
  EXPECT_EQ(f.get_string("t.empty_string"), "");
  EXPECT_EQ(f.get_array("a.nested")->size(), 3u);
  EXPECT_EQ(f.get_array("a.nested")->arrays[2].arrays[0].floats, std::vector<double>{0.5});
  EXPECT_EQ(f.get_uint("absent"), std::nullopt);

  auto error_of = [](auto&& lookup) -> std::string {
    try {
      lookup();
    } catch (const format_error& e) {
      return e.what();
    }
    return "no error";
  };
  EXPECT_THAT(error_of([&] { f.get_uint("t.int8"); }),
              HasSubstr("'t.int8': value -100 is negative"));
  EXPECT_THAT(error_of([&] { f.get_int("t.uint64"); }), HasSubstr("exceeds int64"));
  EXPECT_THAT(error_of([&] { f.get_uint("t.string"); }),
              HasSubstr("'t.string': type string, expected an integer"));
  EXPECT_THAT(error_of([&] { f.get_float("t.uint32"); }), HasSubstr("expected float32 or float64"));
  EXPECT_THAT(error_of([&] { f.get_string("t.bool"); }), HasSubstr("type bool, expected string"));
  EXPECT_THAT(error_of([&] { f.get_bool("t.uint8"); }), HasSubstr("expected bool"));
  EXPECT_THAT(error_of([&] { f.get_array("t.string"); }), HasSubstr("expected array"));
}

// ---------------------------------------------------------------------------------------------
// Damaged files: mutations of a small writer-made file, located by searching for its strings.

class GgufCorrupt : public ::testing::Test {
 protected:
  void SetUp() override {
    writer w;
    w.set_string("general.architecture", "llama");
    w.set_uint32("general.alignment", 32);
    w.set_bool("flag", true);
    w.set_string("key.a", "x");
    w.set_string("key.b", "y");
    w.set_array("arr", ints(value_type::uint32, {1, 2, 3}));
    w.set_array("deep", ints(value_type::uint8, std::vector<int64_t>(108, 0)));
    w.add_tensor("t.a", tensor_type::f32, {8, 2}, random_bytes(64, 1));
    w.add_tensor("t.b", tensor_type::q8_0, {64, 2}, random_bytes(136, 2));
    temp_dir dir;
    w.write(dir / "base.gguf");
    base = read_bytes(dir / "base.gguf");
    file f = file::parse(base);  // the undamaged file reads
    ASSERT_EQ(f.tensors().size(), 2u);
    data_end = f.tensors()[1].offset + f.tensors()[1].n_bytes;
  }

  // Offset just past the first occurrence of `s` (a key or tensor name) in the file.
  size_t after(std::string_view s) const {
    auto it = std::search(base.begin(), base.end(), s.begin(), s.end());
    EXPECT_NE(it, base.end()) << s;
    return static_cast<size_t>(it - base.begin()) + s.size();
  }
  // The length field in front of string `s`.
  size_t length_of(std::string_view s) const { return after(s) - s.size() - 8; }

  std::string with_u32(size_t pos, uint32_t v) {
    std::vector<uint8_t> b = base;
    std::memcpy(b.data() + pos, &v, 4);
    return parse_error(b);
  }
  std::string with_u64(size_t pos, uint64_t v) {
    std::vector<uint8_t> b = base;
    std::memcpy(b.data() + pos, &v, 8);
    return parse_error(b);
  }
  std::string with_bytes(size_t pos, std::string_view s) {
    std::vector<uint8_t> b = base;
    std::memcpy(b.data() + pos, s.data(), s.size());
    return parse_error(b);
  }
  // Tensor info fields after the name: n_dims u32, dims u64[n_dims], type u32, offset u64.
  size_t n_dims_of(std::string_view name) const { return after(name); }
  size_t dim_of(std::string_view name, int i) const { return after(name) + 4 + 8 * i; }
  size_t type_of(std::string_view name, int n_dims) const { return after(name) + 4 + 8 * n_dims; }
  size_t offset_of(std::string_view name, int n_dims) const { return type_of(name, n_dims) + 4; }

  std::vector<uint8_t> base;
  uint64_t data_end = 0;
};

TEST_F(GgufCorrupt, BadMagic) {
  EXPECT_THAT(with_bytes(0, "GGML"), HasSubstr("header: bad magic 'GGML' (expected 'GGUF')"));
}

TEST_F(GgufCorrupt, UnsupportedVersions) {
  EXPECT_THAT(with_u32(4, 1), HasSubstr("unsupported version 1 (only GGUF v2 and v3"));
  EXPECT_THAT(with_u32(4, 4), HasSubstr("unsupported version 4"));
  EXPECT_THAT(with_u32(4, 0x03000000), HasSubstr("big-endian"));
}

TEST_F(GgufCorrupt, AbsurdCounts) {
  EXPECT_THAT(with_u64(8, 1ull << 60), HasSubstr("header: tensor count 1152921504606846976"));
  EXPECT_THAT(with_u64(16, ~0ull), HasSubstr("header: kv count 18446744073709551615"));
}

TEST_F(GgufCorrupt, AbsurdStringLengths) {
  EXPECT_THAT(with_u64(24, 1ull << 60),
              HasSubstr("kv 0: key length 1152921504606846976 exceeds the"));
  EXPECT_THAT(with_u64(length_of("llama"), 1ull << 60),
              HasSubstr("key 'general.architecture': string value length 1152921504606846976"));
  EXPECT_THAT(with_u64(length_of("t.b"), ~0ull), HasSubstr("tensor 1: tensor name length"));
  EXPECT_THAT(with_u64(after("arr") + 4 + 4, 1ull << 61),
              HasSubstr("key 'arr': array of 2305843009213693952 uint32 needs at least"));
}

TEST_F(GgufCorrupt, UnknownValueTypes) {
  EXPECT_THAT(with_u32(after("flag"), 13), HasSubstr("key 'flag': unknown value type 13"));
  EXPECT_THAT(with_u32(after("arr") + 4, 99),
              HasSubstr("key 'arr': unknown array element type 99"));
  EXPECT_THAT(with_bytes(after("flag") + 4, "\x02"), HasSubstr("key 'flag': invalid bool value 2"));
}

TEST_F(GgufCorrupt, ArraysNestedTooDeep) {
  // Replace the 108-byte uint8 array by nine levels of one-element arrays (120 bytes).
  std::string nested;
  auto put = [&](auto v) { nested.append(reinterpret_cast<const char*>(&v), sizeof v); };
  for (int i = 0; i < 9; ++i) {
    put(uint32_t{9});
    put(uint64_t{1});
  }
  put(uint32_t{0});
  put(uint64_t{0});
  ASSERT_EQ(nested.size(), 12u + 108u);
  EXPECT_THAT(with_bytes(after("deep") + 4, nested),
              HasSubstr("key 'deep': arrays nested deeper than 8"));
}

TEST_F(GgufCorrupt, DuplicateKeyAndTensorName) {
  EXPECT_THAT(with_bytes(after("key.b") - 1, "a"), HasSubstr("key 'key.a': duplicate key"));
  EXPECT_THAT(with_bytes(after("t.b") - 1, "a"), HasSubstr("tensor 't.a': duplicate tensor name"));
}

TEST_F(GgufCorrupt, UnknownTensorTypes) {
  EXPECT_THAT(with_u32(type_of("t.a", 2), 99),
              HasSubstr("tensor 't.a': unsupported tensor type id 99 (unknown)"));
  EXPECT_THAT(with_u32(type_of("t.a", 2), 16),
              HasSubstr("unsupported tensor type id 16 (IQ2_XXS)"));
  EXPECT_THAT(with_u32(type_of("t.b", 2), 15), HasSubstr("unsupported tensor type id 15 (Q8_K)"));
}

TEST_F(GgufCorrupt, BadDimensions) {
  EXPECT_THAT(with_u32(n_dims_of("t.a"), 5), HasSubstr("tensor 't.a': n_dims 5 out of range 1..4"));
  EXPECT_THAT(with_u32(n_dims_of("t.a"), 0), HasSubstr("n_dims 0 out of range"));
  EXPECT_THAT(with_u64(dim_of("t.a", 1), 0), HasSubstr("tensor 't.a': dimension 1 is 0"));
  EXPECT_THAT(with_u64(dim_of("t.a", 0), ~0ull - 7), HasSubstr("dimension 0 is -8"));
  EXPECT_THAT(with_u64(dim_of("t.a", 1), 1ull << 62), HasSubstr("element count overflows int64"));
  EXPECT_THAT(with_u64(dim_of("t.b", 0), 48),
              HasSubstr("tensor 't.b': dimension 0 (48) is not a multiple of the q8_0 block "
                        "size 32"));
}

TEST_F(GgufCorrupt, OffsetsOutsideTheFileOrMisaligned) {
  EXPECT_THAT(with_u64(offset_of("t.b", 2), 1ull << 40), HasSubstr("tensor 't.b': data [offset "));
  EXPECT_THAT(
      with_u64(offset_of("t.b", 2), 1ull << 40),
      HasSubstr("136 bytes] extends past end of file (size " + std::to_string(base.size()) + ")"));
  EXPECT_THAT(with_u64(offset_of("t.b", 2), ~0ull - 31),
              HasSubstr("tensor 't.b': data offset 18446744073709551584 overflows"));
  EXPECT_THAT(with_u64(offset_of("t.b", 2), 68),
              HasSubstr("tensor 't.b': data offset 68 is not a multiple of the alignment 32"));
  // A larger f32 tensor whose data runs past the end.
  EXPECT_THAT(with_u64(dim_of("t.a", 1), 1000), HasSubstr("tensor 't.a': data [offset"));
}

TEST_F(GgufCorrupt, BadAlignment) {
  const size_t value = after("general.alignment") + 4;
  EXPECT_THAT(with_u32(value, 48),
              HasSubstr("key 'general.alignment': alignment 48 is not a non-zero power of two"));
  EXPECT_THAT(with_u32(value, 0), HasSubstr("alignment 0 is not a non-zero power of two"));
  EXPECT_THAT(with_u32(value - 4, static_cast<uint32_t>(value_type::float32)),
              HasSubstr("key 'general.alignment': type float32, expected an integer"));
}

TEST_F(GgufCorrupt, MetadataMemoryIsBounded) {
  // 34 Mi uint8 elements fit in the (padded) file but would take 272 MiB as int64_t.
  std::vector<uint8_t> b = base;
  const uint64_t n = uint64_t{34} << 20;
  b.resize(b.size() + n);
  std::memcpy(b.data() + after("deep") + 8, &n, 8);
  EXPECT_THAT(parse_error(b), HasSubstr("key 'deep': array length 35651584 needs more than the "
                                        "256 MiB allowed for metadata in memory"));
}

TEST_F(GgufCorrupt, TruncatedAtEveryOffset) {
  for (size_t n = 0; n < data_end; ++n) {
    std::string msg = parse_error(std::span(base).first(n));
    ASSERT_THAT(msg, StartsWith("gguf: ")) << n;
    const bool named = msg.find("truncated") != std::string::npos ||
                       msg.find("extends past end of file") != std::string::npos ||
                       msg.find("bytes can hold") != std::string::npos ||
                       msg.find("bytes left in the file") != std::string::npos;
    EXPECT_TRUE(named) << n << ": " << msg;
  }
  // Cutting only the padding after the last tensor loses nothing.
  EXPECT_NO_THROW(file::parse(std::span(base).first(data_end)));
}

TEST_F(GgufCorrupt, RandomDamageNeverCrashes) {
  std::mt19937 rng(7);
  int parsed = 0;
  for (int i = 0; i < 3000; ++i) {
    std::vector<uint8_t> b = base;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int j = 0; j < flips; ++j) b[rng() % data_end] = static_cast<uint8_t>(rng());
    try {
      file f = file::parse(b);
      for (const tensor_info& t : f.tensors()) ASSERT_LE(t.offset + t.n_bytes, b.size());
      ++parsed;
    } catch (const format_error& e) {
      ASSERT_THAT(e.what(), StartsWith("gguf: "));
    }
  }
  // Most flips land in tensor data, which the reader does not interpret.
  EXPECT_GT(parsed, 0);
}

}  // namespace
}  // namespace rbee::gguf
