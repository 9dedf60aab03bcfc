#include "hive/gguf_header.h"

#include <cctype>
#include <map>
#include <system_error>

#include "engine/gguf.h"

namespace rbee::hive {
namespace gguf = engine::gguf;

std::string file_type_name(uint32_t file_type) {
  return std::string(engine::file_type_name(file_type));
}

std::string tensor_type_name(uint32_t type) {
  const auto traits = engine::traits_of(type);
  if (!traits) return "";
  std::string name(traits->name);
  for (char& c : name) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return name;
}

gguf_summary read_gguf_header(const std::filesystem::path& path) {
  // The engine's reader checks every count, length and offset against the file; its message
  // names the field. Only the header pages of the mapping are touched.
  gguf::file file = [&] {
    try {
      return gguf::file::open(path.string());
    } catch (const gguf::format_error& e) {
      throw gguf_header_error(e.what());
    } catch (const std::system_error& e) {
      throw std::runtime_error(e.what());
    }
  }();

  gguf_summary s;
  s.version = file.version();
  s.file_size = file.size_bytes();
  s.tensor_count = file.tensors().size();
  try {
    s.architecture = file.get_string("general.architecture").value_or("");
    if (s.architecture.empty()) throw gguf_header_error("GGUF has no general.architecture");
    s.name = file.get_string("general.name").value_or("");
    const std::string& a = s.architecture;
    s.context_length = file.get_uint(a + ".context_length").value_or(0);
    s.block_count = file.get_uint(a + ".block_count").value_or(0);
    s.embedding_length = file.get_uint(a + ".embedding_length").value_or(0);
    s.head_count = file.get_uint(a + ".attention.head_count").value_or(0);
    s.head_count_kv = file.get_uint(a + ".attention.head_count_kv").value_or(s.head_count);
    s.feed_forward_length = file.get_uint(a + ".feed_forward_length").value_or(0);
    if (auto ft = file.get_uint("general.file_type"); ft && *ft <= UINT32_MAX)
      s.file_type = static_cast<uint32_t>(*ft);
  } catch (const gguf::format_error& e) {
    throw gguf_header_error(e.what());
  }

  std::map<engine::tensor_type, uint64_t> matrix_elements_by_type;
  for (const auto& t : file.tensors()) {
    s.parameters += static_cast<uint64_t>(t.n_elements());
    if (t.name == "token_embd.weight" && t.shape.size() == 2)
      s.vocab_size = static_cast<uint64_t>(t.shape[1]);
    if (t.shape.size() >= 2) matrix_elements_by_type[t.type] += t.n_elements();
  }
  if (s.file_type) s.quantization = file_type_name(*s.file_type);
  if (s.quantization.empty()) {
    // No (known) file type: name the type that holds most matrix weights.
    uint64_t best = 0;
    for (auto [type, count] : matrix_elements_by_type) {
      if (count > best) {
        best = count;
        s.quantization = tensor_type_name(static_cast<uint32_t>(type));
      }
    }
  }
  return s;
}

}  // namespace rbee::hive
