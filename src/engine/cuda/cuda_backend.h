#pragma once
// The CUDA backend's host-side interface: plain C++, no CUDA types, so its users compile
// without CUDA headers. The model's weights are uploaded once (packed, as in the GGUF); a
// context holds the f16 KV cache of n_seq sequences and runs the whole forward pass on the
// device, returning only the logits. engine_backend.cpp puts it behind the engine's backend
// interface (backend.h); the kernel and model tests use it directly.
//
// Errors: a missing device throws engine_error(backend_unavailable) listing what exists; too
// little VRAM throws engine_error(out_of_memory); a failing CUDA or cuBLAS call throws
// engine_error(backend_unavailable) naming the call, file and line.
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "engine/model.h"
#include "engine/token_choice.h"

namespace rbee::engine::cuda {

struct device_info {
  int index = 0;
  std::string name;  // e.g. "NVIDIA H100 80GB HBM3"
  uint64_t vram_total = 0;
  uint64_t vram_free = 0;
};

// 0 when there is no driver or no GPU (never throws).
int device_count();
std::vector<device_info> devices();
// "cpu, cuda:0 (NVIDIA H100 80GB HBM3)": the backends that exist, for error messages.
std::string available_backends();

// What the forward pass reads: hyperparameters and host views of the weights. A loaded
// model gives one (weights_of); benchmarks may build one from synthetic host buffers.
// layers[i] is the model's layer first_layer + i: a part of a layer split (backend.h) holds
// only its range, without tok_embd unless it is the first part and without output_norm and
// output unless it is the last; it starts from the residual stream of the part before and
// leaves its own for the next (residual). A part of a tensor split holds a slice of every
// layer (hparams counting its heads and FFN rows) and tensor names its communicator.
struct model_weights {
  hparams hp;
  weight tok_embd, output_norm, output, rope_freqs;
  std::vector<layer_weights> layers;
  weight rope_freqs_long;  // phi3's factors beyond its original context
  int first_layer = 0;
  // A tensor-parallel part (tensor_split.h): it joins its partial sums through tensor.comm
  // after attn_output and ffn_down (single-token steps then run without CUDA graphs).
  tensor_rank tensor;
};
model_weights weights_of(const model& m);
model_weights weights_of(const model& m, layer_range layers);

// Device bytes for the weights, an n_seq x n_ctx f16 KV cache (the default block pool) and the
// scratch of a context with batches of up to n_batch tokens.
uint64_t vram_required(const model_weights& w, int n_ctx, int n_seq, int n_batch = 512);

class device_model;
struct device_model_deleter {
  void operator()(device_model* m) const;
};
using device_model_ptr = std::unique_ptr<device_model, device_model_deleter>;

// Copies every weight to device `device`, reporting progress per tensor.
device_model_ptr upload(const model_weights& w, int device,
                        const std::function<void(const load_progress&)>& progress = {});
device_model_ptr upload(const model& m, int device,
                        const std::function<void(const load_progress&)>& progress = {});

class device_context;
struct device_context_deleter {
  void operator()(device_context* c) const;
};
using device_context_ptr = std::unique_ptr<device_context, device_context_deleter>;

// The context keeps a reference to the model: the model must outlive it. Sizes in params
// are positive (the engine's context checks them). The KV cache's full-attention layers hold
// kv_pool_blocks(params) blocks (backend.h); until set_block_tables gives other tables,
// sequence s owns blocks [s * max_blocks, (s + 1) * max_blocks) of a default-sized pool, as
// an unpaged cache would (kernel tests and benchmarks use contexts this way).
device_context_ptr create_context(device_model& m, const context_params& params);

// Runs the forward pass of all entries (any mix of prefill and decode across sequences); the
// logits of the entries with want_logits stay on the device, one row each in batch order.
// The batch is valid: the engine's context checks it first (batch.h) and records the
// positions; the device context keeps none.
void decode(device_context& c, std::span<const batch_entry> batch);
// Copies logits row `row` of the last decode (n_vocab floats) to `out`.
void copy_logits(device_context& c, int row, float* out);

// choose_token's choices (token_choice.h), tokens[i] made on the device from logits row
// rows[i] with steps[i]. Only the tokens come back, in one copy for as many rows as the
// staging of their penalties, offsets and masks holds (each row's worst case fits alone).
void sample(device_context& c, std::span<const int> rows, std::span<const sampling_step> steps,
            std::span<token_id> tokens);
// compute_logprobs (token_choice.h) on the device from logits row `row`; only the n_top pairs
// and the token's log-probability come back.
void logprobs(device_context& c, int row, token_id token, int n_top, token_logprobs& out);
// The block tables of the paged layers (backend.h), uploaded for the next decode when their
// version differs from the last ones given.
void set_block_tables(device_context& c, const kv_block_tables& tables);
// Copies every row of pool block src to block dst in every full-attention layer.
void copy_block(device_context& c, int src, int dst);
// Copies the first n_pos positions of sequence src to sequence dst in the sliding layers'
// rings (nothing on models without them).
void copy_ring_layers(device_context& c, int src, int dst, int n_pos);
// Copies the first n_pos cached positions of sequence src into the blocks of dst's table
// and into its rings.
void copy_sequence(device_context& c, int src, int dst, int n_pos);
int n_vocab(const device_context& c);
// Device bytes a model's weights and a context's buffers hold (as allocated; the CUDA
// runtime's and cuBLAS's own share is not included).
uint64_t device_bytes(const device_model& m);
uint64_t device_bytes(const device_context& c);

// The residual stream of the context's batch (backend.h: activations) on its device.
activations residual(device_context& c);
// Copies n floats of residual stream to a device from another device (a peer copy, direct
// where the devices can reach each other, else staged by the runtime through the host) or
// from host memory. Returns when the copy is done.
void copy_activations(const activations& from, const activations& to, size_t n);

// Single-token decode steps are recorded once per batch size as CUDA graphs and replayed;
// off, every step launches its kernels (for comparison in tests and benchmarks).
void set_use_graphs(device_context& c, bool on);

}  // namespace rbee::engine::cuda
