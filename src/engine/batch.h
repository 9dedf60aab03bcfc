#pragma once
// The checks of a decode batch (engine.h's decode documents them), made once by the context
// for every backend, against the positions it records for each sequence.
#include <span>
#include <vector>

#include "engine/engine.h"

namespace rbee::engine {

struct batch_limits {
  int n_batch = 0;
  int n_seq = 0;
  int n_ctx = 0;
  int n_vocab = 0;
};

// Checks the whole batch before any work: engine_error(context_overflow) for a position past
// n_ctx, engine_error(invalid_argument) for an empty or too large batch, an unknown sequence
// or token, or a position that does not continue its sequence. seq_len holds each sequence's
// filled positions; on success next_len holds them after the batch (sized like seq_len: no
// allocation).
void check_batch(std::span<const batch_entry> batch, const batch_limits& limits,
                 std::span<const int> seq_len, std::vector<int>& next_len);

}  // namespace rbee::engine
