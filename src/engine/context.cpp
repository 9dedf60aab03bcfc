// Contexts on any backend: the checks of every batch and the positions of every sequence
// live here once; the backend (backend.h) runs the forward pass and keeps the logits.
#include <algorithm>
#include <cassert>

#include "engine/backend.h"
#include "engine/batch.h"
#include "engine/model.h"

struct rbee::engine::context {
  const model* m;
  context_params params;
  std::unique_ptr<backend_context> compute;
  std::vector<int> seq_len;     // (n_seq,) positions filled in each sequence
  std::vector<int> next_len;    // (n_seq,) seq_len after the batch being decoded
  std::vector<int> logits_row;  // (n_batch,) logits row of each entry of the last batch, or -1
};

namespace rbee::engine {

namespace {

int logits_row_of(const context& ctx, int batch_index) {
  assert(batch_index >= 0 && batch_index < static_cast<int>(ctx.logits_row.size()) &&
         "batch index out of range");
  const int row = ctx.logits_row[static_cast<size_t>(batch_index)];
  assert(row >= 0 && "that batch entry did not ask for logits");
  return row;
}

}  // namespace

context_params context_default_params() {
  return {};
}

context_ptr context_create(model& m, const context_params& p) {
  if (p.n_ctx <= 0 || p.n_seq <= 0 || p.n_batch <= 0 || p.n_threads < 0)
    throw engine_error(error_code::invalid_argument,
                       str("context: n_ctx ", p.n_ctx, ", n_seq ", p.n_seq, ", n_batch ", p.n_batch,
                           ", n_threads ", p.n_threads, " must be positive"));
  context_params params = p;
  params.n_threads = p.n_threads > 0 ? p.n_threads : m.n_threads;
  const size_t n_seq = static_cast<size_t>(params.n_seq);
  return context_ptr(
      new context{.m = &m,
                  .params = params,
                  .compute = m.backend->create_context(params),
                  .seq_len = std::vector<int>(n_seq, 0),
                  .next_len = std::vector<int>(n_seq, 0),
                  .logits_row = std::vector<int>(static_cast<size_t>(params.n_batch), -1)});
}

void context_deleter::operator()(context* c) const {
  delete c;
}

int context_n_ctx(const context& ctx) {
  return ctx.params.n_ctx;
}

int context_n_threads(const context& ctx) {
  return ctx.params.n_threads;
}

uint64_t context_device_bytes(const context& ctx) {
  return ctx.compute->device_bytes();
}

void decode(context& ctx, std::span<const batch_entry> batch) {
  const context_params& p = ctx.params;
  check_batch(
      batch,
      {.n_batch = p.n_batch, .n_seq = p.n_seq, .n_ctx = p.n_ctx, .n_vocab = ctx.m->hp.n_vocab},
      ctx.seq_len, ctx.next_len);
  int n_out = 0;
  for (size_t i = 0; i < batch.size(); ++i) ctx.logits_row[i] = batch[i].want_logits ? n_out++ : -1;
  ctx.compute->decode(batch);
  ctx.seq_len.swap(ctx.next_len);
}

std::span<const float> logits(const context& ctx, int batch_index) {
  return ctx.compute->logits(logits_row_of(ctx, batch_index));
}

token_id sample(context& ctx, int batch_index, sampler& s, std::span<const token_id> history,
                size_t n_prompt, std::span<const uint64_t> allowed) {
  const int row = logits_row_of(ctx, batch_index);
  return ctx.compute->sample(row, s.next_step(history, n_prompt, ctx.m->hp.n_vocab, allowed));
}

void logprobs(context& ctx, int batch_index, token_id token, int n_top, token_logprobs& out) {
  const int row = logits_row_of(ctx, batch_index);
  assert(token >= 0 && token < ctx.m->hp.n_vocab && "logprobs: token outside the vocabulary");
  assert(n_top >= 0 && n_top <= max_top_logprobs && "logprobs: n_top out of range");
  ctx.compute->logprobs(row, token, std::min(n_top, ctx.m->hp.n_vocab), out);
}

void sequence_clear(context& ctx, int seq) {
  assert(seq >= 0 && seq < ctx.params.n_seq && "sequence_clear: sequence out of range");
  ctx.seq_len[static_cast<size_t>(seq)] = 0;
}

void sequence_copy(context& ctx, int src, int dst) {
  assert(src >= 0 && src < ctx.params.n_seq && dst >= 0 && dst < ctx.params.n_seq &&
         "sequence_copy: sequence out of range");
  if (src == dst) return;
  const int n_pos = ctx.seq_len[static_cast<size_t>(src)];
  ctx.compute->copy_sequence(src, dst, n_pos);
  ctx.seq_len[static_cast<size_t>(dst)] = n_pos;
}

}  // namespace rbee::engine
