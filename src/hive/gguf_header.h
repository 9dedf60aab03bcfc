#pragma once
// What the hive's catalog and preflight need from a GGUF header (architecture, sizes, file type,
// parameter count), read with the engine's GGUF reader (library rbee_gguf: the format alone, no
// inference). The file is untrusted: a malformed one raises gguf_header_error naming the problem.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>

namespace rbee::hive {

struct gguf_header_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct gguf_summary {
  uint32_t version = 0;
  std::string architecture;           // general.architecture
  std::string name;                   // general.name ("" when absent)
  uint64_t context_length = 0;        // <arch>.context_length (0 when absent)
  uint64_t block_count = 0;           // <arch>.block_count
  uint64_t embedding_length = 0;      // <arch>.embedding_length
  uint64_t head_count = 0;            // <arch>.attention.head_count
  uint64_t head_count_kv = 0;         // <arch>.attention.head_count_kv (defaults to head_count)
  uint64_t feed_forward_length = 0;   // <arch>.feed_forward_length
  uint64_t vocab_size = 0;            // rows of token_embd.weight (0 when absent)
  std::optional<uint32_t> file_type;  // general.file_type (llama.cpp's ftype enum)
  std::string quantization;           // "Q4_K_M", from file_type or the dominant tensor type
  uint64_t parameters = 0;            // sum of the tensors' element counts
  uint64_t tensor_count = 0;
  uint64_t file_size = 0;
};

// Reads the header of the file at path. Throws gguf_header_error (not a GGUF, truncated,
// unsupported version, sizes out of bounds) or std::runtime_error when it cannot be opened.
gguf_summary read_gguf_header(const std::filesystem::path& path);

// Name of a llama.cpp file type ("Q4_K_M"); "" for unknown values.
std::string file_type_name(uint32_t file_type);
// Name of a ggml tensor type id ("Q4_K"); "" for unknown ids.
std::string tensor_type_name(uint32_t type);

}  // namespace rbee::hive
