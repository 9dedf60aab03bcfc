// The CUDA backend behind the engine's backend interface (backend.h): the device model and
// contexts of cuda_backend.h, with the logits rows copied to the host when first asked for.
#include <algorithm>
#include <vector>

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
  token_id sample(int row, const sampling_step& step) override {
    return cuda::sample(*ctx_, row, step);
  }
  void logprobs(int row, token_id token, int n_top, token_logprobs& out) override {
    cuda::logprobs(*ctx_, row, token, n_top, out);
  }
  void copy_block(int src, int dst) override { cuda::copy_block(*ctx_, src, dst); }
  void copy_ring_layers(int src, int dst, int n_pos) override {
    cuda::copy_ring_layers(*ctx_, src, dst, n_pos);
  }
  uint64_t device_bytes() const override { return cuda::device_bytes(*ctx_); }

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

 private:
  device_model_ptr m_;
};

std::unique_ptr<backend> make_backend(const model& m, const model_params& params) {
  if (params.device < 0)
    throw engine_error(error_code::invalid_argument, "CUDA device index must not be negative");
  return std::make_unique<cuda_backend>(upload(m, params.device, params.on_progress));
}

}  // namespace

backend_maker backend_entry() {
  return make_backend;
}

std::string build_description() {
  return std::string("cuda (sm ") + RBEE_CUDA_ARCHITECTURES + ")";
}

}  // namespace rbee::engine::cuda
