#pragma once
// A model split by layers across devices (docs/multi-gpu.md) as one backend (backend.h): a
// part per device, each a backend of its own running its layer range with its own KV cache
// of those layers. A decode runs the parts in layer order, each handing its residual stream
// to the next; the last part's logits are the model's. The context's block tables are the
// same for every part: each part's pool holds the blocks of its layers.
#include <memory>
#include <vector>

#include "engine/backend.h"

namespace rbee::engine {

// parts: in layer order, covering [0, n_layer) between them; n_embd is the width of the
// residual stream they hand over.
std::unique_ptr<backend> make_split_backend(std::vector<std::unique_ptr<backend>> parts,
                                            int n_embd);

}  // namespace rbee::engine
