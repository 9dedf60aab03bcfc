#pragma once
// The compute backend of a loaded model: what the model and context code (model.cpp,
// context.cpp) asks of the CPU (cpu/backend.h) and CUDA (cuda/engine_backend.cpp) backends.
// The context checks every batch and records the sequence positions (batch.h) before a
// backend sees it, so backends get only valid batches and keep no positions of their own.
// Which backend a model gets is decided in one place, model_load (model_load.cpp).
#include <cstdint>
#include <memory>
#include <span>

#include "engine/engine.h"
#include "engine/token_choice.h"

namespace rbee::engine {

// A context on a backend: its KV cache, activations and the logits of the last decode.
class backend_context {
 public:
  virtual ~backend_context() = default;

  // Runs the forward pass of a checked batch; logits row r belongs to the r-th entry with
  // want_logits. Throws engine_error only for what the device reports (out of memory, a
  // failed call); does not allocate after the first call with a given number of rows.
  virtual void decode(std::span<const batch_entry> batch) = 0;
  // Logits row `row` of the last decode (n_vocab floats), valid until the next decode.
  virtual std::span<const float> logits(int row) const = 0;
  // The token choose_token picks from logits row `row` with `step`.
  virtual token_id sample(int row, const sampling_step& step) = 0;
  // compute_logprobs (token_choice.h) of logits row `row`; n_top <= min(20, n_vocab).
  virtual void logprobs(int row, token_id token, int n_top, token_logprobs& out) = 0;
  // Copies the first n_pos cached positions of sequence src to sequence dst (src != dst).
  virtual void copy_sequence(int src, int dst, int n_pos) = 0;
  // Device memory the context holds (0 on the CPU).
  virtual uint64_t device_bytes() const = 0;
};

class backend {
 public:
  virtual ~backend() = default;

  // params are checked (positive sizes, n_threads resolved); engine_error(out_of_memory)
  // when the host or device cannot hold the context.
  virtual std::unique_ptr<backend_context> create_context(const context_params& params) = 0;
  // Device memory the model's weights hold (0 on the CPU).
  virtual uint64_t device_bytes() const = 0;
};

// Makes the backend of a loaded model (weights uploaded or read in, progress reported).
using backend_maker = std::unique_ptr<backend> (*)(const model& m, const model_params& params);

}  // namespace rbee::engine
