#pragma once
// Resource preflight before a worker starts (SPEC §4 step 4, §5): does the model fit in RAM
// (cpu) or in the chosen device's VRAM (cuda)? The estimate mirrors the engine's layout:
//   weights   = the GGUF file size (tensors are mapped/copied as stored)
//   kv cache  = 2 (K and V) * n_layers * n_ctx * n_slots * n_embd_kv * 2 bytes (f16 cache)
//               with n_embd_kv = n_embd * n_head_kv / n_head
//   overhead  = scratch and runtime: 64 MiB + 5 % of the weights (+ 300 MiB CUDA context)

#include <cstdint>
#include <string>

#include "hive/capabilities.h"
#include "hive/gguf_header.h"

namespace rbee::hive {

struct memory_estimate {
  uint64_t weights_bytes = 0;
  uint64_t kv_cache_bytes = 0;
  uint64_t overhead_bytes = 0;
  uint64_t total() const { return weights_bytes + kv_cache_bytes + overhead_bytes; }
};

memory_estimate estimate_memory(const gguf_summary& model, int n_ctx, int n_slots, bool cuda);

// Throws common::http_error 400 BACKEND_UNAVAILABLE when backend/device is not on this node
// ("Device not available. Available: cpu, cuda:0").
void check_backend(const capabilities& caps, const std::string& backend, int device);

// Throws 507 INSUFFICIENT_RAM / INSUFFICIENT_VRAM with details {required_bytes,
// available_bytes, backend, device, hint} when the estimate does not fit.
void check_fits(const capabilities& caps, const std::string& backend, int device,
                const memory_estimate& estimate);

}  // namespace rbee::hive
