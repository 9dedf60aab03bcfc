// Contexts on any backend: the checks of every batch, the positions of every sequence and
// the books of the paged KV cache (kv_blocks.h) live here once; the backend (backend.h) runs
// the forward pass, keeps the keys, values and logits, and finds positions through the
// block tables.
#include <algorithm>
#include <cassert>
#include <climits>

#include "engine/backend.h"
#include "engine/batch.h"
#include "engine/kv_blocks.h"
#include "engine/model.h"

struct rbee::engine::context {
  const model* m;
  context_params params;
  std::unique_ptr<backend_context> compute;
  kv_block_pool blocks;
  bool prefix_cache;            // no sliding-window layer: full blocks are shared
  std::vector<int> seq_len;     // (n_seq,) positions filled in each sequence
  std::vector<int> next_len;    // (n_seq,) seq_len after the batch being decoded
  std::vector<int> logits_row;  // (n_batch,) logits row of each entry of the last batch, or -1
  // Scratch of a batched sample call (kept to avoid allocating per step).
  std::vector<int> sample_rows;
  std::vector<sampling_step> sample_steps;
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

bool has_sliding_layers(const hparams& hp) {
  for (int l = 0; l < hp.n_layer; ++l)
    if (hp.layer_slides(l)) return true;
  return false;
}

// Blocks the batch just checked (next_len) needs beyond those its sequences hold.
int blocks_needed(const context& ctx) {
  int need = 0;
  for (size_t s = 0; s < ctx.next_len.size(); ++s)
    need += std::max(0, kv_blocks_for(ctx.next_len[s]) - ctx.blocks.n_held(static_cast<int>(s)));
  return need;
}

[[noreturn]] void throw_pool_full(const context& ctx, int need, std::string_view what) {
  const kv_cache_stats st = ctx.blocks.stats();
  throw engine_error(
      error_code::kv_cache_full,
      str("KV cache full: ", what, " needs ", need, " more blocks of ", kv_block_size,
          " positions; ", st.n_blocks - st.n_used, " of the pool's ", st.n_blocks,
          " are free or cached (n_kv_tokens ", int64_t{st.n_blocks} * kv_block_size, ")"));
}

}  // namespace

context_params context_default_params() {
  return {};
}

context_ptr context_create(model& m, const context_params& p) {
  if (p.n_ctx <= 0 || p.n_seq <= 0 || p.n_batch <= 0 || p.n_threads < 0 || p.n_kv_tokens < 0)
    throw engine_error(error_code::invalid_argument,
                       str("context: n_ctx ", p.n_ctx, ", n_seq ", p.n_seq, ", n_batch ", p.n_batch,
                           " must be positive; n_threads ", p.n_threads, ", n_kv_tokens ",
                           p.n_kv_tokens, " must not be negative"));
  const int64_t n_blocks = kv_pool_blocks(p);
  if (n_blocks * kv_block_size > INT_MAX)
    throw engine_error(error_code::invalid_argument,
                       str("context: a KV cache of ", n_blocks * kv_block_size,
                           " positions (n_seq x n_ctx or n_kv_tokens) exceeds ", INT_MAX));
  context_params params = p;
  params.n_threads = p.n_threads > 0 ? p.n_threads : m.n_threads;
  const size_t n_seq = static_cast<size_t>(params.n_seq);
  context_ptr ctx(new context{
      .m = &m,
      .params = params,
      .compute = m.backend->create_context(params),
      .blocks =
          kv_block_pool(static_cast<int>(n_blocks), params.n_seq, kv_blocks_for(params.n_ctx)),
      .prefix_cache = !has_sliding_layers(m.hp),
      .seq_len = std::vector<int>(n_seq, 0),
      .next_len = std::vector<int>(n_seq, 0),
      .logits_row = std::vector<int>(static_cast<size_t>(params.n_batch), -1),
      .sample_rows = {},
      .sample_steps = {}});
  // Sampling allocates nothing per step either: a batch has at most n_batch logits rows.
  ctx->sample_rows.reserve(static_cast<size_t>(params.n_batch));
  ctx->sample_steps.reserve(static_cast<size_t>(params.n_batch));
  return ctx;
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
  const int need = blocks_needed(ctx);
  if (need > ctx.blocks.n_available()) throw_pool_full(ctx, need, "the batch");
  // Blocks taken here stay with their sequence if the backend fails: the next batch of that
  // sequence finds them in its table.
  for (size_t s = 0; s < ctx.next_len.size(); ++s)
    ctx.blocks.grow(static_cast<int>(s), kv_blocks_for(ctx.next_len[s]));
  for (const batch_entry& e : batch) ctx.blocks.set_token(e.seq, e.pos, e.token);
  int n_out = 0;
  for (size_t i = 0; i < batch.size(); ++i) ctx.logits_row[i] = batch[i].want_logits ? n_out++ : -1;
  ctx.compute->decode(batch, {.blocks = ctx.blocks.tables(),
                              .max_blocks = ctx.blocks.max_blocks(),
                              .version = ctx.blocks.tables_version()});
  ctx.seq_len.swap(ctx.next_len);
  if (!ctx.prefix_cache) return;
  // Blocks filled by this batch join the prefix cache.
  for (size_t s = 0; s < ctx.seq_len.size(); ++s)
    if (ctx.seq_len[s] != ctx.next_len[s])
      ctx.blocks.register_full(static_cast<int>(s), ctx.next_len[s] / kv_block_size,
                               ctx.seq_len[s] / kv_block_size);
}

std::span<const float> logits(const context& ctx, int batch_index) {
  return ctx.compute->logits(logits_row_of(ctx, batch_index));
}

token_id sample(context& ctx, int batch_index, sampler& s, std::span<const token_id> history,
                size_t n_prompt, std::span<const uint64_t> allowed) {
  const sample_request request{.batch_index = batch_index,
                               .s = &s,
                               .history = history,
                               .n_prompt = n_prompt,
                               .allowed = allowed};
  token_id token = 0;
  sample(ctx, std::span(&request, 1), std::span(&token, 1));
  return token;
}

void sample(context& ctx, std::span<const sample_request> requests, std::span<token_id> tokens) {
  assert(tokens.size() == requests.size() && "sample: one token per request");
  ctx.sample_rows.clear();
  ctx.sample_steps.clear();
  for (const sample_request& r : requests) {
    // A step's spans point into its sampler: a sampler twice would overwrite its first step.
    assert(
        std::none_of(requests.begin(), &r, [&](const sample_request& e) { return e.s == r.s; }) &&
        "sample: a sampler appears twice in one call");
    ctx.sample_rows.push_back(logits_row_of(ctx, r.batch_index));
    ctx.sample_steps.push_back(r.s->next_step(r.history, r.n_prompt, ctx.m->hp.n_vocab, r.allowed));
  }
  ctx.compute->sample(ctx.sample_rows, ctx.sample_steps, tokens);
}

void logprobs(context& ctx, int batch_index, token_id token, int n_top, token_logprobs& out) {
  const int row = logits_row_of(ctx, batch_index);
  assert(token >= 0 && token < ctx.m->hp.n_vocab && "logprobs: token outside the vocabulary");
  assert(n_top >= 0 && n_top <= max_top_logprobs && "logprobs: n_top out of range");
  ctx.compute->logprobs(row, token, std::min(n_top, ctx.m->hp.n_vocab), out);
}

void sequence_clear(context& ctx, int seq) {
  assert(seq >= 0 && seq < ctx.params.n_seq && "sequence_clear: sequence out of range");
  ctx.blocks.release(seq);
  ctx.seq_len[static_cast<size_t>(seq)] = 0;
}

void sequence_copy(context& ctx, int src, int dst) {
  assert(src >= 0 && src < ctx.params.n_seq && dst >= 0 && dst < ctx.params.n_seq &&
         "sequence_copy: sequence out of range");
  if (src == dst) return;
  sequence_clear(ctx, dst);
  const int n_pos = ctx.seq_len[static_cast<size_t>(src)];
  const int n_full = n_pos / kv_block_size;
  ctx.blocks.share(src, dst, n_full);
  if (n_pos % kv_block_size != 0) {
    // The partial last block is dst's own: both sequences write their next positions there.
    if (ctx.blocks.n_available() == 0) {
      sequence_clear(ctx, dst);
      throw_pool_full(ctx, 1, "copying a sequence");
    }
    ctx.blocks.grow(dst, n_full + 1);
    const int32_t from = ctx.blocks.block(src, n_full), to = ctx.blocks.block(dst, n_full);
    ctx.compute->copy_block(from, to);
    ctx.blocks.copy_tokens(from, to);
  }
  ctx.compute->copy_ring_layers(src, dst, n_pos);
  ctx.seq_len[static_cast<size_t>(dst)] = n_pos;
}

int sequence_reuse_prefix(context& ctx, int seq, std::span<const token_id> prompt) {
  assert(seq >= 0 && seq < ctx.params.n_seq && "sequence_reuse_prefix: sequence out of range");
  assert(ctx.seq_len[static_cast<size_t>(seq)] == 0 &&
         "sequence_reuse_prefix: the sequence is not empty");
  // Blocks an empty sequence still holds are left from a failed decode or copy.
  ctx.blocks.release(seq);
  if (!ctx.prefix_cache || prompt.empty()) return 0;
  // The last prompt token is always decoded, so that its logits exist.
  const int n = ctx.blocks.reuse(seq, prompt, static_cast<int>(prompt.size() - 1) / kv_block_size);
  ctx.seq_len[static_cast<size_t>(seq)] = n * kv_block_size;
  return n * kv_block_size;
}

kv_cache_stats context_kv_stats(const context& ctx) {
  return ctx.blocks.stats();
}

}  // namespace rbee::engine
