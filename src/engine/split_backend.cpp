#include "engine/split_backend.h"

#include <cassert>

namespace rbee::engine {

namespace {

class split_context final : public backend_context {
 public:
  split_context(std::vector<std::unique_ptr<backend_context>> parts,
                const std::vector<std::unique_ptr<backend>>& backends, int n_embd)
      : parts_(std::move(parts)), backends_(backends), n_embd_(n_embd) {}

  void decode(std::span<const batch_entry> batch, const kv_block_tables& tables) override {
    const size_t n = batch.size() * static_cast<size_t>(n_embd_);
    for (size_t i = 0; i < parts_.size(); ++i) {
      if (i > 0)
        backends_[i]->copy_activations(parts_[i - 1]->residual(), parts_[i]->residual(), n);
      parts_[i]->decode(batch, tables);
    }
  }
  std::span<const float> logits(int row) const override { return parts_.back()->logits(row); }
  token_id sample(int row, const sampling_step& step) override {
    return parts_.back()->sample(row, step);
  }
  void logprobs(int row, token_id token, int n_top, token_logprobs& out) override {
    parts_.back()->logprobs(row, token, n_top, out);
  }
  void copy_block(int src, int dst) override {
    for (auto& p : parts_) p->copy_block(src, dst);
  }
  void copy_ring_layers(int src, int dst, int n_pos) override {
    for (auto& p : parts_) p->copy_ring_layers(src, dst, n_pos);
  }
  uint64_t device_bytes() const override {
    uint64_t bytes = 0;
    for (const auto& p : parts_) bytes += p->device_bytes();
    return bytes;
  }
  // The model's output residual stream: the last part's.
  activations residual() override { return parts_.back()->residual(); }

 private:
  std::vector<std::unique_ptr<backend_context>> parts_;
  const std::vector<std::unique_ptr<backend>>& backends_;  // the split backend's, outlives this
  int n_embd_;
};

class split_backend final : public backend {
 public:
  split_backend(std::vector<std::unique_ptr<backend>> parts, int n_embd)
      : parts_(std::move(parts)), n_embd_(n_embd) {}

  std::unique_ptr<backend_context> create_context(const context_params& params) override {
    std::vector<std::unique_ptr<backend_context>> contexts;
    for (auto& p : parts_) contexts.push_back(p->create_context(params));
    return std::make_unique<split_context>(std::move(contexts), parts_, n_embd_);
  }
  uint64_t device_bytes() const override {
    uint64_t bytes = 0;
    for (const auto& p : parts_) bytes += p->device_bytes();
    return bytes;
  }
  void copy_activations(const activations& from, const activations& to, size_t n) override {
    parts_.front()->copy_activations(from, to, n);
  }

 private:
  std::vector<std::unique_ptr<backend>> parts_;
  int n_embd_;
};

}  // namespace

std::unique_ptr<backend> make_split_backend(std::vector<std::unique_ptr<backend>> parts,
                                            int n_embd) {
  assert(parts.size() >= 2 && "a split has two parts or more");
  return std::make_unique<split_backend>(std::move(parts), n_embd);
}

}  // namespace rbee::engine
