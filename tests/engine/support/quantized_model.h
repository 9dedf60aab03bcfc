#pragma once
// A GGUF model whose every matrix is one tensor type, quantized with our quantizers from an
// F16/F32 model: models of the types no shared file has. Test support only.
#include <string>

#include "engine/tensor_types.h"

namespace rbee::engine::test_support {

// `source` with every 2-D weight in `type` (1-D tensors copied), written to a temporary file
// named after `tag` and the type; returns its path (the caller removes it).
std::string write_quantized_model(const std::string& source, tensor_type type,
                                  const std::string& tag);

}  // namespace rbee::engine::test_support
