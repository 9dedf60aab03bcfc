// model_load: the one place that picks a model's backend. The CPU backend is always built;
// the CUDA entry comes from cuda/ or, in a build without CUDA, from no_cuda.cpp. A layer
// split (docs/multi-gpu.md) makes one backend per part and composes them (split_backend.h);
// a tensor split likewise, one backend per slice of every layer (tensor_split.h).
#include "engine/cpu/backend.h"
#include "engine/cuda/entry.h"
#include "engine/layer_split.h"
#include "engine/model.h"
#include "engine/split_backend.h"
#include "engine/tensor_split.h"

namespace rbee::engine {

namespace {

// Throws engine_error(backend_unavailable) for a backend this build does not have.
backend_maker find_backend(backend_kind kind) {
  switch (kind) {
    case backend_kind::cpu:
      return cpu::make_backend;
    case backend_kind::cuda:
      return cuda::backend_entry();
  }
  throw engine_error(error_code::invalid_argument, "unknown backend kind");
}

// The split settings alone, before the file is read.
void check_split_params(const model_params& p) {
  if (p.split == split_mode::none && p.devices.size() > 1)
    throw engine_error(error_code::invalid_argument,
                       str(p.devices.size(), " devices need a split mode: split layer or tensor"));
  if (p.split != split_mode::layer && !p.tensor_split.empty())
    throw engine_error(error_code::invalid_argument,
                       "tensor_split needs split layer (split tensor gives every device an "
                       "equal slice of each layer)");
  for (const int d : p.devices)
    if (d < 0)
      throw engine_error(error_code::invalid_argument,
                         str("device ", d, ": device indices must not be negative"));
}

// A device of the split with its free memory; engine_error(backend_unavailable) listing the
// devices that exist when there is no such device.
split_device device_of(backend_kind kind, int ordinal) {
  if (kind == backend_kind::cuda)
    return {.ordinal = ordinal, .free_bytes = cuda::free_bytes(ordinal)};
  if (ordinal != 0)
    throw engine_error(error_code::backend_unavailable,
                       str("device ", ordinal,
                           " does not exist: the cpu backend has one device, "
                           "0 (a layer split on the CPU names it once per part)"));
  return {.ordinal = 0, .free_bytes = 0};  // host RAM: the weights stay mapped from the file
}

// Scratch and runtime each part of a split holds on a GPU beside its layers.
constexpr uint64_t gpu_part_bytes = 512ull << 20;

std::vector<layer_part> plan_parts(const model& m, const model_params& p,
                                   const std::vector<split_device>& devices) {
  if (p.split != split_mode::layer) {
    const int device = p.devices.empty() ? p.device : p.devices.front();  // one device named
    return {{.device = device, .layers = {0, m.hp.n_layer}}};
  }
  const uint64_t part_bytes = p.backend == backend_kind::cuda ? gpu_part_bytes : 0;
  return plan_layer_split(split_costs_of(m, p.split_kv_positions, part_bytes), devices,
                          p.tensor_split);
}

// Every part of a tensor split loads a slice of every layer, one part after the other: part r's
// progress is reported as the r-th share of the whole load, so a loading bar runs once from 0
// to all layers, not once per part. The parts' slices are about the same size.
model_params part_progress(const model_params& params, int r, int n_parts) {
  model_params p = params;
  if (!params.on_progress) return p;
  p.on_progress = [on_progress = params.on_progress, r, n_parts](const load_progress& part) {
    load_progress whole = part;
    whole.layers_loaded = (r * part.layers_total + part.layers_loaded) / n_parts;
    whole.tensors_loaded = r * part.tensors_total + part.tensors_loaded;
    whole.tensors_total = n_parts * part.tensors_total;
    whole.bytes_loaded = static_cast<uint64_t>(r) * part.bytes_total + part.bytes_loaded;
    whole.bytes_total = static_cast<uint64_t>(n_parts) * part.bytes_total;
    on_progress(whole);
  };
  return p;
}

// A tensor-parallel model: one part per device, each a slice of every layer with a backend
// of its own, joined by a communicator.
void load_tensor_parts(model& m, const model_params& params, backend_maker make_backend,
                       const std::vector<split_device>& devices) {
  const int n_parts = static_cast<int>(devices.size());
  check_tensor_split(m, n_parts);
  std::vector<int> ordinals;
  for (const split_device& d : devices) ordinals.push_back(d.ordinal);
  std::unique_ptr<communicator> comm = params.backend == backend_kind::cuda
                                           ? cuda::make_communicator(ordinals)
                                           : make_host_communicator(n_parts);
  std::vector<std::unique_ptr<backend>> backends;
  for (int r = 0; r < n_parts; ++r) {
    m.tensor_parts.push_back(make_tensor_part(m, r, n_parts));
    const int device = devices[static_cast<size_t>(r)].ordinal;
    backends.push_back(make_backend(*m.tensor_parts.back(), part_progress(params, r, n_parts),
                                    {.device = device,
                                     .layers = {0, m.hp.n_layer},
                                     .tensor = {.comm = comm.get(), .rank = r}}));
    m.parts.push_back({.device = device, .first_layer = 0, .end_layer = m.hp.n_layer});
  }
  m.backend = make_tensor_split_backend(std::move(backends), std::move(comm));
}

}  // namespace

std::string build_backends() {
  return "cpu, " + cuda::build_description();
}

model_ptr model_load(const std::string& path, const model_params& params) {
  if (params.n_threads < 0)
    throw engine_error(error_code::invalid_argument, "n_threads must not be negative");
  // Before the file is read: a missing backend or device is the answer whatever it holds.
  const backend_maker make_backend = find_backend(params.backend);
  check_split_params(params);
  // Every device named must exist; a split without a list is on `device` alone.
  std::vector<split_device> devices;
  const bool listed = !params.devices.empty();
  if (listed || params.split != split_mode::none)
    for (const int d : listed ? params.devices : std::vector<int>{params.device})
      devices.push_back(device_of(params.backend, d));
  model_ptr m = open_model(path, params.n_threads);
  if (params.split == split_mode::tensor) {
    load_tensor_parts(*m, params, make_backend, devices);
    return m;
  }
  const std::vector<layer_part> parts = plan_parts(*m, params, devices);
  std::vector<std::unique_ptr<backend>> backends;
  for (const layer_part& p : parts) {
    backends.push_back(
        make_backend(*m, params, {.device = p.device, .layers = p.layers, .tensor = {}}));
    m->parts.push_back(
        {.device = p.device, .first_layer = p.layers.first, .end_layer = p.layers.end});
  }
  m->backend = backends.size() == 1 ? std::move(backends.front())
                                    : make_split_backend(std::move(backends), m->hp.n_embd);
  return m;
}

}  // namespace rbee::engine
