#pragma once
// What a model run as several backend parts shares, however it is split (split_backend.h by
// layers, tensor_split.h by tensors): each part caches its own share of the keys and values,
// so block and ring copies go to every part; device memory adds up; one part, the output part,
// holds the logits and samples. How a decode runs across the parts is the split's own.
#include <memory>
#include <vector>

#include "engine/backend.h"

namespace rbee::engine {

class parts_context : public backend_context {
 public:
  parts_context(std::vector<std::unique_ptr<backend_context>> parts, size_t output)
      : parts_(std::move(parts)), output_(output) {}

  std::span<const float> logits(int row) const override { return parts_[output_]->logits(row); }
  void sample(std::span<const int> rows, std::span<const sampling_step> steps,
              std::span<token_id> tokens) override {
    parts_[output_]->sample(rows, steps, tokens);
  }
  void logprobs(int row, token_id token, int n_top, token_logprobs& out) override {
    parts_[output_]->logprobs(row, token, n_top, out);
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
  activations residual() override { return parts_[output_]->residual(); }

 protected:
  std::vector<std::unique_ptr<backend_context>> parts_;

 private:
  size_t output_;
};

class parts_backend : public backend {
 public:
  explicit parts_backend(std::vector<std::unique_ptr<backend>> parts) : parts_(std::move(parts)) {}

  uint64_t device_bytes() const override {
    uint64_t bytes = 0;
    for (const auto& p : parts_) bytes += p->device_bytes();
    return bytes;
  }
  void copy_activations(const activations& from, const activations& to, size_t n) override {
    parts_.front()->copy_activations(from, to, n);
  }

 protected:
  std::vector<std::unique_ptr<backend>> parts_;
};

}  // namespace rbee::engine
