#include "support/quantized_model.h"

#include <unistd.h>

#include <filesystem>
#include <vector>

#include "engine/quant.h"
#include "gguf/gguf.h"

namespace rbee::engine::test_support {

std::string write_quantized_model(const std::string& source, tensor_type type,
                                  const std::string& tag) {
  const auto src = gguf::file::open(source);
  gguf::writer w;
  for (const auto& e : src.metadata())
    if (e.key != "general.file_type") w.set(e);
  for (const auto& t : src.tensors()) {
    if (t.shape.size() != 2) {
      w.add_tensor(t.name, t.type, t.shape, {t.data, t.n_bytes});
      continue;
    }
    const int64_t n_cols = t.shape[0], n_rows = t.shape[1];
    std::vector<float> values(static_cast<size_t>(t.n_elements()));
    dequantize_row_reference(t.type, t.data, values.data(), t.n_elements());
    const size_t row_bytes = row_size(type, n_cols);
    std::vector<uint8_t> packed(row_bytes * static_cast<size_t>(n_rows));
    for (int64_t r = 0; r < n_rows; ++r)
      quantize_row(type, values.data() + r * n_cols, packed.data() + r * row_bytes, n_cols);
    w.add_tensor(t.name, type, t.shape, packed);
  }
  const auto path =
      std::filesystem::temp_directory_path() / ("rbee-" + tag + "-" + std::to_string(::getpid()) +
                                                "-" + std::string(to_string(type)) + ".gguf");
  w.write(path.string());
  return path.string();
}

}  // namespace rbee::engine::test_support
