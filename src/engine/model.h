#pragma once
// The loaded model (engine.h's opaque `model`): hyperparameters from the GGUF metadata,
// weight views that point into the memory-mapped file, and the backend that computes with
// them (backend.h). Nothing here depends on which backend that is.
#include <algorithm>
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
  halves,          // qwen2, qwen3, gemma2/3: rotates (x[i], x[i + n_rot/2]) — ggml NeoX mode
};

enum class ffn_activation {
  silu,       // llama, qwen2, qwen3: silu(gate) * up
  gelu_tanh,  // gemma2/3: gelu(gate) * up, GELU's tanh approximation
};

// The rotation of one layer: its base and its position scale (1 / linear scaling factor).
struct rope_params {
  float freq_base = 10000.0f;
  float freq_scale = 1.0f;
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
  // qwen3, gemma3: an RMS norm over each query and key head (attn_q_norm, attn_k_norm of
  // head_dim floats) before the rotation.
  bool has_qk_norm = false;
  // gemma2, gemma3: RMS norms of the attention and FFN outputs (post_attention_norm,
  // post_ffw_norm) before each joins the residual.
  bool has_post_norms = false;
  ffn_activation ffn_act = ffn_activation::silu;
  float embd_scale = 1.0f;     // token embeddings are multiplied by this (gemma: sqrt(n_embd))
  float attn_scale = 0.0f;     // query scaling of the attention scores
  float attn_softcap = 0.0f;   // gemma2: scores become c * tanh(scores / c); 0: none
  float final_softcap = 0.0f;  // gemma2: likewise for the logits; 0: none
  // Sliding-window attention (gemma2, gemma3): a query of a sliding layer sees the n_swa
  // latest positions, its own included. Layer l slides when l % swa_pattern < swa_pattern - 1
  // (gemma2: every even layer; gemma3: five of every six). 0: no layer slides.
  int n_swa = 0;
  int swa_pattern = 0;
  // phi3's LongRoPE: contexts longer than n_ctx_orig rotate with rope_factors_long, others
  // with rope_factors_short; cos and sin are multiplied by rope_attn_factor (so the rotated
  // dimensions of q and k are scaled by it, the others not).
  int n_ctx_orig = 0;
  float rope_attn_factor = 1.0f;
  // Mixture of experts (llama with experts, qwen3moe): each token's FFN is the weighted sum of
  // n_expert_used of n_expert SwiGLU experts of n_ff rows, picked by the router's softmax
  // (top n_expert_used, weights renormalised to sum 1). 0: a dense FFN.
  int n_expert = 0;
  int n_expert_used = 0;  // at most max_experts_used
  // qwen2moe keeps the chosen experts' softmax probabilities as they are (no renormalisation)
  // and adds a shared expert of n_ff_shared rows, weighted by sigmoid(ffn_gate_inp_shexp . x).
  bool expert_weights_norm = true;
  int n_ff_shared = 0;
  // The widest FFN activation row: the experts' or the shared expert's.
  int ffn_width() const { return std::max(n_ff, n_ff_shared); }
  // gemma3's sliding layers rotate with their own base (the global ones with rope_freq_base).
  bool swa_has_own_rope = false;
  rope_params rope_swa;

  bool layer_slides(int layer) const {
    return n_swa > 0 && swa_pattern > 0 && layer % swa_pattern < swa_pattern - 1;
  }
  // 0: the model's rotation (rope_freq_base, rope_freq_scale and rope_freqs); 1: rope_swa.
  int rope_set(int layer) const { return swa_has_own_rope && layer_slides(layer) ? 1 : 0; }
  int n_rope_sets() const { return swa_has_own_rope ? 2 : 1; }
  rope_params rope_of_set(int set) const {
    return set == 1 ? rope_swa : rope_params{rope_freq_base, rope_freq_scale};
  }
  // KV cache rows a layer keeps per sequence: all n_ctx positions, or for a sliding layer a
  // ring of n_swa + n_batch - 1 (a batch stores all its keys before its first query reads).
  int cache_rows(int layer, int n_ctx, int n_batch) const {
    if (!layer_slides(layer)) return n_ctx;
    return static_cast<int>(std::min<int64_t>(n_ctx, int64_t{n_swa} + n_batch - 1));
  }
};

struct layer_weights {
  weight attn_norm, wq, wk, wv, wo;
  weight bq, bk, bv;                // qwen2 only
  weight attn_q_norm, attn_k_norm;  // qwen3, gemma3 (head_dim,)
  weight attn_post_norm;            // gemma2/3 post_attention_norm
  weight ffn_norm, ffn_gate, ffn_up, ffn_down;
  weight ffn_post_norm;  // gemma2/3 post_ffw_norm
  // phi3 stores q|k|v and gate|up as one matrix each (attn_qkv, ffn_up); wq, wk, wv,
  // ffn_gate and ffn_up are then row ranges of these.
  weight attn_qkv_fused, ffn_gate_up_fused;
  // Mixture of experts: the router (n_expert rows) and the experts' matrices stacked
  // (ffn_*_exps); expert_gate[e] etc. are expert e's row ranges of these.
  weight ffn_gate_inp, ffn_gate_exps, ffn_up_exps, ffn_down_exps;
  std::vector<weight> expert_gate, expert_up, expert_down;
  // qwen2moe's shared expert and its gate (n_embd floats).
  weight ffn_gate_inp_shexp, ffn_gate_shexp, ffn_up_shexp, ffn_down_shexp;
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

// The most experts a token may use (llama.cpp's models use 2 to 8).
inline constexpr int max_experts_used = 64;

// The architectures this engine runs, for error messages.
inline constexpr std::string_view supported_architectures =
    "llama, qwen2, qwen2moe, qwen3, qwen3moe, gemma2, gemma3, phi3";

// Reads and validates the hyperparameters; engine_error(unsupported_architecture) or
// engine_error(file_corrupt) naming the key.
hparams read_hparams(const gguf::file& file);

// Looks up a tensor and checks its shape (ggml order; a 3-D tensor of stacked matrices is
// viewed as the rows of all of them); engine_error(file_corrupt) naming it when missing or
// misshapen, engine_error(unsupported_tensor_type) for an unknown type.
weight get_weight(const gguf::file& file, const std::string& name, std::vector<int64_t> shape,
                  bool required = true);

// Header-level facts (no weight data touched).
model_info read_info(const gguf::file& file, const std::string& path);

// The rotation's inverse frequency of each rotated pair j < n_rot/2, base^(-2j/n_rot), divided
// by the model's factor of that pair where it has them (rope_freqs, n_rot/2 floats, or null).
// In double: every backend takes the angle of position p as freq_scale * p * this. `set` is
// hparams::rope_set of the layers it serves (the factors belong to set 0 only).
std::vector<double> rope_inverse_frequencies(const hparams& hp, const float* factors, int set = 0);

// The frequency factors of a context of n_ctx positions per sequence: phi3's long factors
// beyond its original context, else rope_freqs (null when the model has none).
const float* rope_factors_for(const hparams& hp, const weight& rope_freqs,
                              const weight& rope_freqs_long, int n_ctx);

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
  weight rope_freqs;       // optional per-dimension frequency factors (Llama 3.1; phi3's short)
  weight rope_freqs_long;  // phi3's factors for contexts beyond hparams::n_ctx_orig
  std::vector<layer_weights> layers;
  std::vector<weight_slot> weight_slots;  // every weight above, in load order
  std::unique_ptr<engine::vocab> vocab;
  // A part of a tensor-parallel model (tensor_split.h): its column slices, copied out of the
  // file's mapping.
  std::vector<std::vector<uint8_t>> owned_weights;
  // A tensor-parallel model: its parts, whose weights its backend reads (so they outlive it).
  std::vector<model_ptr> tensor_parts;
  std::unique_ptr<engine::backend> backend;  // set by model_load
  std::vector<model_part> parts;             // set by model_load
};
