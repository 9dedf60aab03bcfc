#include "engine/batch.h"

#include <algorithm>
#include <cassert>

#include "engine/model.h"

namespace rbee::engine {

void check_batch(std::span<const batch_entry> batch, const batch_limits& limits,
                 std::span<const int> seq_len, std::vector<int>& next_len) {
  assert(next_len.size() == seq_len.size() && "check_batch: next_len sized unlike seq_len");
  if (batch.empty()) throw engine_error(error_code::invalid_argument, "decode: empty batch");
  if (static_cast<int>(batch.size()) > limits.n_batch)
    throw engine_error(
        error_code::invalid_argument,
        str("decode: batch of ", batch.size(), " tokens exceeds n_batch ", limits.n_batch));
  std::copy(seq_len.begin(), seq_len.end(), next_len.begin());
  for (const auto& e : batch) {
    if (e.seq < 0 || e.seq >= limits.n_seq)
      throw engine_error(error_code::invalid_argument,
                         str("decode: sequence ", e.seq, " out of range [0, ", limits.n_seq, ")"));
    if (e.token < 0 || e.token >= limits.n_vocab)
      throw engine_error(error_code::invalid_argument,
                         str("decode: token ", e.token, " out of range [0, ", limits.n_vocab, ")"));
    if (e.pos >= limits.n_ctx)
      throw engine_error(error_code::context_overflow,
                         str("position ", e.pos, " of sequence ", e.seq, " exceeds the context of ",
                             limits.n_ctx, " tokens"));
    int& expected = next_len[static_cast<size_t>(e.seq)];
    if (e.pos != expected)
      throw engine_error(
          error_code::invalid_argument,
          str("decode: sequence ", e.seq, " is at position ", expected, ", got ", e.pos));
    ++expected;
  }
}

}  // namespace rbee::engine
