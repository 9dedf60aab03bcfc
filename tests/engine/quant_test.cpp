// Tensor types against llama.cpp: the synthetic model quantized by llama.cpp's own quantizer
// must dequantize (with our reference code) to the F16 original within each format's usual
// error, and our quantizers must reproduce llama.cpp's bytes (exactly for the simple types).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "engine/quant.h"
#include "engine/tensor_types.h"
#include "gguf/gguf.h"

namespace rbee::engine {
namespace {

const std::string models_dir = RBEE_SHARED_MODELS_DIR;

double rel_rms(const std::vector<float>& got, const std::vector<float>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    num += (static_cast<double>(got[i]) - want[i]) * (static_cast<double>(got[i]) - want[i]);
    den += static_cast<double>(want[i]) * want[i];
  }
  return std::sqrt(num / den);
}

std::vector<float> dequantize(const gguf::tensor_info& t) {
  std::vector<float> out(t.n_elements());
  dequantize_row_reference(t.type, t.data, out.data(), t.n_elements());
  return out;
}

// Relative RMS error bounds for N(0, sigma) weights. Measured worst cases over the synth-tiny
// tensors: Q8_0 0.54 %, Q6_K 1.78 %, Q5_K 3.63 %, Q5_1 3.80 %, Q5_0 4.29 %, Q4_K 7.18 %,
// Q4_1 7.86 %, Q4_0 8.63 %, IQ4_XS 7.69 %, IQ4_NL 7.63 %, Q3_K 15.15 %, Q2_K 29.73 %; the bounds
// add ~15 % margin. A layout mistake gives ~100 %.
double error_bound(tensor_type t) {
  switch (t) {
    case tensor_type::f16:
      return 0.0005;
    case tensor_type::bf16:
      return 0.004;
    case tensor_type::q8_0:
    case tensor_type::q8_1:
      return 0.007;
    case tensor_type::q8_k:
      return 0.012;  // one scale per 256: outliers cost more
    case tensor_type::q6_k:
      return 0.021;
    case tensor_type::q5_k:
      return 0.042;
    case tensor_type::q5_1:
      return 0.044;
    case tensor_type::q5_0:
      return 0.05;
    case tensor_type::q4_k:
      return 0.083;
    case tensor_type::q4_1:
      return 0.09;
    case tensor_type::q4_0:
      return 0.1;
    case tensor_type::iq4_xs:
    case tensor_type::iq4_nl:
      return 0.089;
    case tensor_type::q3_k:
      return 0.175;
    case tensor_type::q2_k:
      return 0.34;
    default:
      return 1e-7;
  }
}

TEST(quant_tensor_types, traits_and_row_size) {
  EXPECT_EQ(traits_of(tensor_type::q4_0).type_size, 18u);
  EXPECT_EQ(traits_of(tensor_type::q4_k).block_size, 256u);
  EXPECT_EQ(row_size(tensor_type::q6_k, 512), 420u);
  EXPECT_EQ(row_size(tensor_type::f16, 7), 14u);
  EXPECT_EQ(row_size(tensor_type::q8_0, 64), 68u);
  EXPECT_EQ(to_string(tensor_type::q5_k), "q5_k");
  EXPECT_EQ(traits_of(tensor_type::q2_k).type_size, 84u);
  EXPECT_EQ(traits_of(tensor_type::q3_k).type_size, 110u);
  EXPECT_EQ(traits_of(tensor_type::iq4_nl).type_size, 18u);
  EXPECT_EQ(traits_of(tensor_type::iq4_nl).block_size, 32u);
  EXPECT_EQ(traits_of(tensor_type::iq4_xs).type_size, 136u);
  EXPECT_EQ(row_size(tensor_type::q3_k, 512), 220u);
  ASSERT_TRUE(traits_of(uint32_t{23}).has_value());
  EXPECT_EQ(traits_of(uint32_t{23})->name, "iq4_xs");
  EXPECT_FALSE(traits_of(uint32_t{16}).has_value());  // iq2_xxs: not supported
  EXPECT_EQ(gguf::file_type_name(10), "Q2_K");
  EXPECT_EQ(gguf::file_type_name(21), "Q2_K_S");
  EXPECT_EQ(gguf::file_type_name(25), "IQ4_NL");
  EXPECT_EQ(gguf::file_type_name(30), "IQ4_XS");
  EXPECT_FALSE(traits_of(uint32_t{1000}).has_value());
  ASSERT_TRUE(traits_of(uint32_t{30}).has_value());
  EXPECT_EQ(traits_of(uint32_t{30})->name, "bf16");
}

TEST(quant_fp16, round_trips_every_half_and_rounds_to_nearest_even) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = fp16_to_fp32(static_cast<fp16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(fp16_to_fp32(fp32_to_fp16(f))));
      continue;
    }
    ASSERT_EQ(fp32_to_fp16(f), h) << "half 0x" << std::hex << h;
  }
  EXPECT_EQ(fp16_to_fp32(0x3c00), 1.0f);
  EXPECT_EQ(fp16_to_fp32(0xc000), -2.0f);
  EXPECT_EQ(fp16_to_fp32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(fp32_to_fp16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);  // tie: to even
  EXPECT_EQ(fp32_to_fp16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
  EXPECT_EQ(fp32_to_fp16(65520.0f), 0x7c00);  // rounds to infinity
  EXPECT_EQ(fp32_to_fp16(65519.0f), 0x7bff);
  EXPECT_EQ(fp32_to_fp16(std::ldexp(1.0f, -25)), 0x0000);  // tie between 0 and min subnormal
  EXPECT_EQ(fp32_to_fp16(std::ldexp(1.5f, -25)), 0x0001);
}

TEST(quant_bf16, converts_with_rounding) {
  EXPECT_EQ(bf16_to_fp32(fp32_to_bf16(1.5f)), 1.5f);
  EXPECT_EQ(fp32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(fp32_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);  // tie: to even
  EXPECT_EQ(fp32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
  EXPECT_TRUE(std::isnan(bf16_to_fp32(fp32_to_bf16(NAN))));
}

class quant_synth_model : public ::testing::TestWithParam<const char*> {};

// Every tensor of llama.cpp's quantized file against the F16 original, with our dequantizer.
TEST_P(quant_synth_model, llama_cpp_tensors_dequantize_to_the_f16_original) {
  const auto f16 = gguf::file::open(models_dir + "/synth-tiny-f16.gguf");
  const auto q = gguf::file::open(models_dir + "/synth-tiny-" + std::string(GetParam()) + ".gguf");
  std::map<tensor_type, double> worst;
  int n_quantized = 0;
  for (const auto& t : q.tensors()) {
    const gguf::tensor_info* orig = f16.find_tensor(t.name);
    ASSERT_NE(orig, nullptr) << t.name;
    ASSERT_EQ(orig->n_elements(), t.n_elements()) << t.name;
    const double err = rel_rms(dequantize(t), dequantize(*orig));
    EXPECT_LT(err, error_bound(t.type)) << t.name << " " << to_string(t.type);
    worst[t.type] = std::max(worst[t.type], err);
    if (t.type != tensor_type::f32 && t.type != tensor_type::f16) ++n_quantized;
  }
  EXPECT_GE(n_quantized, 29);
  for (const auto& [type, err] : worst) {
    std::printf("  %s: %-5s worst relative RMS error %.4f %%\n", GetParam(),
                std::string(to_string(type)).c_str(), err * 100);
  }
}

// Our quantizer on the F16 original: same error range, and every block byte-identical to
// llama.cpp's.
TEST_P(quant_synth_model, our_quantizer_matches_llama_cpp) {
  const auto f16 = gguf::file::open(models_dir + "/synth-tiny-f16.gguf");
  const auto q = gguf::file::open(models_dir + "/synth-tiny-" + std::string(GetParam()) + ".gguf");
  std::map<tensor_type, std::pair<int64_t, int64_t>> blocks;  // identical, total
  for (const auto& t : q.tensors()) {
    if (t.type == tensor_type::f32) continue;
    const auto orig = dequantize(*f16.find_tensor(t.name));
    std::vector<uint8_t> ours(t.n_bytes);
    quantize_row(t.type, orig.data(), ours.data(), t.n_elements());
    std::vector<float> back(orig.size());
    dequantize_row_reference(t.type, ours.data(), back.data(), t.n_elements());
    const double our_err = rel_rms(back, orig);
    const double their_err = rel_rms(dequantize(t), orig);
    EXPECT_LT(our_err, their_err * 1.02 + 1e-4) << t.name << " " << to_string(t.type);

    const size_t bs = traits_of(t.type).type_size;
    auto& [same, total] = blocks[t.type];
    for (size_t off = 0; off < t.n_bytes; off += bs) {
      same += std::memcmp(ours.data() + off, t.data + off, bs) == 0;
      ++total;
    }
  }
  for (const auto& [type, counts] : blocks) {
    const double frac = static_cast<double>(counts.first) / counts.second;
    std::printf("  %s: %-5s %lld of %lld blocks byte-identical to llama.cpp (%.2f %%)\n",
                GetParam(), std::string(to_string(type)).c_str(),
                static_cast<long long>(counts.first), static_cast<long long>(counts.second),
                frac * 100);
    // Every quantizer does llama.cpp's float arithmetic in its order: exact, k-quants too.
    EXPECT_EQ(frac, 1.0) << to_string(type);
  }
}

INSTANTIATE_TEST_SUITE_P(llama_cpp_files, quant_synth_model,
                         ::testing::Values("Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K_M",
                                           "Q5_K_M", "Q6_K"));

// Round trip of random data for every type we can write, including ones no test file has.
TEST(quant_quantize_row, round_trip_error_is_in_the_formats_range) {
  const uint32_t seed = std::random_device{}();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  const int64_t n = 4096;
  std::vector<float> x(n);
  for (auto& v : x) v = dist(rng);
  const tensor_type types[] = {tensor_type::f32,    tensor_type::f16,   tensor_type::bf16,
                               tensor_type::q8_0,   tensor_type::q8_1,  tensor_type::q8_k,
                               tensor_type::q6_k,   tensor_type::q5_0,  tensor_type::q5_1,
                               tensor_type::q5_k,   tensor_type::q4_0,  tensor_type::q4_1,
                               tensor_type::q4_k,   tensor_type::q3_k,  tensor_type::q2_k,
                               tensor_type::iq4_nl, tensor_type::iq4_xs};
  for (const tensor_type type : types) {
    ASSERT_TRUE(can_quantize(type));
    std::vector<uint8_t> q(row_size(type, n));
    quantize_row(type, x.data(), q.data(), n);
    std::vector<float> back(n);
    dequantize_row_reference(type, q.data(), back.data(), n);
    EXPECT_LE(rel_rms(back, x), error_bound(type)) << to_string(type);
    const float dot = dot_reference(type, q.data(), x.data(), n);
    double want = 0;
    for (int64_t i = 0; i < n; ++i) want += static_cast<double>(back[i]) * x[i];
    EXPECT_NEAR(dot, want, std::fabs(want) * 1e-5) << to_string(type);
  }
}

TEST(quant_quantize_row, zero_rows_stay_zero) {
  const int64_t n = 512;
  std::vector<float> x(n, 0.0f);
  for (tensor_type type :
       {tensor_type::q4_0, tensor_type::q4_1, tensor_type::q5_0, tensor_type::q5_1,
        tensor_type::q8_0, tensor_type::q4_k, tensor_type::q5_k, tensor_type::q6_k,
        tensor_type::q8_k, tensor_type::q2_k, tensor_type::q3_k, tensor_type::iq4_nl,
        tensor_type::iq4_xs}) {
    std::vector<uint8_t> q(row_size(type, n));
    quantize_row(type, x.data(), q.data(), n);
    std::vector<float> back(n, 1.0f);
    dequantize_row_reference(type, q.data(), back.data(), n);
    for (float v : back) ASSERT_EQ(v, 0.0f) << to_string(type);
  }
}

// A fixed pseudo-random input with the shapes the scale searches branch on: blocks at scales
// from 2^-20 to 2^10, all-positive blocks (no negative minimum), constant and zero sub-blocks,
// single outliers. Integer arithmetic only, so it is the same on every platform.
std::vector<float> pinned_input(int64_t n) {
  uint64_t state = 0x9e3779b97f4a7c15u;
  auto next = [&state] {  // splitmix64
    uint64_t z = (state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
  };
  // Uniform in [-1, 1) with 24 bits; the sum of four is bell-shaped like real weights.
  auto uniform = [&] {
    return static_cast<float>(static_cast<int32_t>(next() >> 40) - (1 << 23)) /
           static_cast<float>(1 << 23);
  };
  std::vector<float> x(n);
  for (int64_t block = 0; block < n / qk_k; ++block) {
    const uint64_t shape = next();
    const float scale = std::ldexp(1.0f, static_cast<int>(shape % 31) - 20);
    const float offset = (shape >> 8) % 4 == 0 ? 2.0f : 0.0f;  // a quarter of blocks positive
    for (int i = 0; i < qk_k; ++i) {
      x[block * qk_k + i] = scale * ((uniform() + uniform() + uniform() + uniform()) / 4 + offset);
    }
    float* sub = &x[block * qk_k + static_cast<int>((shape >> 16) % 8) * 32];
    switch ((shape >> 24) % 8) {
      case 0:
        std::fill(sub, sub + 32, 0.0f);
        break;
      case 1:
        std::fill(sub, sub + 32, scale * 0.5f);
        break;
      case 2:
        sub[(shape >> 32) % 32] = scale * 40.0f;
        break;
      default:
        break;
    }
  }
  return x;
}

// FNV-1a over the bytes.
uint64_t fingerprint(const std::vector<uint8_t>& bytes) {
  uint64_t h = 0xcbf29ce484222325u;
  for (uint8_t b : bytes) h = (h ^ b) * 0x100000001b3u;
  return h;
}

// The quantizers' output bytes are pinned: a rewrite of a scale search must keep every byte
// (files written before and after stay identical). A changed fingerprint means changed output.
TEST(quant_quantize_row, output_bytes_are_pinned) {
  const int64_t n = 2048 * qk_k;
  const std::vector<float> x = pinned_input(n);
  const std::map<tensor_type, uint64_t> pinned = {
      {tensor_type::q4_0, 0x595341a2443bdfd8u},   {tensor_type::q4_1, 0x7663a7832834f503u},
      {tensor_type::q5_0, 0xe0314315bd02c5f8u},   {tensor_type::q5_1, 0xdab80255db5c73b8u},
      {tensor_type::q8_0, 0xce3374acac57829du},   {tensor_type::q8_1, 0xafb381270c5193a9u},
      {tensor_type::q4_k, 0x9084328b99c92b69u},   {tensor_type::q5_k, 0x73e215850063fffdu},
      {tensor_type::q6_k, 0xe269129ed5d1cd30u},   {tensor_type::q8_k, 0x85ddca5d351c0e51u},
      {tensor_type::f16, 0xcdbf363e1e600380u},    {tensor_type::bf16, 0x2f646dc5d7359acau},
      {tensor_type::q2_k, 0x1d5e4bf64bf14a2bu},   {tensor_type::q3_k, 0x7b7ed452460a5835u},
      {tensor_type::iq4_nl, 0x03e79187ba86c24du}, {tensor_type::iq4_xs, 0xe4247abb6eafb836u},
  };
  for (const auto& [type, want] : pinned) {
    std::vector<uint8_t> q(row_size(type, n));
    quantize_row(type, x.data(), q.data(), n);
    EXPECT_EQ(fingerprint(q), want) << to_string(type) << std::hex << " 0x" << fingerprint(q);
  }
}

std::vector<uint8_t> from_hex(std::string_view hex) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2)
    out.push_back(static_cast<uint8_t>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  return out;
}

// A block where two of q5_k's candidate fits have errors a rounding apart, so the order of
// the error's float operations decides: llama-quantize's bytes for it (a Q6_K block of
// blk.0.ffn_down of the synthetic TinyLlama, requantized to Q5_K by llama.cpp c392e50).
TEST(quant_quantize_row, q5_k_breaks_near_ties_as_llama_cpp_does) {
  const auto source = from_hex(
      "61763c11f2ba13fe203b6991d1025bb49c0a1f0143510781b42897997c97f07007a26de4b0ac5a0a73a8ad6449"
      "f5b9942b8f53769738e02fcec8a8990eff1add34ed924d189f91cad7b20ae17e45d0bad8576fc410b302d1fc45"
      "905a3fec1f5707efaa74346800494741d077809e26516ba3b4fc70ac3e4bb15f571b755d81c049a66102904ab5"
      "362aa96216286e199aa52966ce69943162ae6a5aa62a25da2af9627965b2a92cbacd55c599429cce4a96a6e9d3"
      "b799876c6a96771aa1899d606aab6e67436d65623a804c53345b5f7ede80");
  const auto llama_cpp = from_hex(
      "6903d612f0b6aeedeab1a1e3f6384cdf1da29bbe331c931a58b17a1ae9505dd032381b3438465a8a9151bdd339"
      "5850a8b66b80ddff882526dea1895daf4da1cc1c7b554eb820ea7e00b2b12283faae8e65792a776c03a5f0bb7a"
      "09bec7dc807db6ac3b0f09b2624765fa0076e7663c77b66f9744c1a36ba0355764b7df0a33e01857c29f6c8bfe"
      "00eaf63c89c27052f49709263ce8dacae5834f47de35c19343cfaa2a0fc4a0ee6625d350f3ccd7b52a");
  ASSERT_EQ(source.size(), sizeof(block_q6_k));
  ASSERT_EQ(llama_cpp.size(), sizeof(block_q5_k));
  std::vector<float> x(qk_k);
  dequantize_row_reference(tensor_type::q6_k, source.data(), x.data(), qk_k);
  std::vector<uint8_t> ours(sizeof(block_q5_k));
  quantize_row(tensor_type::q5_k, x.data(), ours.data(), qk_k);
  EXPECT_EQ(ours, llama_cpp);
}

// llama-quantize's output for synth-tiny-f16.gguf, as tensor fingerprints (the files are not
// checked in): "name type fnv1a64" lines of tests/engine/data/llama_cpp_quantize/<mix>.txt.
struct expected_tensor {
  std::string name;
  std::string type;
  uint64_t fingerprint;
};
std::vector<expected_tensor> llama_cpp_expectations(const std::string& mix) {
  std::ifstream in(std::string(RBEE_SOURCE_DIR) + "/tests/engine/data/llama_cpp_quantize/" + mix +
                   ".txt");
  std::vector<expected_tensor> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    expected_tensor e;
    fields >> e.name >> e.type >> std::hex >> e.fingerprint;
    out.push_back(e);
  }
  return out;
}

std::optional<tensor_type> type_named(const std::string& name) {
  for (uint32_t id = 0; id < 64; ++id) {
    const auto t = traits_of(id);
    if (t && t->name == name) return static_cast<tensor_type>(id);
  }
  return std::nullopt;
}

class quant_llama_cpp_mix : public ::testing::TestWithParam<const char*> {};

// Each tensor of llama-quantize's file, quantized from the F16 original by our quantizer: the
// same bytes (so llama.cpp's blocks are what we dequantize) within the format's error bound.
TEST_P(quant_llama_cpp_mix, our_quantizer_writes_llama_cpp_s_bytes) {
  const auto f16 = gguf::file::open(models_dir + "/synth-tiny-f16.gguf");
  const auto expected = llama_cpp_expectations(GetParam());
  ASSERT_EQ(expected.size(), f16.tensors().size()) << GetParam();
  std::map<tensor_type, double> worst;
  for (const expected_tensor& e : expected) {
    const gguf::tensor_info* orig = f16.find_tensor(e.name);
    ASSERT_NE(orig, nullptr) << e.name;
    const auto type = type_named(e.type);
    ASSERT_TRUE(type) << e.type;
    const std::vector<float> values = dequantize(*orig);
    const int64_t n_cols = orig->shape[0], n_rows = orig->n_elements() / n_cols;
    const size_t row_bytes = row_size(*type, n_cols);
    std::vector<uint8_t> ours(row_bytes * n_rows);
    for (int64_t r = 0; r < n_rows; ++r)
      quantize_row(*type, values.data() + r * n_cols, ours.data() + r * row_bytes, n_cols);
    EXPECT_EQ(fingerprint(ours), e.fingerprint) << GetParam() << " " << e.name << " " << e.type;
    std::vector<float> back(values.size());
    dequantize_row_reference(*type, ours.data(), back.data(), orig->n_elements());
    const double err = rel_rms(back, values);
    EXPECT_LT(err, error_bound(*type)) << e.name << " " << e.type;
    worst[*type] = std::max(worst[*type], err);
  }
  for (const auto& [type, err] : worst) {
    std::printf("  %s: %-6s worst relative RMS error %.4f %%\n", GetParam(),
                std::string(to_string(type)).c_str(), err * 100);
  }
}

INSTANTIATE_TEST_SUITE_P(llama_cpp_files, quant_llama_cpp_mix,
                         ::testing::Values("q2_k", "q3_k_s", "q3_k_m", "q3_k_l", "iq4_nl",
                                           "iq4_xs"));

}  // namespace
}  // namespace rbee::engine
