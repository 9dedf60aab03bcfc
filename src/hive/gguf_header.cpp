#include "hive/gguf_header.h"

#include <array>
#include <cstring>
#include <fstream>
#include <map>

#include <fmt/format.h>

namespace rbee::hive {
namespace {

constexpr uint32_t gguf_magic = 0x46554747;   // "GGUF" little-endian
constexpr uint64_t max_string_len = 1 << 24;  // metadata strings (chat templates can be large)
constexpr uint32_t max_dims = 4;              // GGML_MAX_DIMS
constexpr uint32_t max_array_depth = 4;

enum : uint32_t {
  t_uint8 = 0,
  t_int8 = 1,
  t_uint16 = 2,
  t_int16 = 3,
  t_uint32 = 4,
  t_int32 = 5,
  t_float32 = 6,
  t_bool = 7,
  t_string = 8,
  t_array = 9,
  t_uint64 = 10,
  t_int64 = 11,
  t_float64 = 12,
};

uint64_t scalar_size(uint32_t type) {
  switch (type) {
    case t_uint8:
    case t_int8:
    case t_bool:
      return 1;
    case t_uint16:
    case t_int16:
      return 2;
    case t_uint32:
    case t_int32:
    case t_float32:
      return 4;
    case t_uint64:
    case t_int64:
    case t_float64:
      return 8;
    default:
      return 0;
  }
}

// Sequential reader that knows the file size, so no count can make it read or allocate past
// the end.
class reader {
 public:
  explicit reader(const std::filesystem::path& path) : in_(path, std::ios::binary) {
    if (!in_) throw std::runtime_error("cannot open " + path.string());
    in_.seekg(0, std::ios::end);
    size_ = static_cast<uint64_t>(in_.tellg());
    in_.seekg(0);
  }
  uint64_t size() const { return size_; }
  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }

  void read(void* out, uint64_t n, const char* what) {
    if (n > remaining()) {
      throw gguf_header_error(fmt::format(
          "truncated GGUF: {} at offset {} needs {} bytes, file has {}", what, pos_, n, size_));
    }
    in_.read(static_cast<char*>(out), static_cast<std::streamsize>(n));
    if (!in_) throw gguf_header_error(fmt::format("read error at offset {} ({})", pos_, what));
    pos_ += n;
  }
  template <class T>
  T get(const char* what) {
    T v;
    read(&v, sizeof v, what);
    return v;
  }
  void skip(uint64_t n, const char* what) {
    if (n > remaining()) {
      throw gguf_header_error(fmt::format(
          "truncated GGUF: {} at offset {} needs {} bytes, file has {}", what, pos_, n, size_));
    }
    pos_ += n;
    in_.seekg(static_cast<std::streamoff>(pos_));
  }
  std::string string(const char* what) {
    uint64_t len = get<uint64_t>(what);
    if (len > max_string_len || len > remaining()) {
      throw gguf_header_error(
          fmt::format("{} at offset {} has an impossible length {}", what, pos_ - 8, len));
    }
    std::string s(len, '\0');
    read(s.data(), len, what);
    return s;
  }
  void skip_string(const char* what) {
    uint64_t len = get<uint64_t>(what);
    skip(len, what);
  }

 private:
  std::ifstream in_;
  uint64_t size_ = 0;
  uint64_t pos_ = 0;
};

// A metadata value as the summary needs it: integers, strings; other values are skipped.
struct value {
  std::optional<uint64_t> uint;
  std::optional<std::string> str;
};

void skip_value(reader& r, uint32_t type, uint32_t depth, const std::string& key) {
  if (type == t_string) {
    r.skip_string(key.c_str());
    return;
  }
  if (type == t_array) {
    if (depth >= max_array_depth)
      throw gguf_header_error("array nesting too deep in key '" + key + "'");
    uint32_t elem = r.get<uint32_t>("array type");
    uint64_t n = r.get<uint64_t>("array length");
    if (elem == t_string || elem == t_array) {
      // Each element takes at least 8 bytes, which bounds the loop by the file size.
      if (n > r.remaining() / 8) {
        throw gguf_header_error(
            fmt::format("array '{}' claims {} elements, more than the file holds", key, n));
      }
      for (uint64_t i = 0; i < n; ++i) skip_value(r, elem, depth + 1, key);
      return;
    }
    uint64_t sz = scalar_size(elem);
    if (sz == 0)
      throw gguf_header_error(fmt::format("array '{}' has unknown element type {}", key, elem));
    if (n > r.remaining() / sz) {
      throw gguf_header_error(
          fmt::format("array '{}' claims {} elements, more than the file holds", key, n));
    }
    r.skip(n * sz, key.c_str());
    return;
  }
  uint64_t sz = scalar_size(type);
  if (sz == 0)
    throw gguf_header_error(fmt::format("key '{}' has unknown value type {}", key, type));
  r.skip(sz, key.c_str());
}

value read_value(reader& r, uint32_t type, const std::string& key) {
  value v;
  switch (type) {
    case t_uint8:
      v.uint = r.get<uint8_t>(key.c_str());
      break;
    case t_uint16:
      v.uint = r.get<uint16_t>(key.c_str());
      break;
    case t_uint32:
      v.uint = r.get<uint32_t>(key.c_str());
      break;
    case t_uint64:
      v.uint = r.get<uint64_t>(key.c_str());
      break;
    case t_int8:
    case t_int16:
    case t_int32:
    case t_int64: {
      int64_t x = 0;
      if (type == t_int8) x = r.get<int8_t>(key.c_str());
      if (type == t_int16) x = r.get<int16_t>(key.c_str());
      if (type == t_int32) x = r.get<int32_t>(key.c_str());
      if (type == t_int64) x = r.get<int64_t>(key.c_str());
      if (x < 0) throw gguf_header_error(fmt::format("key '{}' is negative ({})", key, x));
      v.uint = static_cast<uint64_t>(x);
      break;
    }
    case t_string:
      v.str = r.string(key.c_str());
      break;
    default:
      skip_value(r, type, 0, key);
  }
  return v;
}

}  // namespace

std::string file_type_name(uint32_t file_type) {
  static const std::map<uint32_t, std::string> names = {
      {0, "F32"},      {1, "F16"},      {2, "Q4_0"},    {3, "Q4_1"},    {7, "Q8_0"},
      {8, "Q5_0"},     {9, "Q5_1"},     {10, "Q2_K"},   {11, "Q3_K_S"}, {12, "Q3_K_M"},
      {13, "Q3_K_L"},  {14, "Q4_K_S"},  {15, "Q4_K_M"}, {16, "Q5_K_S"}, {17, "Q5_K_M"},
      {18, "Q6_K"},    {19, "IQ2_XXS"}, {20, "IQ2_XS"}, {21, "Q2_K_S"}, {22, "IQ3_XS"},
      {23, "IQ3_XXS"}, {24, "IQ1_S"},   {25, "IQ4_NL"}, {26, "IQ3_S"},  {27, "IQ3_M"},
      {28, "IQ2_S"},   {29, "IQ2_M"},   {30, "IQ4_XS"}, {31, "IQ1_M"},  {32, "BF16"}};
  auto it = names.find(file_type);
  return it == names.end() ? "" : it->second;
}

std::string tensor_type_name(uint32_t type) {
  static const std::map<uint32_t, std::string> names = {
      {0, "F32"},   {1, "F16"},   {2, "Q4_0"},  {3, "Q4_1"},  {6, "Q5_0"},
      {7, "Q5_1"},  {8, "Q8_0"},  {9, "Q8_1"},  {10, "Q2_K"}, {11, "Q3_K"},
      {12, "Q4_K"}, {13, "Q5_K"}, {14, "Q6_K"}, {15, "Q8_K"}, {24, "I8"},
      {25, "I16"},  {26, "I32"},  {27, "I64"},  {28, "F64"},  {30, "BF16"}};
  auto it = names.find(type);
  return it == names.end() ? "" : it->second;
}

gguf_summary read_gguf_header(const std::filesystem::path& path) {
  reader r(path);
  gguf_summary s;
  s.file_size = r.size();
  if (r.size() < 24) {
    throw gguf_header_error(
        fmt::format("not a GGUF file: {} bytes is too small for a header", r.size()));
  }
  if (r.get<uint32_t>("magic") != gguf_magic)
    throw gguf_header_error("not a GGUF file (bad magic)");
  s.version = r.get<uint32_t>("version");
  if (s.version != 2 && s.version != 3) {
    throw gguf_header_error(
        fmt::format("unsupported GGUF version {} (supported: 2, 3)", s.version));
  }
  uint64_t n_tensors = r.get<uint64_t>("tensor count");
  uint64_t n_kv = r.get<uint64_t>("metadata count");
  // Each key/value takes at least 8 (key length) + 4 (type) bytes; each tensor info at least
  // 8+4+8+4.
  if (n_kv > r.remaining() / 12) {
    throw gguf_header_error(fmt::format("metadata count {} is more than the file can hold", n_kv));
  }
  if (n_tensors > r.remaining() / 24) {
    throw gguf_header_error(
        fmt::format("tensor count {} is more than the file can hold", n_tensors));
  }
  s.tensor_count = n_tensors;

  std::map<std::string, value> wanted;
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = r.string("metadata key");
    uint32_t type = r.get<uint32_t>("metadata type");
    bool interesting = key.starts_with("general.") || key.ends_with(".context_length") ||
                       key.ends_with(".block_count") || key.ends_with(".embedding_length") ||
                       key.ends_with(".attention.head_count") ||
                       key.ends_with(".attention.head_count_kv");
    if (interesting) {
      wanted[key] = read_value(r, type, key);
    } else {
      skip_value(r, type, 0, key);
    }
  }

  auto str = [&](const std::string& key) -> std::string {
    auto it = wanted.find(key);
    return it != wanted.end() && it->second.str ? *it->second.str : "";
  };
  auto uint = [&](const std::string& key) -> std::optional<uint64_t> {
    auto it = wanted.find(key);
    if (it == wanted.end()) return std::nullopt;
    return it->second.uint;
  };
  s.architecture = str("general.architecture");
  if (s.architecture.empty()) throw gguf_header_error("GGUF has no general.architecture");
  s.name = str("general.name");
  const std::string& a = s.architecture;
  s.context_length = uint(a + ".context_length").value_or(0);
  s.block_count = uint(a + ".block_count").value_or(0);
  s.embedding_length = uint(a + ".embedding_length").value_or(0);
  s.head_count = uint(a + ".attention.head_count").value_or(0);
  s.head_count_kv = uint(a + ".attention.head_count_kv").value_or(s.head_count);
  if (auto ft = uint("general.file_type"); ft && *ft <= UINT32_MAX)
    s.file_type = static_cast<uint32_t>(*ft);

  // Tensor infos: name, dims, type, offset. Parameters = sum of element counts.
  std::map<uint32_t, uint64_t> elements_by_type;
  for (uint64_t i = 0; i < n_tensors; ++i) {
    std::string name = r.string("tensor name");
    uint32_t n_dims = r.get<uint32_t>("tensor dims");
    if (n_dims == 0 || n_dims > max_dims) {
      throw gguf_header_error(
          fmt::format("tensor '{}' has {} dimensions (1..{} allowed)", name, n_dims, max_dims));
    }
    uint64_t elements = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      uint64_t dim = r.get<uint64_t>("tensor dim");
      if (dim == 0 || dim > (uint64_t{1} << 40) || elements > UINT64_MAX / dim) {
        throw gguf_header_error(
            fmt::format("tensor '{}' has an impossible shape (dim {} = {})", name, d, dim));
      }
      elements *= dim;
    }
    uint32_t type = r.get<uint32_t>("tensor type");
    if (tensor_type_name(type).empty()) {
      throw gguf_header_error(fmt::format("tensor '{}' has unknown type id {}", name, type));
    }
    uint64_t offset = r.get<uint64_t>("tensor offset");
    if (offset >= r.size()) {
      throw gguf_header_error(
          fmt::format("tensor '{}' data offset {} is past the end of the file ({} bytes)", name,
                      offset, r.size()));
    }
    if (s.parameters > UINT64_MAX - elements) throw gguf_header_error("parameter count overflows");
    s.parameters += elements;
    if (n_dims >= 2) elements_by_type[type] += elements;
  }

  if (s.file_type) s.quantization = file_type_name(*s.file_type);
  if (s.quantization.empty()) {
    // No (known) file type: name the type that holds most matrix weights.
    uint64_t best = 0;
    for (auto [type, count] : elements_by_type) {
      if (count > best) {
        best = count;
        s.quantization = tensor_type_name(type);
      }
    }
  }
  return s;
}

}  // namespace rbee::hive
