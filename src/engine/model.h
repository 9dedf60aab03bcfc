#pragma once
// The loaded model (engine.h's opaque `model`): hyperparameters from the GGUF metadata,
// weight views that point into the memory-mapped file, and the backend that computes with
// them (backend.h). Nothing here depends on which backend that is.
#include <cstdint>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "engine/backend.h"
#include "engine/engine.h"
#include "engine/tensor_types.h"
#include "engine/vocab.h"
#include "gguf/gguf.h"

namespace rbee::engine {

// A 2-D weight in ggml order: n_rows rows of n_cols contiguous elements (a 1-D tensor is
// one row). `data` is null for an absent optional tensor.
struct weight {
  tensor_type type = tensor_type::f32;
  const uint8_t* data = nullptr;
  int64_t n_cols = 0;
  int64_t n_rows = 0;
  explicit operator bool() const { return data != nullptr; }
  size_t row_bytes() const { return row_size(type, n_cols); }
  const uint8_t* row(int64_t r) const { return data + static_cast<size_t>(r) * row_bytes(); }
};

enum class rope_style {
  adjacent_pairs,  // llama: rotates (x[2i], x[2i+1]) — ggml rope mode 0
  halves,          // qwen2: rotates (x[i], x[i + n_rot/2]) — ggml NeoX mode
};

struct hparams {
  std::string architecture;
  int n_vocab = 0;
  int n_embd = 0;
  int n_layer = 0;
  int n_head = 0;
  int n_head_kv = 0;
  int n_ff = 0;
  int head_dim = 0;
  int n_rot = 0;  // rotated dimensions of each head (rope.dimension_count)
  int n_ctx_train = 0;
  float rms_eps = 1e-5f;
  float rope_freq_base = 10000.0f;
  float rope_freq_scale = 1.0f;  // 1 / rope.scaling.factor for linear scaling
  rope_style rope = rope_style::adjacent_pairs;
  bool has_qkv_bias = false;
};

struct layer_weights {
  weight attn_norm, wq, wk, wv, wo;
  weight bq, bk, bv;  // qwen2 only
  weight ffn_norm, ffn_gate, ffn_up, ffn_down;
};

// A weight of the model in the order it was read, with its layer (-1 outside the blocks).
struct weight_slot {
  const weight* w;  // absent optional weights are null views
  int layer;
};

// Concatenates anything streamable: error messages without a formatting library.
template <class... Args>
std::string str(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

// The architectures this engine runs, for error messages.
inline constexpr std::string_view supported_architectures = "llama, qwen2";

// Reads and validates the hyperparameters; engine_error(unsupported_architecture) or
// engine_error(file_corrupt) naming the key.
hparams read_hparams(const gguf::file& file);

// Looks up a tensor and checks its shape (ggml order); engine_error(file_corrupt) naming it
// when missing or misshapen, engine_error(unsupported_tensor_type) for an unknown type.
weight get_weight(const gguf::file& file, const std::string& name, std::vector<int64_t> shape,
                  bool required = true);

// Header-level facts (no weight data touched).
model_info read_info(const gguf::file& file, const std::string& path);

// The rotation's inverse frequency of each rotated pair j < n_rot/2, base^(-2j/n_rot), divided
// by the model's factor of that pair where it has them (rope_freqs, n_rot/2 floats, or null).
// In double: every backend takes the angle of position p as freq_scale * p * this.
std::vector<double> rope_inverse_frequencies(const hparams& hp, const float* factors);

// Opens a GGUF file and reads what every backend needs: hyperparameters, info, weight views
// and the vocabulary (no weight data touched, no backend yet). engine_error as model_load.
// n_threads 0 means one per physical core.
model_ptr open_model(const std::string& path, int n_threads);

}  // namespace rbee::engine

// The opaque handle of engine.h.
struct rbee::engine::model {
  explicit model(gguf::file f) : file(std::move(f)) {}

  gguf::file file;
  model_info info;
  hparams hp;
  int n_threads = 1;
  weight tok_embd, output_norm, output;
  weight rope_freqs;  // optional per-dimension frequency factors (Llama 3.1)
  std::vector<layer_weights> layers;
  std::vector<weight_slot> weight_slots;  // every weight above, in load order
  std::unique_ptr<engine::vocab> vocab;
  std::unique_ptr<engine::backend> backend;  // set by model_load
};
