#pragma once
// GGUF v2/v3 reader (memory-mapped, bounds-checked) and writer.
// Untrusted input: every malformed file raises gguf::format_error naming the field;
// never a crash, a hang or an allocation larger than the file justifies.
//
// Layout (little-endian): "GGUF", u32 version, u64 tensor count, u64 kv count, the kv pairs
// (string key, u32 value type, value), the tensor infos (string name, u32 n_dims, u64 dims[n_dims],
// u32 ggml type, u64 offset relative to the data section), padding to `general.alignment`
// (default 32), then the data section. A string is a u64 length and that many bytes.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "gguf/tensor_types.h"

namespace rbee::gguf {

struct format_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

inline constexpr uint64_t default_alignment = 32;
inline constexpr int max_dims = 4;
inline constexpr int max_array_depth = 8;      // nested arrays deeper than this are rejected
inline constexpr size_t max_tensor_name = 63;  // llama.cpp's GGML_MAX_NAME - 1 (writer limit)
// What a parsed file may hold in memory (metadata and tensor infos); real vocabularies
// take tens of MiB.
inline constexpr uint64_t max_metadata_memory = uint64_t{256} << 20;

// GGUF metadata value type ids.
enum class value_type : uint32_t {
  uint8 = 0,
  int8 = 1,
  uint16 = 2,
  int16 = 3,
  uint32 = 4,
  int32 = 5,
  float32 = 6,
  boolean = 7,
  string = 8,
  array = 9,
  uint64 = 10,
  int64 = 11,
  float64 = 12,
};
std::string_view to_string(value_type type);

// An array value keeps its element type; elements are widened into one of the vectors.
struct array_value {
  value_type element_type;
  std::vector<int64_t> ints;  // every integer element type (and bool) — uint64 cast
  std::vector<double> floats;
  std::vector<std::string> strings;
  std::vector<array_value> arrays;  // nested arrays (rare)
  size_t size() const;              // elements of the vector that element_type selects
  bool operator==(const array_value&) const = default;
};

// Unsigned integer types read as uint64_t, signed ones as int64_t, float32/float64 as double.
using value = std::variant<uint64_t, int64_t, double, bool, std::string, array_value>;

struct metadata_entry {
  std::string key;
  value_type type;
  value v;
};

struct tensor_info {
  std::string name;
  tensor_type type;
  std::vector<int64_t> shape;  // ggml order: shape[0] is the contiguous (row) dimension
  uint64_t offset = 0;         // absolute offset of the data in the file
  uint64_t n_bytes = 0;
  const uint8_t* data = nullptr;  // into the mapping; valid while the file lives
  int64_t n_elements() const;
};

class file {
 public:
  // Maps and parses the file; throws format_error (message starts "gguf: <path>: ") or
  // std::system_error (missing/unreadable file, path in the message).
  static file open(const std::string& path);
  // Parses an in-memory image (fuzzing, tests); the bytes must outlive the file.
  static file parse(std::span<const uint8_t> bytes);

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t size_bytes() const { return bytes_.size(); }
  uint64_t data_offset() const { return data_offset_; }  // absolute start of the data section
  const std::vector<metadata_entry>& metadata() const { return metadata_; }
  const std::vector<tensor_info>& tensors() const { return tensors_; }

  // Whether the n bytes at p lie in the mapping open() made (not in bytes given to parse()):
  // pages a reader may drop from memory, to be read back from the file if touched again.
  bool maps(const void* p, size_t n) const;

  const metadata_entry* find(std::string_view key) const;
  const tensor_info* find_tensor(std::string_view name) const;

  // Typed lookups: nullopt when the key is absent; format_error when present with an
  // incompatible type (any integer type reads as uint/int, range-checked; float32/float64
  // as double).
  std::optional<std::string> get_string(std::string_view key) const;
  std::optional<uint64_t> get_uint(std::string_view key) const;
  std::optional<int64_t> get_int(std::string_view key) const;
  std::optional<double> get_float(std::string_view key) const;
  std::optional<bool> get_bool(std::string_view key) const;
  const array_value* get_array(std::string_view key) const;  // nullptr when absent

 private:
  friend class parser;
  std::shared_ptr<void> mapping_;  // keeps the mmap alive
  std::span<const uint8_t> bytes_;
  uint32_t version_ = 0;
  uint64_t alignment_ = default_alignment;
  uint64_t data_offset_ = 0;
  std::vector<metadata_entry> metadata_;
  std::vector<tensor_info> tensors_;
};

// Writes GGUF v3 files (used by `rbee-engine synth` and `quantize`). Metadata is written in
// insertion order, tensors in the order added, each tensor's data aligned to
// `general.alignment` (set it as uint32, a power of two; default 32). Misuse (wrong value for a
// type, bad shape, duplicate tensor, wrong data size) throws std::invalid_argument.
// The layout is the one llama.cpp requires: tensor data contiguous in info order, each tensor
// padded to the alignment. llama.cpp rejects nested arrays, so model files should not use them.
class writer {
 public:
  // Sets a key; setting an existing key replaces its value and type in place. Integer types
  // take a uint64_t or int64_t in range, float32/float64 a double.
  void set(std::string key, value v, value_type type);
  void set(const metadata_entry& entry) { set(entry.key, entry.v, entry.type); }
  void set_string(std::string key, std::string v);
  void set_uint32(std::string key, uint32_t v);
  void set_int32(std::string key, int32_t v);
  void set_uint64(std::string key, uint64_t v);
  void set_float32(std::string key, float v);
  void set_bool(std::string key, bool v);
  void set_array(std::string key, array_value v);
  void set_string_array(std::string key, std::vector<std::string> v);

  // The bytes are copied; shape in ggml order; data.size() must be the tensor's byte size.
  void add_tensor(std::string name, tensor_type type, std::vector<int64_t> shape,
                  std::span<const uint8_t> data);
  // The bytes are produced at write time: `fill` gets a zeroed buffer of the tensor's byte
  // size, so a model larger than memory can be written one tensor at a time.
  void add_tensor_lazy(std::string name, tensor_type type, std::vector<int64_t> shape,
                       std::function<void(std::span<uint8_t>)> fill);

  // Byte size of a tensor of this type and shape (validates the shape; invalid_argument).
  static uint64_t tensor_bytes(tensor_type type, std::span<const int64_t> shape);

  // Throws std::system_error on I/O failure (short write, full disk); a partial file is removed.
  void write(const std::string& path) const;

 private:
  std::vector<metadata_entry> metadata_;
  struct pending_tensor {
    std::string name;
    tensor_type type;
    std::vector<int64_t> shape;
    uint64_t n_bytes = 0;
    std::vector<uint8_t> data;                     // add_tensor
    std::function<void(std::span<uint8_t>)> fill;  // add_tensor_lazy
  };
  std::vector<pending_tensor> tensors_;
  void add_pending(pending_tensor t);
};

}  // namespace rbee::gguf
