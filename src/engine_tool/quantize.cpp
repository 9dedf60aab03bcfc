// `quantize IN OUT TYPE`: llama-quantize's job for the types and mixes this engine writes.
#include <algorithm>
#include <chrono>
#include <memory>
#include <thread>

#include <fmt/format.h>
#include <fmt/ostream.h>

#include "engine/cpu/kernels.h"
#include "engine/quant.h"
#include "engine_tool/engine_tool.h"
#include "engine_tool/type_mix.h"
#include "gguf/gguf.h"

namespace rbee::engine_tool {

using engine::tensor_type;

int quantize(const std::string& input, const std::string& output, const std::string& type,
             int n_threads, std::ostream& log) {
  const auto kind = parse_file_kind(type);
  if (!kind)
    throw engine::engine_error(engine::error_code::invalid_argument,
                               fmt::format("unknown type '{}' ({})", type, file_kind_names()));
  // Validates the model (architecture, shapes) before writing anything.
  const engine::model_info mi = engine::read_model_info(input);
  const auto src = std::make_shared<const gguf::file>(gguf::file::open(input));

  gguf::writer w;
  for (const auto& e : src->metadata())
    if (e.key != "general.file_type" && e.key != "general.quantization_version") w.set(e);
  w.set_uint32("general.file_type", kind->file_type);
  w.set_uint32("general.quantization_version", 2);

  const bool tied = src->find_tensor("output.weight") == nullptr;
  const int n_gqa = mi.n_head_kv > 0 ? mi.n_head / mi.n_head_kv : 1;
  const int threads =
      n_threads > 0 ? n_threads : static_cast<int>(std::thread::hardware_concurrency());
  auto pool = std::make_shared<engine::cpu::thread_pool>(std::max(threads, 1));
  for (const auto& t : src->tensors()) {
    const bool is_weight = t.shape.size() == 2 && t.name.ends_with(".weight");
    const bool is_output = t.name == "output.weight" || (tied && t.name == "token_embd.weight");
    const tensor_type to =
        is_weight ? tensor_type_for(*kind, t.name, mi.n_layer, n_gqa, t.shape[0], is_output)
                  : t.type;
    if (to == t.type) {
      const uint8_t* data = t.data;
      w.add_tensor_lazy(t.name, t.type, t.shape, [=](std::span<uint8_t> out) {
        std::copy_n(data, out.size(), out.data());
        (void)src;  // the mapping must outlive the write
      });
      continue;
    }
    const int64_t n_cols = t.shape[0], n_rows = t.n_elements() / n_cols;
    const tensor_type from = t.type;
    const uint8_t* data = t.data;
    w.add_tensor_lazy(t.name, to, t.shape, [=](std::span<uint8_t> out) {
      const size_t in_row = engine::row_size(from, n_cols), out_row = engine::row_size(to, n_cols);
      std::vector<std::vector<float>> rows(static_cast<size_t>(pool->size()),
                                           std::vector<float>(static_cast<size_t>(n_cols)));
      pool->run(static_cast<int>(n_rows), [&](int r, int thread) {
        float* row = rows[static_cast<size_t>(thread)].data();
        engine::cpu::dequantize_row(from, data + static_cast<size_t>(r) * in_row, row, n_cols);
        engine::quantize_row(to, row, out.data() + static_cast<size_t>(r) * out_row, n_cols);
      });
      (void)src;  // the mapping must outlive the write
    });
  }
  const auto t0 = std::chrono::steady_clock::now();
  w.write(output);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  fmt::print(log, "quantized {} -> {} ({}) in {:.1f} s\n", input, output, kind->name, s);
  return 0;
}

}  // namespace rbee::engine_tool
