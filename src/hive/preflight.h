#pragma once
// Resource preflight before a worker starts (SPEC §4 step 4, §5): does the model fit in RAM
// (cpu) or in the chosen device's VRAM (cuda)? The estimate is the engine's own formula
// (engine/memory_estimate.h: weights, f16 KV cache, and the backend's scratch), fed from the
// GGUF header.

#include <cstdint>
#include <string>

#include "engine/memory_estimate.h"
#include "gguf/summary.h"
#include "hive/capabilities.h"

namespace rbee::hive {

engine::memory_needs estimate_memory(const gguf::header_summary& model, int n_ctx, int n_slots,
                                     bool cuda);

// Throws common::http_error 400 BACKEND_UNAVAILABLE when backend/device is not on this node
// ("Device not available. Available: cpu, cuda:0").
void check_backend(const capabilities& caps, const std::string& backend, int device);

// Throws 507 INSUFFICIENT_RAM / INSUFFICIENT_VRAM with details {required_bytes,
// available_bytes, backend, device, hint} when the estimate does not fit.
void check_fits(const capabilities& caps, const std::string& backend, int device,
                const engine::memory_needs& estimate);

}  // namespace rbee::hive
