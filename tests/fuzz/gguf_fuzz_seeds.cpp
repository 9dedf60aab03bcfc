// Writes the seed corpus of gguf_fuzz: small, valid GGUF files from our own writer that
// cover every value type, every tensor type, a custom alignment and GGUF v2.
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "gguf/gguf.h"

namespace gguf = rbee::gguf;
using rbee::gguf::tensor_type;

namespace {

std::vector<uint8_t> pattern(uint64_t n, uint8_t seed) {
  std::vector<uint8_t> out(n);
  for (uint64_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(seed + i * 31);
  return out;
}

void add(gguf::writer& w, const std::string& name, tensor_type type, std::vector<int64_t> shape) {
  std::vector<uint8_t> data = pattern(gguf::writer::tensor_bytes(type, shape), uint8_t(name[0]));
  w.add_tensor(name, type, std::move(shape), data);
}

void every_value_type(gguf::writer& w) {
  using gguf::value_type;
  w.set("u8", uint64_t{7}, value_type::uint8);
  w.set("i8", int64_t{-7}, value_type::int8);
  w.set("u16", uint64_t{700}, value_type::uint16);
  w.set("i16", int64_t{-700}, value_type::int16);
  w.set("u32", uint64_t{70000}, value_type::uint32);
  w.set("i32", int64_t{-70000}, value_type::int32);
  w.set("u64", uint64_t{1} << 40, value_type::uint64);
  w.set("i64", -(int64_t{1} << 40), value_type::int64);
  w.set_float32("f32", 0.5f);
  w.set("f64", 0.25, value_type::float64);
  w.set_bool("b", true);
  w.set_string("s", "text");
  w.set_string_array("tokens", {"<unk>", "<s>", "</s>", "a"});
  w.set_array("scores", {value_type::float32, {}, {0, -1, -2, -3}, {}, {}});
  w.set_array("types", {value_type::int32, {2, 3, 3, 1}, {}, {}, {}});
  w.set_array("flags", {value_type::boolean, {0, 1}, {}, {}, {}});
  gguf::array_value nested{value_type::array, {}, {}, {}, {}};
  nested.arrays.push_back({value_type::uint16, {1, 2}, {}, {}, {}});
  nested.arrays.push_back({value_type::string, {}, {}, {"x"}, {}});
  w.set_array("nested", nested);
}

void write(const gguf::writer& w, const std::string& path) {
  w.write(path);
  std::printf("%s\n", path.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <corpus-dir>\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];

  write(gguf::writer{}, dir + "/empty");

  gguf::writer values;
  every_value_type(values);
  write(values, dir + "/values");

  gguf::writer model;
  model.set_string("general.architecture", "llama");
  model.set_uint32("llama.block_count", 1);
  add(model, "f32", tensor_type::f32, {4});
  add(model, "f16", tensor_type::f16, {2, 3});
  add(model, "bf16", tensor_type::bf16, {2, 1, 2});
  add(model, "q8_0", tensor_type::q8_0, {32, 1, 1, 2});
  add(model, "q4_0", tensor_type::q4_0, {32});
  add(model, "q4_1", tensor_type::q4_1, {32});
  add(model, "q5_0", tensor_type::q5_0, {32});
  add(model, "q5_1", tensor_type::q5_1, {32});
  add(model, "q4_k", tensor_type::q4_k, {256});
  add(model, "q5_k", tensor_type::q5_k, {256});
  add(model, "q6_k", tensor_type::q6_k, {256});
  write(model, dir + "/tensors");

  gguf::writer aligned;
  aligned.set_uint32("general.alignment", 64);
  add(aligned, "a", tensor_type::f32, {3});
  add(aligned, "b", tensor_type::q8_0, {32});
  write(aligned, dir + "/aligned");

  // v2 differs from v3 only in the version field.
  const std::string v3 = dir + "/tensors";
  std::ifstream in(v3, std::ios::binary);
  std::vector<char> bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  bytes[4] = 2;
  std::ofstream out(dir + "/tensors-v2", std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) {
    std::fprintf(stderr, "cannot write %s/tensors-v2\n", dir.c_str());
    return 1;
  }
  std::printf("%s/tensors-v2\n", dir.c_str());
  return 0;
}
