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

// How a worker is sized when its spawn request leaves context or slots to the hive.
struct sizing_limits {
  int max_ctx = 8192;     // worker.max_ctx: the model's trained context, capped here
  int max_slots = 16;     // worker.max_slots: a GPU worker's slots at most
  int max_slots_cpu = 4;  // worker.max_slots_cpu: a CPU worker's (the cores are shared)
};

struct worker_size {
  int ctx = 0;    // per slot
  int slots = 0;  // sequences at once
  engine::memory_needs estimate;
};

// Context and slots for a new worker: those requested (0 = decide), else the model's trained
// context capped by limits.max_ctx and as many slots as fit in the device's free memory, up to
// the backend's cap and at least min_slots. When even min_slots do not fit, the context is
// halved (not below 512) before giving up; check_fits then tells the client. The estimate is
// multiplied by memory_correction (what running workers of the model really take).
worker_size size_worker(const gguf::header_summary& model, const capabilities& caps,
                        const std::string& backend, int device, int requested_ctx,
                        int requested_slots, int min_slots, const sizing_limits& limits,
                        double memory_correction = 1.0);

// A layer split's devices as one for sizing: caps with the first GPU of `devices` holding the
// free memory of all of them (a GPU named twice counts once). The engine's plan then checks
// each device's part when the worker loads (docs/multi-gpu.md). The CPU's caps are unchanged.
capabilities pooled_for_split(const capabilities& caps, const std::string& backend,
                              const std::vector<int>& devices);

// The free memory of the backend's device (RAM for the CPU).
uint64_t free_bytes_of(const capabilities& caps, const std::string& backend, int device);

// Throws 507 INSUFFICIENT_RAM / INSUFFICIENT_VRAM with details {required_bytes,
// available_bytes, backend, device, hint} when the estimate does not fit.
void check_fits(const capabilities& caps, const std::string& backend, int device,
                const engine::memory_needs& estimate);

}  // namespace rbee::hive
