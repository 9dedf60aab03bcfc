#include "gguf/summary.h"

#include <algorithm>
#include <cctype>
#include <map>

namespace rbee::gguf {

namespace {

// "Q4_K" for q4_k: file types and tensor types are shown in llama.cpp's upper case.
std::string upper_case(std::string_view name) {
  std::string out(name);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

std::string quantization_of(const file& f, std::optional<uint32_t> file_type) {
  if (file_type) {
    if (std::string_view mix = file_type_name(*file_type); !mix.empty()) return std::string(mix);
  }
  // No file type known: the tensor type alone can be named, not the mix around it (Q4_K, not
  // Q4_K_M or Q4_K_S, which differ in what their few other tensors use).
  std::map<tensor_type, uint64_t> matrix_elements;
  for (const tensor_info& t : f.tensors()) {
    if (t.shape.size() >= 2) matrix_elements[t.type] += static_cast<uint64_t>(t.n_elements());
  }
  std::string dominant;
  uint64_t most = 0;
  for (const auto& [type, elements] : matrix_elements) {
    if (elements > most) {
      most = elements;
      dominant = upper_case(to_string(type));
    }
  }
  return dominant;
}

}  // namespace

uint32_t sliding_window_pattern(std::string_view architecture) {
  if (architecture == "gemma2") return 2;
  if (architecture == "gemma3") return 6;
  return 0;
}

header_summary summarize(const file& f) {
  header_summary s;
  s.version = f.version();
  s.file_size = f.size_bytes();
  s.tensor_count = f.tensors().size();
  s.architecture = f.get_string("general.architecture").value_or("");
  if (s.architecture.empty()) throw format_error("GGUF has no general.architecture");
  s.name = f.get_string("general.name").value_or("");
  const std::string& arch = s.architecture;
  s.context_length = f.get_uint(arch + ".context_length").value_or(0);
  s.block_count = f.get_uint(arch + ".block_count").value_or(0);
  s.embedding_length = f.get_uint(arch + ".embedding_length").value_or(0);
  s.head_count = f.get_uint(arch + ".attention.head_count").value_or(0);
  s.head_count_kv = f.get_uint(arch + ".attention.head_count_kv").value_or(s.head_count);
  s.feed_forward_length = f.get_uint(arch + ".feed_forward_length").value_or(0);
  s.key_length = f.get_uint(arch + ".attention.key_length").value_or(0);
  if (const uint32_t pattern = sliding_window_pattern(arch); pattern > 0) {
    s.sliding_window =
        f.get_uint(arch + ".attention.sliding_window").value_or(arch == "gemma2" ? 4096 : 0);
    if (s.sliding_window > 0)
      s.sliding_layers = s.block_count / pattern * (pattern - 1) +
                         std::min<uint64_t>(s.block_count % pattern, pattern - 1);
  }
  if (auto ft = f.get_uint("general.file_type"); ft && *ft <= UINT32_MAX) {
    s.file_type = static_cast<uint32_t>(*ft);
  }
  for (const tensor_info& t : f.tensors()) {
    s.parameters += static_cast<uint64_t>(t.n_elements());
    if (t.name == "token_embd.weight" && t.shape.size() == 2) {
      s.vocab_size = static_cast<uint64_t>(t.shape[1]);
    }
  }
  s.quantization = quantization_of(f, s.file_type);
  return s;
}

header_summary read_header_summary(const std::string& path) {
  return summarize(file::open(path));
}

}  // namespace rbee::gguf
