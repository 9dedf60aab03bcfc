#include "engine/split_backend.h"

#include <cassert>

#include "engine/parts_backend.h"

namespace rbee::engine {

namespace {

// The parts in layer order, each handing its residual stream to the next; the last one holds
// the logits.
class split_context final : public parts_context {
 public:
  split_context(std::vector<std::unique_ptr<backend_context>> parts,
                const std::vector<std::unique_ptr<backend>>& backends, int n_embd)
      : parts_context(std::move(parts), backends.size() - 1),
        backends_(backends),
        n_embd_(n_embd) {}

  void decode(std::span<const batch_entry> batch, const kv_block_tables& tables) override {
    const size_t n = batch.size() * static_cast<size_t>(n_embd_);
    for (size_t i = 0; i < parts_.size(); ++i) {
      if (i > 0)
        backends_[i]->copy_activations(parts_[i - 1]->residual(), parts_[i]->residual(), n);
      parts_[i]->decode(batch, tables);
    }
  }

 private:
  const std::vector<std::unique_ptr<backend>>& backends_;  // the split backend's, outlives this
  int n_embd_;
};

class split_backend final : public parts_backend {
 public:
  split_backend(std::vector<std::unique_ptr<backend>> parts, int n_embd)
      : parts_backend(std::move(parts)), n_embd_(n_embd) {}

  std::unique_ptr<backend_context> create_context(const context_params& params) override {
    std::vector<std::unique_ptr<backend_context>> contexts;
    for (auto& p : parts_) contexts.push_back(p->create_context(params));
    return std::make_unique<split_context>(std::move(contexts), parts_, n_embd_);
  }

 private:
  int n_embd_;
};

}  // namespace

std::unique_ptr<backend> make_split_backend(std::vector<std::unique_ptr<backend>> parts,
                                            int n_embd) {
  assert(parts.size() >= 2 && "a split has two parts or more");
  return std::make_unique<split_backend>(std::move(parts), n_embd);
}

}  // namespace rbee::engine
