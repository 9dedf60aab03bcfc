#include "gguf/gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <sstream>
#include <system_error>
#include <unordered_set>

namespace rbee::gguf {

static_assert(std::endian::native == std::endian::little, "GGUF is read by memcpy: little-endian");

namespace {

constexpr uint32_t gguf_magic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr uint32_t max_value_type = static_cast<uint32_t>(value_type::float64);

template <typename... Args>
std::string cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

// Names from untrusted files go into messages: quoted, escaped and shortened.
std::string quote(std::string_view s) {
  constexpr size_t max_shown = 80;
  std::string out = "'";
  for (size_t i = 0; i < s.size() && i < max_shown; ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '\'') {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  if (s.size() > max_shown) out += "...";
  out += "'";
  return out;
}

// ggml's type names by id, so an unsupported type is named in the error ("Q2_K", "IQ4_XS").
std::string_view ggml_type_name(uint32_t id) {
  static constexpr std::string_view names[] = {"F32",
                                               "F16",
                                               "Q4_0",
                                               "Q4_1",
                                               "Q4_2 (removed)",
                                               "Q4_3 (removed)",
                                               "Q5_0",
                                               "Q5_1",
                                               "Q8_0",
                                               "Q8_1",
                                               "Q2_K",
                                               "Q3_K",
                                               "Q4_K",
                                               "Q5_K",
                                               "Q6_K",
                                               "Q8_K",
                                               "IQ2_XXS",
                                               "IQ2_XS",
                                               "IQ3_XXS",
                                               "IQ1_S",
                                               "IQ4_NL",
                                               "IQ3_S",
                                               "IQ2_S",
                                               "IQ4_XS",
                                               "I8",
                                               "I16",
                                               "I32",
                                               "I64",
                                               "F64",
                                               "IQ1_M",
                                               "BF16",
                                               "Q4_0_4_4 (removed)",
                                               "Q4_0_4_8 (removed)",
                                               "Q4_0_8_8 (removed)",
                                               "TQ1_0",
                                               "TQ2_0",
                                               "IQ4_NL_4_4 (removed)",
                                               "IQ4_NL_4_8 (removed)",
                                               "IQ4_NL_8_8 (removed)",
                                               "MXFP4"};
  return id < std::size(names) ? names[id] : "unknown";
}

// Traits of a type weights are stored in; q8_1/q8_k exist only as activations.
std::optional<type_traits> storage_traits(uint32_t id) {
  if (id == static_cast<uint32_t>(tensor_type::q8_1) ||
      id == static_cast<uint32_t>(tensor_type::q8_k)) {
    return std::nullopt;
  }
  return traits_of(id);
}

bool checked_mul(uint64_t a, uint64_t b, uint64_t& out) {
  return !__builtin_mul_overflow(a, b, &out);
}
bool checked_add(uint64_t a, uint64_t b, uint64_t& out) {
  return !__builtin_add_overflow(a, b, &out);
}

bool align_up(uint64_t x, uint64_t alignment, uint64_t& out) {
  if (!checked_add(x, alignment - 1, out)) return false;
  out -= out % alignment;
  return true;
}

bool is_integer(value_type t) {
  switch (t) {
    case value_type::uint8:
    case value_type::int8:
    case value_type::uint16:
    case value_type::int16:
    case value_type::uint32:
    case value_type::int32:
    case value_type::uint64:
    case value_type::int64:
      return true;
    default:
      return false;
  }
}

bool is_signed(value_type t) {
  return t == value_type::int8 || t == value_type::int16 || t == value_type::int32 ||
         t == value_type::int64;
}

bool is_float(value_type t) {
  return t == value_type::float32 || t == value_type::float64;
}

// Encoded size of one value of a fixed-size type; the minimum for strings and arrays.
uint64_t min_encoded_size(value_type t) {
  switch (t) {
    case value_type::uint8:
    case value_type::int8:
    case value_type::boolean:
      return 1;
    case value_type::uint16:
    case value_type::int16:
      return 2;
    case value_type::uint32:
    case value_type::int32:
    case value_type::float32:
      return 4;
    case value_type::uint64:
    case value_type::int64:
    case value_type::float64:
    case value_type::string:  // u64 length
      return 8;
    case value_type::array:  // u32 element type + u64 length
      return 12;
  }
  return 1;
}

// Bytes one array element takes in an array_value (strings add their length).
uint64_t element_memory(value_type t) {
  if (t == value_type::string) return sizeof(std::string);
  if (t == value_type::array) return sizeof(array_value);
  return 8;
}

// Range of an integer type, as signed/unsigned 64-bit bounds.
struct int_range {
  int64_t min;
  uint64_t max;
};
int_range range_of(value_type t) {
  switch (t) {
    case value_type::uint8:
      return {0, UINT8_MAX};
    case value_type::int8:
      return {INT8_MIN, INT8_MAX};
    case value_type::uint16:
      return {0, UINT16_MAX};
    case value_type::int16:
      return {INT16_MIN, INT16_MAX};
    case value_type::uint32:
      return {0, UINT32_MAX};
    case value_type::int32:
      return {INT32_MIN, INT32_MAX};
    case value_type::uint64:
      return {0, UINT64_MAX};
    case value_type::int64:
      return {INT64_MIN, INT64_MAX};
    default:
      return {0, 0};
  }
}

// Byte size of a tensor, or the reason it cannot have one. Shared by reader and writer.
struct size_result {
  uint64_t n_bytes = 0;
  std::string error;
};
size_result tensor_size(uint32_t type_id, std::span<const int64_t> shape) {
  if (shape.empty() || shape.size() > static_cast<size_t>(max_dims)) {
    return {0, cat("n_dims ", shape.size(), " out of range 1..", max_dims)};
  }
  uint64_t n = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] <= 0) return {0, cat("dimension ", i, " is ", shape[i], " (must be positive)")};
    if (!checked_mul(n, static_cast<uint64_t>(shape[i]), n) ||
        n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return {0, "element count overflows int64"};
    }
  }
  auto traits = storage_traits(type_id);
  if (!traits) {
    return {0, cat("unsupported tensor type id ", type_id, " (", ggml_type_name(type_id), ")")};
  }
  auto d0 = static_cast<uint64_t>(shape[0]);
  if (d0 % traits->block_size != 0) {
    return {0, cat("dimension 0 (", d0, ") is not a multiple of the ", traits->name, " block size ",
                   traits->block_size)};
  }
  uint64_t row_bytes = 0;
  uint64_t total = 0;
  if (!checked_mul(d0 / traits->block_size, traits->type_size, row_bytes) ||
      !checked_mul(row_bytes, n / d0, total)) {
    return {0, "byte size overflows uint64"};
  }
  return {total, {}};
}

}  // namespace

std::string_view to_string(value_type type) {
  switch (type) {
    case value_type::uint8:
      return "uint8";
    case value_type::int8:
      return "int8";
    case value_type::uint16:
      return "uint16";
    case value_type::int16:
      return "int16";
    case value_type::uint32:
      return "uint32";
    case value_type::int32:
      return "int32";
    case value_type::float32:
      return "float32";
    case value_type::boolean:
      return "bool";
    case value_type::string:
      return "string";
    case value_type::array:
      return "array";
    case value_type::uint64:
      return "uint64";
    case value_type::int64:
      return "int64";
    case value_type::float64:
      return "float64";
  }
  return "unknown";
}

size_t array_value::size() const {
  if (is_integer(element_type) || element_type == value_type::boolean) return ints.size();
  if (is_float(element_type)) return floats.size();
  if (element_type == value_type::string) return strings.size();
  return arrays.size();
}

int64_t tensor_info::n_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// ---------------------------------------------------------------------------------------------
// Reader

// Walks the image front to back; every read is bounds-checked and every count is bounded by
// the bytes left before anything is allocated for it.
class parser {
 public:
  parser(std::span<const uint8_t> bytes, std::string prefix)
      : bytes_(bytes), prefix_(std::move(prefix)) {}

  void run(file& f) {
    f.bytes_ = bytes_;
    where_ = "header";
    read_header(f);
    std::unordered_set<std::string_view> seen;  // views into the image: stable
    charge(n_kv_, sizeof(metadata_entry), "kv count");
    f.metadata_.reserve(n_kv_);
    for (uint64_t i = 0; i < n_kv_; ++i) {
      where_ = cat("kv ", i);
      std::string_view key = read_string("key", true);
      where_ = cat("key ", quote(key));
      if (key.empty()) fail("empty key");
      if (!seen.insert(key).second) fail("duplicate key");
      value_type type = read_type("value type");
      f.metadata_.push_back({std::string(key), type, read_value(type, 0)});
    }
    read_alignment(f);
    read_tensor_infos(f);
  }

 private:
  std::span<const uint8_t> bytes_;
  size_t pos_ = 0;
  std::string prefix_;  // "gguf: " or "gguf: <path>: "
  std::string where_;   // what is being read: "header", "key 'general.name'", "tensor 'x'"
  uint64_t n_tensors_ = 0;
  uint64_t n_kv_ = 0;
  uint64_t memory_ = 0;  // see charge()

  [[noreturn]] void fail(const std::string& msg) const {
    throw format_error(prefix_ + where_ + ": " + msg);
  }

  uint64_t remaining() const { return bytes_.size() - pos_; }

  // Counts what the parsed file will hold in memory before it is allocated: the file size
  // alone does not bound it (a uint8 array element becomes an int64_t).
  void charge(uint64_t n, uint64_t each, const char* what) {
    uint64_t bytes = 0;
    if (!checked_mul(n, each, bytes) || bytes > max_metadata_memory - memory_) {
      fail(cat(what, " ", n, " needs more than the ", max_metadata_memory >> 20,
               " MiB allowed for metadata in memory"));
    }
    memory_ += bytes;
  }

  const uint8_t* take(uint64_t n, const char* field) {
    if (n > remaining()) {
      fail(cat("truncated: ", field, " at offset ", pos_, " needs ", n, " bytes, file size ",
               bytes_.size()));
    }
    const uint8_t* p = bytes_.data() + pos_;
    pos_ += n;
    return p;
  }

  template <typename T>
  T read(const char* field) {
    T v;
    std::memcpy(&v, take(sizeof(T), field), sizeof(T));
    return v;
  }

  // `kept`: the string is copied into the result, so its bytes count against the budget.
  std::string_view read_string(const char* field, bool kept = false) {
    auto len = read<uint64_t>(field);
    if (len > remaining()) {
      fail(cat(field, " length ", len, " exceeds the ", remaining(), " bytes left in the file"));
    }
    if (kept) charge(1, len, field);
    return {reinterpret_cast<const char*>(take(len, field)), static_cast<size_t>(len)};
  }

  value_type read_type(const char* field) {
    auto t = read<uint32_t>(field);
    if (t > max_value_type) fail(cat("unknown ", field, " ", t));
    return static_cast<value_type>(t);
  }

  // The value's bits, sign-extended for signed types.
  uint64_t read_integer(value_type t) {
    switch (t) {
      case value_type::uint8:
        return read<uint8_t>("uint8 value");
      case value_type::int8:
        return static_cast<uint64_t>(int64_t{read<int8_t>("int8 value")});
      case value_type::uint16:
        return read<uint16_t>("uint16 value");
      case value_type::int16:
        return static_cast<uint64_t>(int64_t{read<int16_t>("int16 value")});
      case value_type::uint32:
        return read<uint32_t>("uint32 value");
      case value_type::int32:
        return static_cast<uint64_t>(int64_t{read<int32_t>("int32 value")});
      case value_type::uint64:
        return read<uint64_t>("uint64 value");
      case value_type::int64:
        return static_cast<uint64_t>(read<int64_t>("int64 value"));
      default:
        fail(cat("internal: ", to_string(t), " is not an integer type"));
    }
  }

  double read_float(value_type t) {
    if (t == value_type::float32) return read<float>("float32 value");
    return read<double>("float64 value");
  }

  bool read_bool() {
    auto b = read<uint8_t>("bool value");
    if (b > 1) fail(cat("invalid bool value ", int{b}));
    return b == 1;
  }

  value read_value(value_type t, int depth) {
    if (is_integer(t)) {
      uint64_t bits = read_integer(t);
      if (is_signed(t)) return static_cast<int64_t>(bits);
      return bits;
    }
    if (is_float(t)) return read_float(t);
    if (t == value_type::boolean) return read_bool();
    if (t == value_type::string) return std::string(read_string("string value", true));
    return read_array(depth + 1);
  }

  array_value read_array(int depth) {
    if (depth > max_array_depth) fail(cat("arrays nested deeper than ", max_array_depth));
    array_value a{read_type("array element type"), {}, {}, {}, {}};
    auto n = read<uint64_t>("array length");
    uint64_t min_size = min_encoded_size(a.element_type);
    if (n > remaining() / min_size) {
      fail(cat("array of ", n, " ", to_string(a.element_type), " needs at least ", n, " x ",
               min_size, " bytes, only ", remaining(), " bytes left in the file"));
    }
    charge(n, element_memory(a.element_type), "array length");
    if (is_integer(a.element_type)) {
      a.ints.reserve(n);
      for (uint64_t i = 0; i < n; ++i) {
        a.ints.push_back(static_cast<int64_t>(read_integer(a.element_type)));
      }
    } else if (is_float(a.element_type)) {
      a.floats.reserve(n);
      for (uint64_t i = 0; i < n; ++i) a.floats.push_back(read_float(a.element_type));
    } else if (a.element_type == value_type::boolean) {
      a.ints.reserve(n);
      for (uint64_t i = 0; i < n; ++i) a.ints.push_back(read_bool() ? 1 : 0);
    } else if (a.element_type == value_type::string) {
      a.strings.reserve(n);
      for (uint64_t i = 0; i < n; ++i) a.strings.emplace_back(read_string("array string", true));
    } else {
      a.arrays.reserve(n);
      for (uint64_t i = 0; i < n; ++i) a.arrays.push_back(read_array(depth + 1));
    }
    return a;
  }

  void read_header(file& f) {
    auto magic = read<uint32_t>("magic");
    if (magic != gguf_magic) {
      fail(cat("bad magic ", quote({reinterpret_cast<const char*>(bytes_.data()), 4}),
               " (expected 'GGUF')"));
    }
    f.version_ = read<uint32_t>("version");
    if (f.version_ != 2 && f.version_ != 3) {
      if (f.version_ != 0 && (f.version_ & 0xffff) == 0) {
        fail(cat("unsupported version ", f.version_,
                 " (looks like a big-endian file; only little-endian GGUF is supported)"));
      }
      fail(cat("unsupported version ", f.version_, " (only GGUF v2 and v3 are supported)"));
    }
    n_tensors_ = read<uint64_t>("tensor count");
    n_kv_ = read<uint64_t>("kv count");
    // Smallest encodings: a kv is key length + 1 byte key + type + 1 byte value; a tensor info
    // is name length + 1 byte name + n_dims + 1 dim + type + offset.
    constexpr uint64_t min_kv = 8 + 1 + 4 + 1;
    constexpr uint64_t min_tensor = 8 + 1 + 4 + 8 + 4 + 8;
    if (n_kv_ > remaining() / min_kv) {
      fail(cat("kv count ", n_kv_, " exceeds what the remaining ", remaining(), " bytes can hold"));
    }
    if (n_tensors_ > remaining() / min_tensor) {
      fail(cat("tensor count ", n_tensors_, " exceeds what the remaining ", remaining(),
               " bytes can hold"));
    }
  }

  void read_alignment(file& f) {
    const metadata_entry* e = f.find("general.alignment");
    if (!e) return;
    where_ = "key 'general.alignment'";
    if (!is_integer(e->type)) fail(cat("type ", to_string(e->type), ", expected an integer"));
    uint64_t a = std::holds_alternative<uint64_t>(e->v)
                     ? std::get<uint64_t>(e->v)
                     : static_cast<uint64_t>(std::get<int64_t>(e->v));
    if (is_signed(e->type) && std::get<int64_t>(e->v) < 0) {
      fail(cat("alignment ", std::get<int64_t>(e->v), " is negative"));
    }
    if (!std::has_single_bit(a)) fail(cat("alignment ", a, " is not a non-zero power of two"));
    f.alignment_ = a;
  }

  void read_tensor_infos(file& f) {
    std::unordered_set<std::string_view> seen;
    charge(n_tensors_, sizeof(tensor_info), "tensor count");
    f.tensors_.reserve(n_tensors_);
    for (uint64_t i = 0; i < n_tensors_; ++i) {
      where_ = cat("tensor ", i);
      std::string_view name = read_string("tensor name", true);
      where_ = cat("tensor ", quote(name));
      if (name.empty()) fail("empty tensor name");
      if (!seen.insert(name).second) fail("duplicate tensor name");
      auto n_dims = read<uint32_t>("n_dims");
      if (n_dims == 0 || n_dims > static_cast<uint32_t>(max_dims)) {
        fail(cat("n_dims ", n_dims, " out of range 1..", max_dims));
      }
      tensor_info t;
      t.name = name;
      for (uint32_t d = 0; d < n_dims; ++d) {
        auto dim = read<uint64_t>("dimension");
        if (dim == 0 || dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
          fail(cat("dimension ", d, " is ", static_cast<int64_t>(dim), " (must be positive)"));
        }
        t.shape.push_back(static_cast<int64_t>(dim));
      }
      auto type_id = read<uint32_t>("type");
      t.offset = read<uint64_t>("offset");  // relative until the data section is known
      size_result size = tensor_size(type_id, t.shape);
      if (!size.error.empty()) fail(size.error);
      t.type = static_cast<tensor_type>(type_id);
      t.n_bytes = size.n_bytes;
      f.tensors_.push_back(std::move(t));
    }
    if (!align_up(pos_, f.alignment_, f.data_offset_)) {
      where_ = "data section";
      fail(cat("start overflows with alignment ", f.alignment_));
    }
    for (tensor_info& t : f.tensors_) {
      where_ = cat("tensor ", quote(t.name));
      if (t.offset % f.alignment_ != 0) {
        fail(cat("data offset ", t.offset, " is not a multiple of the alignment ", f.alignment_));
      }
      uint64_t begin = 0;
      uint64_t end = 0;
      if (!checked_add(f.data_offset_, t.offset, begin) || !checked_add(begin, t.n_bytes, end)) {
        fail(cat("data offset ", t.offset, " overflows (data section at ", f.data_offset_, ")"));
      }
      if (end > bytes_.size()) {
        fail(cat("data [offset ", begin, ", ", t.n_bytes, " bytes] extends past end of file (size ",
                 bytes_.size(), ")"));
      }
      t.offset = begin;
      t.data = bytes_.data() + begin;
    }
  }
};

file file::parse(std::span<const uint8_t> bytes) {
  file f;
  parser(bytes, "gguf: ").run(f);
  return f;
}

file file::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "gguf: cannot open " + path);
  struct fd_closer {
    int fd;
    ~fd_closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    throw std::system_error(errno, std::generic_category(), "gguf: cannot stat " + path);
  }
  if (!S_ISREG(st.st_mode)) throw format_error("gguf: " + path + ": not a regular file");
  auto size = static_cast<size_t>(st.st_size);
  std::shared_ptr<void> mapping;
  if (size > 0) {
    void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      throw std::system_error(errno, std::generic_category(), "gguf: cannot map " + path);
    }
    mapping = std::shared_ptr<void>(p, [size](void* q) { ::munmap(q, size); });
  }
  file f;
  f.mapping_ = mapping;
  parser({static_cast<const uint8_t*>(mapping.get()), size}, "gguf: " + path + ": ").run(f);
  return f;
}

bool file::maps(const void* p, size_t n) const {
  const auto* b = static_cast<const uint8_t*>(p);
  return mapping_ && b >= bytes_.data() && n <= bytes_.size() &&
         b - bytes_.data() <= static_cast<std::ptrdiff_t>(bytes_.size() - n);
}

const metadata_entry* file::find(std::string_view key) const {
  for (const metadata_entry& e : metadata_) {
    if (e.key == key) return &e;
  }
  return nullptr;
}

const tensor_info* file::find_tensor(std::string_view name) const {
  for (const tensor_info& t : tensors_) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

namespace {

[[noreturn]] void type_mismatch(const metadata_entry& e, std::string_view expected) {
  throw format_error(
      cat("gguf: key ", quote(e.key), ": type ", to_string(e.type), ", expected ", expected));
}

}  // namespace

std::optional<std::string> file::get_string(std::string_view key) const {
  const metadata_entry* e = find(key);
  if (!e) return std::nullopt;
  if (e->type != value_type::string) type_mismatch(*e, "string");
  return std::get<std::string>(e->v);
}

std::optional<uint64_t> file::get_uint(std::string_view key) const {
  const metadata_entry* e = find(key);
  if (!e) return std::nullopt;
  if (!is_integer(e->type)) type_mismatch(*e, "an integer");
  if (const auto* i = std::get_if<int64_t>(&e->v)) {
    if (*i < 0) {
      throw format_error(cat("gguf: key ", quote(e->key), ": value ", *i, " is negative"));
    }
    return static_cast<uint64_t>(*i);
  }
  return std::get<uint64_t>(e->v);
}

std::optional<int64_t> file::get_int(std::string_view key) const {
  const metadata_entry* e = find(key);
  if (!e) return std::nullopt;
  if (!is_integer(e->type)) type_mismatch(*e, "an integer");
  if (const auto* u = std::get_if<uint64_t>(&e->v)) {
    if (*u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      throw format_error(cat("gguf: key ", quote(e->key), ": value ", *u, " exceeds int64"));
    }
    return static_cast<int64_t>(*u);
  }
  return std::get<int64_t>(e->v);
}

std::optional<double> file::get_float(std::string_view key) const {
  const metadata_entry* e = find(key);
  if (!e) return std::nullopt;
  if (!is_float(e->type)) type_mismatch(*e, "float32 or float64");
  return std::get<double>(e->v);
}

std::optional<bool> file::get_bool(std::string_view key) const {
  const metadata_entry* e = find(key);
  if (!e) return std::nullopt;
  if (e->type != value_type::boolean) type_mismatch(*e, "bool");
  return std::get<bool>(e->v);
}

const array_value* file::get_array(std::string_view key) const {
  const metadata_entry* e = find(key);
  if (!e) return nullptr;
  if (e->type != value_type::array) type_mismatch(*e, "array");
  return &std::get<array_value>(e->v);
}

// ---------------------------------------------------------------------------------------------
// Writer

namespace {

[[noreturn]] void misuse(std::string_view what, const std::string& msg) {
  throw std::invalid_argument(cat("gguf writer: ", what, ": ", msg));
}

bool int_in_range(value_type t, const value& v) {
  int_range r = range_of(t);
  if (const auto* u = std::get_if<uint64_t>(&v)) return *u <= r.max;
  if (const auto* i = std::get_if<int64_t>(&v)) {
    return *i >= r.min && (*i < 0 || static_cast<uint64_t>(*i) <= r.max);
  }
  return false;
}

void check_array(std::string_view key, const array_value& a, int depth) {
  if (depth > max_array_depth) misuse(key, cat("arrays nested deeper than ", max_array_depth));
  value_type t = a.element_type;
  if (static_cast<uint32_t>(t) > max_value_type) misuse(key, "unknown array element type");
  if (is_integer(t)) {
    if (t == value_type::uint64) return;  // every int64 is a uint64 bit pattern
    for (int64_t i : a.ints) {
      if (!int_in_range(t, value{i})) misuse(key, cat("element ", i, " out of ", to_string(t)));
    }
  } else if (t == value_type::boolean) {
    for (int64_t i : a.ints) {
      if (i != 0 && i != 1) misuse(key, cat("bool element ", i));
    }
  } else if (t == value_type::array) {
    for (const array_value& inner : a.arrays) check_array(key, inner, depth + 1);
  }
}

// Stores integers as uint64_t/int64_t by signedness so a read-back compares equal.
value normalized(std::string_view key, value v, value_type type) {
  if (static_cast<uint32_t>(type) > max_value_type) misuse(key, "unknown value type");
  if (is_integer(type)) {
    if (!int_in_range(type, v)) misuse(key, cat("value does not fit ", to_string(type)));
    uint64_t bits = std::holds_alternative<uint64_t>(v)
                        ? std::get<uint64_t>(v)
                        : static_cast<uint64_t>(std::get<int64_t>(v));
    if (is_signed(type)) return static_cast<int64_t>(bits);
    return bits;
  }
  bool ok = (is_float(type) && std::holds_alternative<double>(v)) ||
            (type == value_type::boolean && std::holds_alternative<bool>(v)) ||
            (type == value_type::string && std::holds_alternative<std::string>(v)) ||
            (type == value_type::array && std::holds_alternative<array_value>(v));
  if (!ok) misuse(key, cat("value does not match type ", to_string(type)));
  if (type == value_type::array) check_array(key, std::get<array_value>(v), 1);
  return v;
}

// Buffered output that counts bytes and reports every failed write.
class output {
 public:
  explicit output(const std::string& path) : path_(path) {
    f_ = std::fopen(path.c_str(), "wb");
    if (!f_) throw std::system_error(errno, std::generic_category(), "gguf: cannot create " + path);
    struct stat st {};
    // A partial file is removed on failure, but only a regular file we created (not /dev/full).
    created_regular_ = ::fstat(::fileno(f_), &st) == 0 && S_ISREG(st.st_mode);
    std::setvbuf(f_, nullptr, _IOFBF, 1 << 20);
  }
  output(const output&) = delete;
  output& operator=(const output&) = delete;
  ~output() {
    if (!f_) return;
    std::fclose(f_);
    if (!committed_ && created_regular_) std::remove(path_.c_str());
  }

  void bytes(const void* p, size_t n) {
    if (n == 0) return;
    if (std::fwrite(p, 1, n, f_) != n) io_error("write to");
    pos_ += n;
  }
  template <typename T>
  void pod(T v) {
    bytes(&v, sizeof v);
  }
  void string(std::string_view s) {
    pod(uint64_t{s.size()});
    bytes(s.data(), s.size());
  }
  void pad_to(uint64_t alignment) {
    static constexpr uint8_t zeros[256] = {};
    uint64_t target = 0;
    align_up(pos_, alignment, target);
    while (pos_ < target) bytes(zeros, std::min<uint64_t>(sizeof zeros, target - pos_));
  }
  void commit() {
    if (std::fflush(f_) != 0) io_error("flush");
    int rc = std::fclose(f_);
    f_ = nullptr;
    if (rc != 0) io_error("close");
    committed_ = true;
  }

 private:
  std::string path_;
  std::FILE* f_ = nullptr;
  bool created_regular_ = false;
  bool committed_ = false;
  uint64_t pos_ = 0;

  [[noreturn]] void io_error(const char* what) const {
    int err = errno != 0 ? errno : EIO;
    throw std::system_error(err, std::generic_category(), cat("gguf: cannot ", what, " ", path_));
  }
};

void write_value(output& out, value_type type, const value& v);

void write_array(output& out, const array_value& a) {
  out.pod(static_cast<uint32_t>(a.element_type));
  out.pod(uint64_t{a.size()});
  value_type t = a.element_type;
  if (is_integer(t) || t == value_type::boolean) {
    for (int64_t i : a.ints) {
      if (is_signed(t)) {
        write_value(out, t, value{i});
      } else {
        write_value(out, t, value{static_cast<uint64_t>(i)});
      }
    }
  } else if (is_float(t)) {
    for (double d : a.floats) write_value(out, t, value{d});
  } else if (t == value_type::string) {
    for (const std::string& s : a.strings) out.string(s);
  } else {
    for (const array_value& inner : a.arrays) write_array(out, inner);
  }
}

void write_value(output& out, value_type type, const value& v) {
  // Integers arrive normalized (or as array elements) and were range-checked.
  auto bits = [&]() -> uint64_t {
    if (const auto* u = std::get_if<uint64_t>(&v)) return *u;
    return static_cast<uint64_t>(std::get<int64_t>(v));
  };
  switch (type) {
    case value_type::uint8:
    case value_type::int8:
      out.pod(static_cast<uint8_t>(bits()));
      break;
    case value_type::uint16:
    case value_type::int16:
      out.pod(static_cast<uint16_t>(bits()));
      break;
    case value_type::uint32:
    case value_type::int32:
      out.pod(static_cast<uint32_t>(bits()));
      break;
    case value_type::uint64:
    case value_type::int64:
      out.pod(bits());
      break;
    case value_type::float32:
      out.pod(static_cast<float>(std::get<double>(v)));
      break;
    case value_type::float64:
      out.pod(std::get<double>(v));
      break;
    case value_type::boolean:
      // Array elements of bool type arrive as int64 0/1.
      if (const auto* b = std::get_if<bool>(&v)) {
        out.pod(static_cast<uint8_t>(*b));
      } else {
        out.pod(static_cast<uint8_t>(bits()));
      }
      break;
    case value_type::string:
      out.string(std::get<std::string>(v));
      break;
    case value_type::array:
      write_array(out, std::get<array_value>(v));
      break;
  }
}

}  // namespace

void writer::set(std::string key, value v, value_type type) {
  if (key.empty()) misuse("set", "empty key");
  v = normalized(key, std::move(v), type);
  if (key == "general.alignment") {
    if (type != value_type::uint32 || !std::has_single_bit(std::get<uint64_t>(v))) {
      misuse(key, "must be a uint32 power of two");
    }
  }
  for (metadata_entry& e : metadata_) {
    if (e.key == key) {
      e.type = type;
      e.v = std::move(v);
      return;
    }
  }
  metadata_.push_back({std::move(key), type, std::move(v)});
}

void writer::set_string(std::string key, std::string v) {
  set(std::move(key), std::move(v), value_type::string);
}
void writer::set_uint32(std::string key, uint32_t v) {
  set(std::move(key), uint64_t{v}, value_type::uint32);
}
void writer::set_int32(std::string key, int32_t v) {
  set(std::move(key), int64_t{v}, value_type::int32);
}
void writer::set_uint64(std::string key, uint64_t v) {
  set(std::move(key), v, value_type::uint64);
}
void writer::set_float32(std::string key, float v) {
  set(std::move(key), double{v}, value_type::float32);
}
void writer::set_bool(std::string key, bool v) {
  set(std::move(key), v, value_type::boolean);
}
void writer::set_array(std::string key, array_value v) {
  set(std::move(key), std::move(v), value_type::array);
}
void writer::set_string_array(std::string key, std::vector<std::string> v) {
  array_value a{value_type::string, {}, {}, std::move(v), {}};
  set_array(std::move(key), std::move(a));
}

uint64_t writer::tensor_bytes(tensor_type type, std::span<const int64_t> shape) {
  size_result size = tensor_size(static_cast<uint32_t>(type), shape);
  if (!size.error.empty()) misuse("tensor", size.error);
  return size.n_bytes;
}

void writer::add_pending(pending_tensor t) {
  if (t.name.empty() || t.name.size() > max_tensor_name) {
    misuse(quote(t.name), cat("tensor name must have 1..", max_tensor_name, " bytes"));
  }
  for (const pending_tensor& other : tensors_) {
    if (other.name == t.name) misuse(quote(t.name), "duplicate tensor name");
  }
  size_result size = tensor_size(static_cast<uint32_t>(t.type), t.shape);
  if (!size.error.empty()) misuse(quote(t.name), size.error);
  t.n_bytes = size.n_bytes;
  tensors_.push_back(std::move(t));
}

void writer::add_tensor(std::string name, tensor_type type, std::vector<int64_t> shape,
                        std::span<const uint8_t> data) {
  pending_tensor t{std::move(name), type, std::move(shape), 0, {data.begin(), data.end()}, {}};
  size_result size = tensor_size(static_cast<uint32_t>(type), t.shape);
  if (size.error.empty() && size.n_bytes != data.size()) {
    misuse(quote(t.name), cat(data.size(), " bytes of data, the shape needs ", size.n_bytes));
  }
  add_pending(std::move(t));
}

void writer::add_tensor_lazy(std::string name, tensor_type type, std::vector<int64_t> shape,
                             std::function<void(std::span<uint8_t>)> fill) {
  if (!fill) misuse(quote(name), "empty fill function");
  add_pending({std::move(name), type, std::move(shape), 0, {}, std::move(fill)});
}

void writer::write(const std::string& path) const {
  uint64_t alignment = default_alignment;
  for (const metadata_entry& e : metadata_) {
    if (e.key == "general.alignment") alignment = std::get<uint64_t>(e.v);
  }
  output out(path);
  out.pod(gguf_magic);
  out.pod(uint32_t{3});
  out.pod(uint64_t{tensors_.size()});
  out.pod(uint64_t{metadata_.size()});
  for (const metadata_entry& e : metadata_) {
    out.string(e.key);
    out.pod(static_cast<uint32_t>(e.type));
    write_value(out, e.type, e.v);
  }
  uint64_t offset = 0;
  uint64_t max_bytes = 0;
  for (const pending_tensor& t : tensors_) {
    out.string(t.name);
    out.pod(static_cast<uint32_t>(t.shape.size()));
    for (int64_t d : t.shape) out.pod(static_cast<uint64_t>(d));
    out.pod(static_cast<uint32_t>(t.type));
    out.pod(offset);
    align_up(offset + t.n_bytes, alignment, offset);
    if (t.fill) max_bytes = std::max(max_bytes, t.n_bytes);
  }
  out.pad_to(alignment);
  std::vector<uint8_t> buffer;
  buffer.reserve(max_bytes);
  for (const pending_tensor& t : tensors_) {
    if (t.fill) {
      buffer.assign(t.n_bytes, 0);
      t.fill(buffer);
      out.bytes(buffer.data(), buffer.size());
    } else {
      out.bytes(t.data.data(), t.data.size());
    }
    // Padding after the last tensor too: llama.cpp expects the padded data size.
    out.pad_to(alignment);
  }
  out.commit();
}

}  // namespace rbee::gguf
