#pragma once
// What a model file is, from its header alone (no weight data touched): the one summary the
// engine's model_info and the hive's catalog and preflight are filled from.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

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
  uint64_t key_length = 0;           // <arch>.attention.key_length (0: n_embd / head_count)
  // Sliding-window attention: the window (<arch>.attention.sliding_window, with llama.cpp's
  // default for gemma2) and how many layers use it (sliding_window_pattern); 0 when none.
  uint64_t sliding_window = 0;
  uint64_t sliding_layers = 0;
};

// Layer l of an architecture with sliding-window attention slides when l % pattern <
// pattern - 1 (llama.cpp's swa pattern: gemma2 2, gemma3 6); 0 for architectures without.
uint32_t sliding_window_pattern(std::string_view architecture);

// Summarises a parsed file. Throws format_error when general.architecture is missing or a
// key has an unusable type.
header_summary summarize(const file& f);

// Opens the file at path and summarises its header: format_error for a malformed file,
// std::system_error when it cannot be opened (as file::open).
header_summary read_header_summary(const std::string& path);

}  // namespace rbee::gguf
