// The CUDA backend behind the engine's backend interface (backend.h): the device model and
// contexts of cuda_backend.h, with the logits rows copied to the host when first asked for.
// A part of a layer split (docs/multi-gpu.md) is the device model of its layers; a part of a
// tensor split the device model of its slice of every layer, joined by a communicator
// (communicators.h).
#include <algorithm>
#include <set>
#include <vector>

#include "engine/cuda/check.h"
#include "engine/cuda/communicators.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/entry.h"

namespace rbee::engine::cuda {

namespace {

class cuda_context final : public backend_context {
 public:
  cuda_context(device_context_ptr ctx, const context_params& params)
      : ctx_(std::move(ctx)),
        logits_(static_cast<size_t>(params.n_seq) * static_cast<size_t>(n_vocab(*ctx_))),
        on_host_(static_cast<size_t>(params.n_batch), 0) {}

  void decode(std::span<const batch_entry> batch, const kv_block_tables& tables) override {
    set_block_tables(*ctx_, tables);
    cuda::decode(*ctx_, batch);
    std::fill(on_host_.begin(), on_host_.end(), 0);
    // The only host buffer that may grow (on the first batch with this many logits rows).
    const size_t n_out = static_cast<size_t>(std::count_if(
        batch.begin(), batch.end(), [](const batch_entry& e) { return e.want_logits; }));
    const size_t need = n_out * static_cast<size_t>(n_vocab(*ctx_));
    if (logits_.size() < need) logits_.resize(need);
  }
  std::span<const float> logits(int row) const override {
    const size_t nv = static_cast<size_t>(n_vocab(*ctx_)), r = static_cast<size_t>(row);
    float* out = logits_.data() + r * nv;
    if (!on_host_[r]) {
      copy_logits(*ctx_, row, out);
      on_host_[r] = 1;
    }
    return {out, nv};
  }
  void sample(std::span<const int> rows, std::span<const sampling_step> steps,
              std::span<token_id> tokens) override {
    cuda::sample(*ctx_, rows, steps, tokens);
  }
  void logprobs(int row, token_id token, int n_top, token_logprobs& out) override {
    cuda::logprobs(*ctx_, row, token, n_top, out);
  }
  void copy_block(int src, int dst) override { cuda::copy_block(*ctx_, src, dst); }
  void copy_ring_layers(int src, int dst, int n_pos) override {
    cuda::copy_ring_layers(*ctx_, src, dst, n_pos);
  }
  uint64_t device_bytes() const override { return cuda::device_bytes(*ctx_); }
  activations residual() override { return cuda::residual(*ctx_); }

 private:
  device_context_ptr ctx_;
  // logits() is const to callers: rows come from the device on first use.
  mutable std::vector<float> logits_;     // (n_outputs, n_vocab)
  mutable std::vector<uint8_t> on_host_;  // (n_batch,) per row of logits_
};

class cuda_backend final : public backend {
 public:
  explicit cuda_backend(device_model_ptr m) : m_(std::move(m)) {}

  std::unique_ptr<backend_context> create_context(const context_params& params) override {
    return std::make_unique<cuda_context>(cuda::create_context(*m_, params), params);
  }
  uint64_t device_bytes() const override { return cuda::device_bytes(*m_); }
  void copy_activations(const activations& from, const activations& to, size_t n) override {
    if (from.device >= 0 && from.device != to.device && peers_tried_.insert(from.device).second)
      enable_peer_access(to.device, from.device);
    cuda::copy_activations(from, to, n);
  }

 private:
  // Lets `device` read `peer`'s memory directly where the hardware allows (NVLink, PCIe
  // P2P); without it peer copies are staged through the host by the runtime.
  static void enable_peer_access(int device, int peer) {
    int can = 0;
    if (cudaDeviceCanAccessPeer(&can, device, peer) != cudaSuccess || !can) return;
    RBEE_CUDA_CHECK(cudaSetDevice(device));
    const cudaError_t err = cudaDeviceEnablePeerAccess(peer, 0);
    if (err == cudaErrorPeerAccessAlreadyEnabled) {
      (void)cudaGetLastError();  // enabled before (another model of this process)
      return;
    }
    RBEE_CUDA_CHECK(err);
  }

  device_model_ptr m_;
  std::set<int> peers_tried_;  // devices whose residual streams came here
};

std::unique_ptr<backend> make_backend(const model& m, const model_params& params,
                                      const backend_part& part) {
  if (part.device < 0)
    throw engine_error(error_code::invalid_argument, "CUDA device index must not be negative");
  model_weights w = weights_of(m, part.layers);
  w.tensor = part.tensor;
  if (part.tensor.comm && part.tensor.rank > 0) {
    w.output_norm = w.output = weight{};  // rank 0 of a tensor split computes the logits
  }
  return std::make_unique<cuda_backend>(upload(w, part.device, params.on_progress));
}

}  // namespace

backend_maker backend_entry() {
  return make_backend;
}

uint64_t free_bytes(int device) {
  for (const device_info& d : devices())
    if (d.index == device) return d.vram_free;
  throw engine_error(
      error_code::backend_unavailable,
      str("Device cuda:", device, " not available. Available: ", available_backends()));
}

std::unique_ptr<communicator> make_communicator(const std::vector<int>& devices) {
  const int n_ranks = static_cast<int>(devices.size());
  if (std::all_of(devices.begin(), devices.end(), [&](int d) { return d == devices[0]; }))
    return make_same_device_communicator(devices[0], n_ranks);
  // NCCL gives each GPU one rank.
  if (std::set<int>(devices.begin(), devices.end()).size() != devices.size())
    throw engine_error(error_code::invalid_argument,
                       "tensor split: put the parts either all on one GPU or each on a GPU of "
                       "its own (NCCL gives a GPU one part)");
  return make_nccl_communicator(devices);
}

std::string build_description() {
  return std::string("cuda (sm ") + RBEE_CUDA_ARCHITECTURES + ")";
}

}  // namespace rbee::engine::cuda
