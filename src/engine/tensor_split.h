#pragma once
// Tensor parallelism (docs/multi-gpu.md): every layer split across N parts. Part r holds its
// share of the attention heads (the rows of wq and, with grouped-query attention, of whole KV
// heads in wk and wv), the matching columns of attn_output, and its share of the FFN (rows of
// gate and up, the matching columns of down); norms, embeddings and the output matrix are
// the whole model's. After attn_output and after ffn_down each part holds a partial sum of
// the product, which a communicator (communicator.h) adds across the parts before the
// residual add; part 0 computes the logits. Each part is a model of its own (its hparams
// count its heads and FFN rows) that an ordinary backend runs, joined by the tensor_rank of
// its backend_part (backend.h).
#include <memory>
#include <vector>

#include "engine/backend.h"
#include "engine/communicator.h"

namespace rbee::engine {

struct model;

// engine_error(invalid_argument) when `m` does not split into n_parts parts: heads, KV heads
// or FFN rows that do not divide, a quantized matrix whose column slices would cut its blocks
// (naming the tensor and the block size; a split never dequantizes), or experts.
void check_tensor_split(const model& m, int n_parts);

// Part `rank` of n_parts of a checked model: the whole model's views where they are shared,
// row ranges of the file where a slice is whole rows, and copies of the column slices.
// `whole` must outlive it.
model_ptr make_tensor_part(const model& whole, int rank, int n_parts);

// The parts' backends (rank order, each made with its tensor_rank on `comm`) as one backend:
// a decode runs every part at once, one thread each, and part 0's logits are the model's.
// Contexts of the model decode one at a time (their parts share `comm`).
std::unique_ptr<backend> make_tensor_split_backend(std::vector<std::unique_ptr<backend>> parts,
                                                   std::unique_ptr<communicator> comm);

}  // namespace rbee::engine
