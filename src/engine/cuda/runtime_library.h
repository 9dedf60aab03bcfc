#pragma once
// Libraries the CUDA backend loads at run time (cuBLAS, NCCL), so that builds and nodes without
// them still start: a missing library or symbol is an engine_error(backend_unavailable) that
// says what needed it and what to do. Loaded libraries stay loaded for the life of the process.
#include <dlfcn.h>

#include <string>

#include "engine/engine.h"

namespace rbee::engine::cuda {

// dlopen(soname), or "<purpose> needs <soname>, which could not be loaded: <why>; <hint>".
inline void* load_runtime_library(const std::string& soname, const std::string& purpose,
                                  const std::string& hint) {
  void* lib = dlopen(soname.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    const char* why = dlerror();
    throw engine_error(error_code::backend_unavailable,
                       purpose + " needs " + soname + ", which could not be loaded: " +
                           (why ? why : "unknown error") + "; " + hint);
  }
  return lib;
}

template <class F>
void bind_symbol(void* lib, F& fn, const char* name, const std::string& soname) {
  fn = reinterpret_cast<F>(dlsym(lib, name));
  if (!fn) throw engine_error(error_code::backend_unavailable, soname + " has no symbol " + name);
}

}  // namespace rbee::engine::cuda
