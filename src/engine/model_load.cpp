// model_load: the one place that picks a model's backend. The CPU backend is always built;
// the CUDA entry comes from cuda/ or, in a build without CUDA, from no_cuda.cpp.
#include "engine/cpu/backend.h"
#include "engine/cuda/entry.h"
#include "engine/model.h"

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

}  // namespace

std::string build_backends() {
  return "cpu, " + cuda::build_description();
}

model_ptr model_load(const std::string& path, const model_params& params) {
  if (params.n_threads < 0)
    throw engine_error(error_code::invalid_argument, "n_threads must not be negative");
  // Before the file is read: a missing backend is the answer whatever the file holds.
  const backend_maker make_backend = find_backend(params.backend);
  model_ptr m = open_model(path, params.n_threads);
  m->backend = make_backend(*m, params);
  return m;
}

}  // namespace rbee::engine
