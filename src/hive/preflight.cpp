#include "hive/preflight.h"

#include <algorithm>

#include <fmt/format.h>

#include "common/errors.h"

namespace rbee::hive {
namespace {

constexpr uint64_t mib = 1024 * 1024;

std::string human_bytes(uint64_t n) {
  if (n >= 1024 * mib) return fmt::format("{:.1f} GiB", static_cast<double>(n) / (1024.0 * mib));
  if (n >= mib) return fmt::format("{:.1f} MiB", static_cast<double>(n) / mib);
  return fmt::format("{} bytes", n);
}

}  // namespace

engine::memory_needs estimate_memory(const gguf::header_summary& model, int n_ctx, int n_slots,
                                     bool cuda) {
  // A header without head counts is read as one head (the cache then holds n_embd per
  // position): the estimate errs on the large side.
  const uint64_t n_head = model.head_count > 0 ? model.head_count : 1;
  const engine::model_shape shape{
      .weight_bytes = model.file_size,
      .n_layer = model.block_count,
      .n_embd = model.embedding_length,
      .n_head = n_head,
      .n_head_kv = model.head_count_kv > 0 ? model.head_count_kv : n_head,
      .n_ff = model.feed_forward_length,
      .n_vocab = model.vocab_size,
      .head_dim = model.key_length,
      .n_swa = model.sliding_window,
      .n_swa_layers = model.sliding_layers,
      .bf16_weights = model.quantization == "BF16"};
  return engine::estimate_memory(shape, n_ctx, n_slots, cuda);
}

void check_backend(const capabilities& caps, const std::string& backend, int device) {
  bool ok = false;
  if (backend == "cpu") ok = device == 0;
  if (backend == "cuda") {
    for (const auto& g : caps.gpus) ok = ok || g.index == device;
  }
  if (ok) return;
  auto names = caps.device_names();
  std::string list = fmt::format("{}", fmt::join(names, ", "));
  std::string wanted = backend == "cpu" ? "cpu" : fmt::format("{}:{}", backend, device);
  throw common::http_error(400, common::codes::BACKEND_UNAVAILABLE,
                           fmt::format("Device not available. Available: {}", list),
                           {{"requested", wanted}, {"available", names}});
}

capabilities pooled_for_split(const capabilities& caps, const std::string& backend,
                              const std::vector<int>& devices) {
  capabilities pooled = caps;
  if (backend != "cuda" || devices.empty()) return pooled;
  uint64_t total = 0;
  for (const auto& g : caps.gpus)
    if (std::find(devices.begin(), devices.end(), g.index) != devices.end())
      total += g.vram_free_bytes;
  for (auto& g : pooled.gpus)
    if (g.index == devices.front()) g.vram_free_bytes = total;
  return pooled;
}

uint64_t free_bytes_of(const capabilities& caps, const std::string& backend, int device) {
  if (backend != "cuda") return caps.ram_free_bytes;
  for (const auto& g : caps.gpus) {
    if (g.index == device) return g.vram_free_bytes;
  }
  return 0;
}

worker_size size_worker(const gguf::header_summary& model, const capabilities& caps,
                        const std::string& backend, int device, int requested_ctx,
                        int requested_slots, int min_slots, const sizing_limits& limits,
                        double memory_correction) {
  const bool cuda = backend == "cuda";
  auto corrected = [&](int ctx, int slots) {
    auto needs = estimate_memory(model, ctx, slots, cuda);
    for (uint64_t* part : {&needs.weights, &needs.kv_cache, &needs.scratch}) {
      *part = static_cast<uint64_t>(static_cast<double>(*part) * memory_correction);
    }
    return needs;
  };
  worker_size size;
  size.ctx = requested_ctx;
  if (size.ctx == 0) {
    size.ctx = limits.max_ctx;
    if (model.context_length > 0) {
      size.ctx = static_cast<int>(std::min<uint64_t>(model.context_length, size.ctx));
    }
  }
  if (requested_slots > 0) {
    size.slots = requested_slots;
    size.estimate = corrected(size.ctx, size.slots);
    return size;
  }
  // A tenth of the free memory stays free: the runtime, fragmentation, other processes.
  const uint64_t budget = free_bytes_of(caps, backend, device) / 10 * 9;
  const int cap = std::max(min_slots, cuda ? limits.max_slots : limits.max_slots_cpu);
  constexpr int smallest_ctx = 512;
  for (;;) {
    for (int slots = cap; slots >= min_slots; --slots) {
      auto needs = corrected(size.ctx, slots);
      if (needs.total() <= budget) {
        size.slots = slots;
        size.estimate = needs;
        return size;
      }
    }
    // Only a context the caller left to us is shrunk.
    if (requested_ctx > 0 || size.ctx <= smallest_ctx) break;
    size.ctx = std::max(smallest_ctx, size.ctx / 2);
  }
  size.slots = min_slots;
  size.estimate = corrected(size.ctx, size.slots);
  return size;
}

void check_fits(const capabilities& caps, const std::string& backend, int device,
                const engine::memory_needs& estimate) {
  bool cuda = backend == "cuda";
  uint64_t available = free_bytes_of(caps, backend, device);
  uint64_t required = estimate.total();
  if (required <= available) return;
  auto code = cuda ? common::codes::INSUFFICIENT_VRAM : common::codes::INSUFFICIENT_RAM;
  std::string where = cuda ? fmt::format("VRAM on cuda:{}", device) : std::string("RAM");
  throw common::http_error(
      507, code,
      fmt::format("Not enough {}: the model needs {} but {} is available", where,
                  human_bytes(required), human_bytes(available)),
      {{"required_bytes", required},
       {"available_bytes", available},
       {"weights_bytes", estimate.weights},
       {"kv_cache_bytes", estimate.kv_cache},
       {"scratch_bytes", estimate.scratch},
       {"backend", backend},
       {"device", device},
       {"hint",
        "Try a smaller quantization (e.g. Q4_K_M instead of Q8_0), a smaller --ctx or "
        "fewer slots, or free memory by stopping other workers"}});
}

}  // namespace rbee::hive
