#pragma once
// The compute backend of a loaded model: what the model and context code (model.cpp,
// context.cpp) asks of the CPU (cpu/backend.h) and CUDA (cuda/engine_backend.cpp) backends.
// The context checks every batch and records the sequence positions (batch.h) before a
// backend sees it, so backends get only valid batches and keep no positions of their own.
// Which backend a model gets is decided in one place, model_load (model_load.cpp). A model
// split by layers across devices (docs/multi-gpu.md) is a composition of such backends, one
// part per device (split_backend.h), each running its range of the layers; a tensor-parallel
// model likewise (tensor_split.h), each part running its slice of every layer.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "engine/engine.h"
#include "engine/token_choice.h"

namespace rbee::engine {

// Blocks of kv_block_size positions a sequence of n positions needs.
inline int kv_blocks_for(int n) {
  return (n + kv_block_size - 1) / kv_block_size;
}
// The blocks of a context's pool (context_params::n_kv_tokens); positive sizes.
inline int64_t kv_pool_blocks(const context_params& p) {
  return p.n_kv_tokens > 0 ? (int64_t{p.n_kv_tokens} + kv_block_size - 1) / kv_block_size
                           : int64_t{p.n_seq} * kv_blocks_for(p.n_ctx);
}

// Where the paged KV cache keeps each sequence's positions (kv_blocks.h keeps the books):
// position p of sequence s lives in row p % kv_block_size of pool block
// blocks[s * max_blocks + p / kv_block_size]. Layers that slide over a window keep a ring
// per sequence instead (hparams::cache_rows), outside the pool.
struct kv_block_tables {
  const int32_t* blocks = nullptr;  // (n_seq, max_blocks)
  int max_blocks = 0;               // kv_blocks_for(n_ctx)
  uint64_t version = 0;             // changes whenever an entry a decode reads changes
};

// The layers one part of a model runs, [first, end): the part with first 0 embeds the
// tokens, the part with end n_layer computes the logits, and each other part hands its
// residual stream to the next. The whole model is the one part [0, n_layer).
struct layer_range {
  int first = 0;
  int end = 0;
};

// Where a context keeps the residual stream of the batch it decodes: n_batch rows of n_embd
// floats, in host memory (device -1) or on CUDA device `device`.
struct activations {
  float* data = nullptr;
  int device = -1;
};

// A context on a backend: its KV cache, activations and the logits of the last decode.
class backend_context {
 public:
  virtual ~backend_context() = default;

  // Runs the forward pass of a checked batch whose positions have their blocks in `tables`;
  // logits row r belongs to the r-th entry with want_logits. Throws engine_error only for
  // what the device reports (out of memory, a failed call); does not allocate after the
  // first call with a given number of rows.
  virtual void decode(std::span<const batch_entry> batch, const kv_block_tables& tables) = 0;
  // Logits row `row` of the last decode (n_vocab floats), valid until the next decode.
  virtual std::span<const float> logits(int row) const = 0;
  // tokens[i] = the token choose_token picks from logits row rows[i] with steps[i].
  virtual void sample(std::span<const int> rows, std::span<const sampling_step> steps,
                      std::span<token_id> tokens) = 0;
  // compute_logprobs (token_choice.h) of logits row `row`; n_top <= min(20, n_vocab).
  virtual void logprobs(int row, token_id token, int n_top, token_logprobs& out) = 0;
  // Copies every row of pool block src to pool block dst (src != dst).
  virtual void copy_block(int src, int dst) = 0;
  // Copies the first n_pos positions of sequence src to sequence dst (src != dst) in the
  // sliding-window layers' rings; nothing on models without such layers.
  virtual void copy_ring_layers(int src, int dst, int n_pos) = 0;
  // Device memory the context holds (0 on the CPU).
  virtual uint64_t device_bytes() const = 0;
  // The residual stream: a part that does not start at layer 0 reads the batch's rows from
  // here on decode; a part that does not end at the last layer leaves its output here.
  virtual activations residual() = 0;
};

class backend {
 public:
  virtual ~backend() = default;

  // params are checked (positive sizes, n_threads resolved, kv_pool_blocks fits an int);
  // engine_error(out_of_memory) when the host or device cannot hold the context.
  virtual std::unique_ptr<backend_context> create_context(const context_params& params) = 0;
  // Device memory the model's weights hold (0 on the CPU).
  virtual uint64_t device_bytes() const = 0;
  // Copies n floats of residual stream from another part's context into one of this
  // backend's contexts (a peer copy between devices, or staged through the host).
  virtual void copy_activations(const activations& from, const activations& to, size_t n) = 0;
};

class communicator;

// A part's place in a tensor-parallel model (tensor_split.h): its weights are its rank's
// slice of every layer, and after the attention output and the FFN down projection it adds
// the other ranks' partial sums through `comm` before the residual add. Only rank 0 computes
// the logits. comm null: not tensor-parallel.
struct tensor_rank {
  communicator* comm = nullptr;
  int rank = 0;
};

// The device and layers of one part (the whole model: model_params::device, [0, n_layer)).
struct backend_part {
  int device = 0;
  layer_range layers;
  tensor_rank tensor;
};

// Makes the backend of a loaded model's part (its weights uploaded or read in, progress
// reported).
using backend_maker = std::unique_ptr<backend> (*)(const model& m, const model_params& params,
                                                   const backend_part& part);

}  // namespace rbee::engine
