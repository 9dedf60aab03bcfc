#pragma once
// What a model file is, from its header alone (no weight data touched): the one summary the
// engine's model_info and the hive's catalog and preflight are filled from.
#include <cstdint>
#include <optional>
#include <string>

#include "gguf/gguf.h"

namespace rbee::gguf {

struct header_summary {
  uint32_t version = 0;
  std::string architecture;           // general.architecture
  std::string name;                   // general.name ("" when absent)
  std::optional<uint32_t> file_type;  // general.file_type (llama.cpp's ftype enum)
  // The quantization mix: the file type's name ("Q4_K_M": mostly Q4_K, some tensors Q6_K);
  // without a known file type, the tensor type holding most matrix weights ("Q4_K").
  std::string quantization;
  uint64_t parameters = 0;  // elements of every tensor
  uint64_t tensor_count = 0;
  uint64_t file_size = 0;
  // The shape as stored; 0 when the key is absent (the engine validates what it runs).
  uint64_t context_length = 0;       // <arch>.context_length
  uint64_t block_count = 0;          // <arch>.block_count
  uint64_t embedding_length = 0;     // <arch>.embedding_length
  uint64_t head_count = 0;           // <arch>.attention.head_count
  uint64_t head_count_kv = 0;        // <arch>.attention.head_count_kv (default head_count)
  uint64_t feed_forward_length = 0;  // <arch>.feed_forward_length
  uint64_t vocab_size = 0;           // rows of token_embd.weight
};

// Summarises a parsed file. Throws format_error when general.architecture is missing or a
// key has an unusable type.
header_summary summarize(const file& f);

// Opens the file at path and summarises its header: format_error for a malformed file,
// std::system_error when it cannot be opened (as file::open).
header_summary read_header_summary(const std::string& path);

}  // namespace rbee::gguf
