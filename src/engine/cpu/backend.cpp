// The CPU backend: the fast forward pass of the llama family (llama, qwen2, qwen3, gemma2,
// gemma3), batched prefill and decode of several sequences in one call. The families differ
// in what hparams (model.h) records: Q/K/V biases, per-head Q/K norms, post norms, the FFN's
// activation, soft caps, sliding-window layers and which pairs the rotation turns. A part of
// a layer-split model (backend.h: layer_range) runs only its layers and keeps only their KV
// cache. A part of a tensor-parallel model (tensor_split.h) runs its slice of every layer and
// joins its partial sums with the other parts' (communicator.h).
#include "engine/cpu/backend.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cmath>
#include <initializer_list>
#include <map>
#include <new>
#include <thread>
#include <utility>
#include <vector>

#include "engine/communicator.h"
#include "engine/cpu/dispatch.h"
#include "engine/cpu/kernels.h"
#include "engine/cpu/kv_cache.h"
#include "engine/model.h"
#include "engine/quant.h"

namespace rbee::engine {

namespace {

// Each buffer's shape in comments: (rows, cols), rows are tokens of the batch.
struct buffers {
  std::vector<float> x;    // (n_batch, n_embd) residual stream
  std::vector<float> xb;   // (n_batch, n_embd) normalised / projected
  std::vector<float> q;    // (n_batch, n_head*head_dim)
  std::vector<float> k;    // (n_batch, n_head_kv*head_dim)
  std::vector<float> v;    // (n_batch, n_head_kv*head_dim)
  std::vector<float> att;  // (n_batch, n_head*head_dim) attention output
  std::vector<float> hb;   // (n_batch, n_ff) gate
  std::vector<float> hb2;  // (n_batch, n_ff) up
  std::vector<float> out;  // (n_batch, n_embd) final-normalised rows that want logits
  // Per thread: the attention scores of one task's query heads (at most n_head / n_head_kv)
  // over their positions (n_ctx), and over one tile (kv_block_size).
  std::vector<float> scores, tile_scores;
  std::vector<float> rope_cos, rope_sin;  // (n_rope_sets, n_batch, n_rot/2)
  std::vector<int> out_rows;              // (n_batch,) batch index of each logits row
  // Mixture of experts: router probabilities, each expert's tokens and their weights, and
  // the gathered rows of one expert's tokens.
  std::vector<float> router;         // (n_batch, n_expert)
  std::vector<int> expert_tokens;    // (n_expert, n_batch) batch indices per expert
  std::vector<float> expert_weight;  // (n_expert, n_batch) their routing weights
  std::vector<int> expert_count;     // (n_expert,)
  std::vector<float> xe;             // (n_batch, n_embd) rows of one expert's tokens
  std::vector<float> ye;             // (n_batch, n_embd) that expert's outputs
  std::vector<float> moe_out;        // (n_batch, n_embd) weighted sum over the chosen experts
};

// The backend's copies of weights in a layout its kernels read faster than the file's
// (cpu::weight_layout). The model multiplies by rows of the weights the file holds, too: an
// expert's rows of the stacked experts, the Q, K and V rows of a fused QKV weight. Such a view
// reads the copy where its rows are whole groups of it.
class repacked_weights {
 public:
  struct view {
    const void* data;
    cpu::weight_layout layout;
  };
  view of(const weight& w) const {
    auto it = copies_.upper_bound(w.data);
    if (it == copies_.begin()) return {w.data, cpu::weight_layout::gguf};
    const copy& c = (--it)->second;
    const auto offset = static_cast<size_t>(w.data - it->first);
    const size_t row_bytes = w.row_bytes();
    if (offset >= c.n_rows * row_bytes || row_bytes != c.row_bytes || offset % row_bytes != 0)
      return {w.data, cpu::weight_layout::gguf};
    const auto first = static_cast<int64_t>(offset / row_bytes);
    // The rows past the last group keep the file's layout: a view may end there, not in a group.
    const bool whole_groups =
        first % cpu::rows16 == 0 && (w.n_rows % cpu::rows16 == 0 || first + w.n_rows == c.n_rows);
    if (!whole_groups) return {w.data, cpu::weight_layout::gguf};
    return {c.data.get() + offset, cpu::weight_layout::rows16};
  }
  // Reads w in: repacked when the kernels prefer that for its type (true), else left as is.
  // n_threads share the groups of rows out.
  bool add(const weight& w, int n_threads) {
    if (cpu::preferred_layout(w.type) != cpu::weight_layout::rows16) return false;
    const size_t row_bytes = w.row_bytes();
    auto data =
        std::make_unique_for_overwrite<uint8_t[]>(static_cast<size_t>(w.n_rows) * row_bytes);
    const int64_t groups = w.n_rows / cpu::rows16;
    const int n = static_cast<int>(std::clamp<int64_t>(n_threads, 1, std::max<int64_t>(groups, 1)));
    std::vector<std::thread> threads;
    for (int i = 0; i < n; ++i) {
      // Whole groups each; the last range also takes the rows past the last group.
      const int64_t r0 = groups * i / n * cpu::rows16;
      const int64_t r1 = i + 1 == n ? w.n_rows : groups * (i + 1) / n * cpu::rows16;
      const size_t at = static_cast<size_t>(r0) * row_bytes;
      threads.emplace_back([&w, r0, r1, at, out = data.get() + at] {
        cpu::repack_rows16(w.type, w.data + at, r1 - r0, w.n_cols, out);
      });
    }
    for (std::thread& t : threads) t.join();
    copies_.emplace(w.data, copy{std::move(data), w.n_rows, row_bytes});
    return true;
  }

 private:
  struct copy {
    std::unique_ptr<uint8_t[]> data;
    int64_t n_rows;
    size_t row_bytes;
  };
  std::map<const uint8_t*, copy> copies_;  // by the file's bytes they stand for
};

// What the forward pass reads and writes.
struct cpu_state {
  const model* m;
  const repacked_weights* repacked;
  context_params params;
  layer_range layers;
  tensor_rank tensor;      // a tensor-parallel part's rank (comm null otherwise)
  kv_cache cache;          // of `layers` only: cache layer l - layers.first holds layer l
  kv_block_tables tables;  // of the batch being decoded
  cpu::thread_pool pool;
  buffers buf;
  std::vector<uint8_t> matmul_scratch;
  std::vector<std::vector<double>> rope_inv_freq;  // (n_rope_sets, n_rot/2)
  std::vector<float> logits;  // (n_outputs, n_vocab), grows to the largest batch seen
};

// y (n_tokens, w.n_rows) = x (n_tokens, w.n_cols) @ W^T
void matmul(cpu_state& c, const weight& w, const float* x, int n_tokens, float* y) {
  // The kernels want 64-byte aligned scratch; the buffer has 64 bytes of slack for that.
  auto addr = reinterpret_cast<uintptr_t>(c.matmul_scratch.data());
  void* scratch = c.matmul_scratch.data() + ((64 - addr % 64) % 64);
  const repacked_weights::view v = c.repacked->of(w);
  cpu::matmul(c.pool, w.type, v.data, w.n_rows, w.n_cols, x, n_tokens, y, scratch, v.layout);
}

// Several weights of the same input width on one x, in one pool run (see cpu::matmul_many).
void matmul_many(cpu_state& c, std::initializer_list<std::pair<const weight*, float*>> ws,
                 const float* x, int n_tokens) {
  cpu::matmul_op ops[cpu::max_matmul_ops];
  size_t n = 0;
  for (const auto& [w, y] : ws) {
    assert(w->n_cols == ws.begin()->first->n_cols && "matmul_many: weights differ in width");
    const repacked_weights::view v = c.repacked->of(*w);
    ops[n++] = {w->type, v.data, w->n_rows, y, v.layout};
  }
  auto addr = reinterpret_cast<uintptr_t>(c.matmul_scratch.data());
  void* scratch = c.matmul_scratch.data() + ((64 - addr % 64) % 64);
  cpu::matmul_many(c.pool, std::span<const cpu::matmul_op>(ops, n), ws.begin()->first->n_cols, x,
                   n_tokens, scratch);
}

// Rotates pairs of one head vector by the precomputed angles of its token.
void apply_rope(float* vec, const float* cos_t, const float* sin_t, int n_rot, rope_style style) {
  const int half = n_rot / 2;
  if (style == rope_style::adjacent_pairs) {
    for (int i = 0; i < half; ++i) {
      const float v0 = vec[2 * i], v1 = vec[2 * i + 1];
      vec[2 * i] = v0 * cos_t[i] - v1 * sin_t[i];
      vec[2 * i + 1] = v0 * sin_t[i] + v1 * cos_t[i];
    }
  } else {
    for (int i = 0; i < half; ++i) {
      const float v0 = vec[i], v1 = vec[i + half];
      vec[i] = v0 * cos_t[i] - v1 * sin_t[i];
      vec[i + half] = v0 * sin_t[i] + v1 * cos_t[i];
    }
  }
}

void rmsnorm_rows(const float* x, const weight& w, int n_rows, int n, float eps, float* out) {
  const float* g = reinterpret_cast<const float*>(w.data);
  for (int r = 0; r < n_rows; ++r)
    cpu::rmsnorm(x + static_cast<size_t>(r) * n, g, out + static_cast<size_t>(r) * n, n, eps);
}

// Each head (head_dim,) of n_rows rows of n_heads heads, normalised in place (qwen3, gemma3).
void rmsnorm_heads(float* x, const weight& w, int n_rows, int n_heads, int head_dim, float eps) {
  rmsnorm_rows(x, w, n_rows * n_heads, head_dim, eps, x);
}

// x -> c * tanh(x / c) (gemma2's attention and logit caps).
float softcap(float x, float c) {
  return c * std::tanh(x / c);
}

// out = gelu_tanh(gate) * up (gemma's FFN).
void gelu_mul(const float* gate, const float* up, float* out, int64_t n) {
  constexpr float sqrt_2_over_pi = 0.7978845608f;
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = 0.5f * g * (1.0f + std::tanh(sqrt_2_over_pi * (g + 0.044715f * g * g * g))) * up[i];
  }
}

void add_bias(float* y, const weight& b, int n_rows, int n) {
  const float* bias = reinterpret_cast<const float*>(b.data);
  for (int r = 0; r < n_rows; ++r)
    for (int i = 0; i < n; ++i) y[static_cast<size_t>(r) * n + i] += bias[i];
}

void store_value(const kv_cache& cache, const float* src, int n, uint8_t* dst) {
  if (cache.f16())
    cpu::f32_to_f16(src, reinterpret_cast<fp16_t*>(dst), n);
  else
    std::copy_n(src, n, reinterpret_cast<float*>(dst));
}

// A key goes into column `column` of its tile, whose elements are stored by column (kv_cache.h).
void store_key(const kv_cache& cache, const float* src, int n, uint8_t* tile, int column) {
  for (int d = 0; d < n; ++d) {
    const size_t at = static_cast<size_t>(d) * kv_block_size + static_cast<size_t>(column);
    if (cache.f16())
      reinterpret_cast<fp16_t*>(tile)[at] = fp32_to_fp16(src[d]);
    else
      reinterpret_cast<float*>(tile)[at] = src[d];
  }
}

// Where position p of a sequence lives in a layer: in the block its table names, or in row
// p % rows of a sliding layer's ring. Either way positions come in tiles of kv_block_size
// (a ring's rows are a multiple of it): keys by column in the tile, values by row.
struct cache_rows_of {
  uint8_t *k_ring = nullptr, *v_ring = nullptr;  // a ring layer's (seq, head) rows
  int ring_rows = 0;
  const int32_t* blocks = nullptr;  // a paged layer: the sequence's block table
  kv_cache* cache = nullptr;
  int layer = 0, head = 0;  // the cache's layer index

  cache_rows_of(cpu_state& c, int l, int seq, int kv_head)
      : cache(&c.cache), layer(l - c.layers.first), head(kv_head) {
    if (c.cache.paged(layer)) {
      blocks =
          c.tables.blocks + static_cast<size_t>(seq) * static_cast<size_t>(c.tables.max_blocks);
    } else {
      k_ring = c.cache.k_ring(layer, seq, kv_head);
      v_ring = c.cache.v_ring(layer, seq, kv_head);
      ring_rows = c.cache.ring_rows(layer);
    }
  }
  // Bytes from the start of the block or ring to the tile that holds p.
  size_t tile_offset(int p) const {
    return blocks ? 0 : static_cast<size_t>(p % ring_rows / kv_block_size) * tile_bytes();
  }
  size_t tile_bytes() const { return kv_block_size * cache->row_bytes(); }
  static int column(int p) { return p % kv_block_size; }
  uint8_t* k_tile(int p) const {
    return (blocks ? cache->k_block(layer, blocks[p / kv_block_size], head) : k_ring) +
           tile_offset(p);
  }
  uint8_t* v(int p) const {
    return (blocks ? cache->v_block(layer, blocks[p / kv_block_size], head) : v_ring) +
           tile_offset(p) + static_cast<size_t>(column(p)) * cache->row_bytes();
  }
};

// Attention of batch entry `i`, query heads [h0, h0 + n_q) of KV head kvh, over its sequence's
// cached positions 0..pos (the n_swa latest on a sliding layer), one tile at a time: the heads
// share each key and value the tile kernels load.
void attend(cpu_state& c, int layer, const batch_entry& e, int i, int kvh, int h0, int n_q,
            int thread) {
  const hparams& hp = c.m->hp;
  const int hd = hp.head_dim, q_dim = hp.n_head * hd;
  buffers& b = c.buf;
  const float* q = b.q.data() + static_cast<size_t>(i) * q_dim + static_cast<size_t>(h0) * hd;
  const int first = hp.layer_slides(layer) ? std::max(0, e.pos - hp.n_swa + 1) : 0;
  const int n = e.pos + 1 - first;
  // Head g's scores at [g * n, g * n + n); the tile's at tile_scores.
  const size_t heads_per_kv = static_cast<size_t>(hp.n_head / hp.n_head_kv);
  float* scores = b.scores.data() +
                  static_cast<size_t>(thread) * heads_per_kv * static_cast<size_t>(c.params.n_ctx);
  float* tile_scores =
      b.tile_scores.data() + static_cast<size_t>(thread) * heads_per_kv * kv_block_size;
  const cache_rows_of rows(c, layer, e.seq, kvh);
  const float scale = hp.attn_scale, cap = hp.attn_softcap;
  // The kernels once per call: looked up per cached row, the dispatch cost a tenth of the
  // worker's time with short heads (perf, 64 streams of stories260K).
  const cpu::kernel_table& kt = cpu::active_kernels();
  const auto tile_scores_of = c.cache.f16() ? kt.tile_scores_f16 : kt.tile_scores_f32;
  const auto weighted_rows = c.cache.f16() ? kt.weighted_rows_f16 : kt.weighted_rows_f32;
  // The positions of [t, n) that share t's tile.
  const auto run = [&](int t) {
    return std::min(n - t, kv_block_size - cache_rows_of::column(first + t));
  };
  for (int t = 0; t < n; t += run(t)) {
    tile_scores_of(rows.k_tile(first + t), q, n_q, hd, tile_scores);
    const int col = cache_rows_of::column(first + t), len = run(t);
    for (int g = 0; g < n_q; ++g) {
      for (int j = 0; j < len; ++j) {
        const float s = tile_scores[g * kv_block_size + col + j] * scale;
        scores[static_cast<size_t>(g) * n + t + j] = cap > 0 ? softcap(s, cap) : s;
      }
    }
  }
  for (int g = 0; g < n_q; ++g) kt.softmax(scores + static_cast<size_t>(g) * n, n);
  float* out = b.att.data() + static_cast<size_t>(i) * q_dim + static_cast<size_t>(h0) * hd;
  std::fill_n(out, static_cast<size_t>(n_q) * hd, 0.0f);
  for (int t = 0; t < n; t += run(t))
    weighted_rows(scores + t, n, n_q, rows.v(first + t), run(t), hd, out);
}

// The cos/sin of every (rope set, entry, pair) angle, once per batch.
void prepare_rope(cpu_state& c, std::span<const batch_entry> batch) {
  const hparams& hp = c.m->hp;
  const size_t half = static_cast<size_t>(hp.n_rot / 2), nb = static_cast<size_t>(c.params.n_batch);
  for (int set = 0; set < hp.n_rope_sets(); ++set) {
    const std::vector<double>& inv_freq = c.rope_inv_freq[static_cast<size_t>(set)];
    const double freq_scale = hp.rope_of_set(set).freq_scale;
    for (size_t i = 0; i < batch.size(); ++i) {
      const double scaled_pos = freq_scale * batch[i].pos;
      const size_t row = (static_cast<size_t>(set) * nb + i) * half;
      for (size_t j = 0; j < half; ++j) {
        // phi3's LongRoPE scales the rotated dimensions by its attention factor (1 otherwise).
        const double theta = scaled_pos * inv_freq[j];
        c.buf.rope_cos[row + j] = static_cast<float>(std::cos(theta) * hp.rope_attn_factor);
        c.buf.rope_sin[row + j] = static_cast<float>(std::sin(theta) * hp.rope_attn_factor);
      }
    }
  }
}

// Each token's n_expert_used most likely experts (lower index first on ties) with their
// softmax probabilities renormalised to sum 1, grouped by expert.
void route_tokens(cpu_state& c, int n) {
  const hparams& hp = c.m->hp;
  buffers& b = c.buf;
  const size_t ne = static_cast<size_t>(hp.n_expert), nb = static_cast<size_t>(c.params.n_batch);
  std::fill(b.expert_count.begin(), b.expert_count.end(), 0);
  for (int i = 0; i < n; ++i) {
    float* p = b.router.data() + static_cast<size_t>(i) * ne;
    const float max_logit = *std::max_element(p, p + ne);
    float sum = 0;
    for (size_t e = 0; e < ne; ++e) sum += (p[e] = std::exp(p[e] - max_logit));
    for (size_t e = 0; e < ne; ++e) p[e] /= sum;
    // Top-k by repeated selection (k is small), taking chosen experts out with -1.
    size_t chosen[max_experts_used];
    float chosen_p[max_experts_used], total = 0;
    for (int k = 0; k < hp.n_expert_used; ++k) {
      chosen[k] = static_cast<size_t>(std::max_element(p, p + ne) - p);
      chosen_p[k] = p[chosen[k]];
      total += chosen_p[k];
      p[chosen[k]] = -1.0f;
    }
    for (int k = 0; k < hp.n_expert_used; ++k) {
      const size_t slot = chosen[k] * nb + static_cast<size_t>(b.expert_count[chosen[k]]++);
      b.expert_tokens[slot] = i;
      // qwen2moe keeps the probabilities as they are.
      b.expert_weight[slot] = hp.expert_weights_norm ? chosen_p[k] / total : chosen_p[k];
    }
  }
}

// qwen2moe: moe_out (n, d) += sigmoid(ffn_gate_inp_shexp . xb) * the shared SwiGLU FFN of xb.
void add_shared_expert(cpu_state& c, const layer_weights& w, int n) {
  const hparams& hp = c.m->hp;
  buffers& b = c.buf;
  const size_t d = static_cast<size_t>(hp.n_embd);
  matmul_many(c, {{&w.ffn_gate_shexp, b.hb.data()}, {&w.ffn_up_shexp, b.hb2.data()}}, b.xb.data(),
              n);
  cpu::silu_mul(b.hb.data(), b.hb2.data(), b.hb.data(), static_cast<int64_t>(n) * hp.n_ff_shared);
  matmul(c, w.ffn_down_shexp, b.hb.data(), n, b.ye.data());
  const float* g = reinterpret_cast<const float*>(w.ffn_gate_inp_shexp.data);
  for (size_t i = 0; i < static_cast<size_t>(n); ++i) {
    const float* x = b.xb.data() + i * d;
    float logit = 0;
    for (size_t k = 0; k < d; ++k) logit += g[k] * x[k];
    const float gate = 1.0f / (1.0f + std::exp(-logit));
    float* out = b.moe_out.data() + i * d;
    const float* y = b.ye.data() + i * d;
    for (size_t k = 0; k < d; ++k) out[k] += gate * y[k];
  }
}

// moe_out (n, d) = for each token, the weighted sum of its experts' SwiGLU FFNs of xb; each
// expert's matrices are read once for all its tokens.
void moe_ffn(cpu_state& c, const layer_weights& w, int n) {
  const hparams& hp = c.m->hp;
  buffers& b = c.buf;
  const size_t d = static_cast<size_t>(hp.n_embd), nb = static_cast<size_t>(c.params.n_batch);
  matmul(c, w.ffn_gate_inp, b.xb.data(), n, b.router.data());
  route_tokens(c, n);
  std::fill_n(b.moe_out.begin(), static_cast<size_t>(n) * d, 0.0f);
  for (size_t e = 0; e < static_cast<size_t>(hp.n_expert); ++e) {
    const int m = b.expert_count[e];
    if (m == 0) continue;
    const int* tokens = b.expert_tokens.data() + e * nb;
    for (int j = 0; j < m; ++j)
      std::copy_n(b.xb.data() + static_cast<size_t>(tokens[j]) * d, d,
                  b.xe.data() + static_cast<size_t>(j) * d);
    matmul_many(c, {{&w.expert_gate[e], b.hb.data()}, {&w.expert_up[e], b.hb2.data()}}, b.xe.data(),
                m);
    cpu::silu_mul(b.hb.data(), b.hb2.data(), b.hb.data(), static_cast<int64_t>(m) * hp.n_ff);
    matmul(c, w.expert_down[e], b.hb.data(), m, b.ye.data());
    for (int j = 0; j < m; ++j) {
      const float weight = b.expert_weight[e * nb + static_cast<size_t>(j)];
      float* out = b.moe_out.data() + static_cast<size_t>(tokens[j]) * d;
      const float* y = b.ye.data() + static_cast<size_t>(j) * d;
      for (size_t k = 0; k < d; ++k) out[k] += weight * y[k];
    }
  }
  if (w.ffn_gate_shexp) add_shared_expert(c, w, n);
}

// A tensor-parallel part's product of its slice (n rows of n_embd) becomes the whole
// product: the sum over the parts.
void join_partial_sums(cpu_state& c, float* rows, int n) {
  if (c.tensor.comm)
    c.tensor.comm->all_reduce_sum(c.tensor.rank, rows,
                                  static_cast<size_t>(n) * static_cast<size_t>(c.m->hp.n_embd));
}

// Whether the part computes logits: the last part of a layer split, rank 0 of a tensor split.
bool computes_logits(const cpu_state& c) {
  return c.layers.end == c.m->hp.n_layer && (!c.tensor.comm || c.tensor.rank == 0);
}

// Below this many multiply-adds per layer, attention runs without the thread pool.
constexpr int64_t parallel_attention_work = 1 << 18;

// How the query heads of each KV head are shared out: in `groups` tasks of `heads` heads.
// All of them in one task reads each key and value once; a batch of fewer (entry, KV head)
// pairs than twice the threads splits them so that every thread has work.
struct attention_split {
  int groups = 1, heads = 1;
};
attention_split split_attention(const hparams& hp, int n_entries, int n_threads) {
  const int per_kv = hp.n_head / hp.n_head_kv, pairs = n_entries * hp.n_head_kv;
  const int groups = n_threads > 1 ? std::clamp((2 * n_threads + pairs - 1) / pairs, 1, per_kv) : 1;
  const int heads = (per_kv + groups - 1) / groups;
  return {(per_kv + heads - 1) / heads, heads};
}

void ensure_logits(cpu_state& c, int n_outputs) {
  const size_t need = static_cast<size_t>(n_outputs) * static_cast<size_t>(c.m->hp.n_vocab);
  if (c.logits.size() < need) c.logits.resize(need);
}

// The forward pass of a checked batch through the part's layers: from the token embeddings
// (first part) or the residual stream buf.x the part before left, to the logits rows
// buf.out_rows[0, n_out) (last part) or the residual stream for the next part.
void forward(cpu_state& c, std::span<const batch_entry> batch, int n_out) {
  const model& m = *c.m;
  const hparams& hp = m.hp;
  buffers& b = c.buf;
  const int n = static_cast<int>(batch.size());
  const int d = hp.n_embd, hd = hp.head_dim, q_dim = hp.n_head * hd, kv_dim = hp.n_head_kv * hd;
  const int ff = hp.n_ff, half = hp.n_rot / 2;

  // token_embd (n_vocab, d)[token] * embd_scale -> x (n, d)
  if (c.layers.first == 0) {
    for (int i = 0; i < n; ++i)
      cpu::dequantize_row(m.tok_embd.type, m.tok_embd.row(batch[static_cast<size_t>(i)].token),
                          b.x.data() + static_cast<size_t>(i) * d, d);
    if (hp.embd_scale != 1.0f)
      for (size_t j = 0; j < static_cast<size_t>(n) * d; ++j) b.x[j] *= hp.embd_scale;
  }
  prepare_rope(c, batch);
  // Multiply-adds of this batch's attention per layer: each entry reads pos + 1 cached rows.
  int64_t attention_work = 0;
  for (const auto& e : batch) attention_work += int64_t{e.pos + 1} * hp.n_head * hd * 2;
  const size_t nb = static_cast<size_t>(c.params.n_batch);

  for (int l = c.layers.first; l < c.layers.end; ++l) {
    const layer_weights& w = m.layers[static_cast<size_t>(l)];
    rmsnorm_rows(b.x.data(), w.attn_norm, n, d, hp.rms_eps, b.xb.data());
    matmul_many(c, {{&w.wq, b.q.data()}, {&w.wk, b.k.data()}, {&w.wv, b.v.data()}}, b.xb.data(), n);
    if (hp.has_qkv_bias) {
      add_bias(b.q.data(), w.bq, n, q_dim);
      add_bias(b.k.data(), w.bk, n, kv_dim);
      add_bias(b.v.data(), w.bv, n, kv_dim);
    }
    if (hp.has_qk_norm) {
      rmsnorm_heads(b.q.data(), w.attn_q_norm, n, hp.n_head, hd, hp.rms_eps);
      rmsnorm_heads(b.k.data(), w.attn_k_norm, n, hp.n_head_kv, hd, hp.rms_eps);
    }
    // RoPE, then this layer's K/V of every entry into the cache before any attention, so
    // entries of one sequence in this batch see each other causally.
    const size_t rope_base = static_cast<size_t>(hp.rope_set(l)) * nb * half;
    for (int i = 0; i < n; ++i) {
      const batch_entry& e = batch[static_cast<size_t>(i)];
      const float* cs = b.rope_cos.data() + rope_base + static_cast<size_t>(i) * half;
      const float* sn = b.rope_sin.data() + rope_base + static_cast<size_t>(i) * half;
      for (int h = 0; h < hp.n_head; ++h)
        apply_rope(b.q.data() + static_cast<size_t>(i) * q_dim + static_cast<size_t>(h) * hd, cs,
                   sn, hp.n_rot, hp.rope);
      for (int h = 0; h < hp.n_head_kv; ++h) {
        float* k = b.k.data() + static_cast<size_t>(i) * kv_dim + static_cast<size_t>(h) * hd;
        const float* v = b.v.data() + static_cast<size_t>(i) * kv_dim + static_cast<size_t>(h) * hd;
        apply_rope(k, cs, sn, hp.n_rot, hp.rope);
        const cache_rows_of rows(c, l, e.seq, h);
        store_key(c.cache, k, hd, rows.k_tile(e.pos), cache_rows_of::column(e.pos));
        store_value(c.cache, v, hd, rows.v(e.pos));
      }
    }
    // Threads split (entry, KV head, group of its query heads); short attention runs on this
    // thread, since waking the pool would cost more than the work.
    const bool parallel = attention_work >= parallel_attention_work;
    const attention_split split = split_attention(hp, n, parallel ? c.pool.size() : 1);
    const auto attend_task = [&](int task, int thread) {
      const int group = task % split.groups, kvh = task / split.groups % hp.n_head_kv;
      const int i = task / split.groups / hp.n_head_kv;
      const int g0 = group * split.heads;
      const int n_q = std::min(split.heads, hp.n_head / hp.n_head_kv - g0);
      attend(c, l, batch[static_cast<size_t>(i)], i, kvh, kvh * (hp.n_head / hp.n_head_kv) + g0,
             n_q, thread);
    };
    const int n_tasks = n * hp.n_head_kv * split.groups;
    if (parallel) {
      c.pool.run(n_tasks, attend_task);
    } else {
      for (int task = 0; task < n_tasks; ++task) attend_task(task, 0);
    }
    matmul(c, w.wo, b.att.data(), n, b.xb.data());
    join_partial_sums(c, b.xb.data(), n);
    if (w.attn_post_norm)
      rmsnorm_rows(b.xb.data(), w.attn_post_norm, n, d, hp.rms_eps, b.xb.data());
    for (size_t j = 0; j < static_cast<size_t>(n) * d; ++j) b.x[j] += b.xb[j];

    rmsnorm_rows(b.x.data(), w.ffn_norm, n, d, hp.rms_eps, b.xb.data());
    if (hp.n_expert > 0) {
      moe_ffn(c, w, n);
      for (size_t j = 0; j < static_cast<size_t>(n) * d; ++j) b.x[j] += b.moe_out[j];
      continue;
    }
    matmul_many(c, {{&w.ffn_gate, b.hb.data()}, {&w.ffn_up, b.hb2.data()}}, b.xb.data(), n);
    if (hp.ffn_act == ffn_activation::silu)
      cpu::silu_mul(b.hb.data(), b.hb2.data(), b.hb.data(), static_cast<int64_t>(n) * ff);
    else
      gelu_mul(b.hb.data(), b.hb2.data(), b.hb.data(), static_cast<int64_t>(n) * ff);
    matmul(c, w.ffn_down, b.hb.data(), n, b.xb.data());
    join_partial_sums(c, b.xb.data(), n);
    if (w.ffn_post_norm) rmsnorm_rows(b.xb.data(), w.ffn_post_norm, n, d, hp.rms_eps, b.xb.data());
    for (size_t j = 0; j < static_cast<size_t>(n) * d; ++j) b.x[j] += b.xb[j];
  }

  if (n_out == 0 || !computes_logits(c)) return;
  for (int r = 0; r < n_out; ++r)
    rmsnorm_rows(b.x.data() + static_cast<size_t>(b.out_rows[static_cast<size_t>(r)]) * d,
                 m.output_norm, 1, d, hp.rms_eps, b.out.data() + static_cast<size_t>(r) * d);
  matmul(c, m.output, b.out.data(), n_out, c.logits.data());
  if (hp.final_softcap > 0)
    for (size_t j = 0; j < static_cast<size_t>(n_out) * hp.n_vocab; ++j)
      c.logits[j] = softcap(c.logits[j], hp.final_softcap);
}

// Per layer of the part: the rows of a sliding layer's ring, 0 for a layer in the block pool.
std::vector<int> layer_ring_rows(const hparams& hp, const context_params& params,
                                 layer_range layers) {
  std::vector<int> rows;
  for (int l = layers.first; l < layers.end; ++l)
    rows.push_back(hp.layer_slides(l)
                       ? kv_blocks_for(hp.cache_rows(l, params.n_ctx, params.n_batch)) *
                             kv_block_size
                       : 0);
  return rows;
}

std::vector<std::vector<double>> rope_tables(const model& m, int n_ctx) {
  const float* factors = rope_factors_for(m.hp, m.rope_freqs, m.rope_freqs_long, n_ctx);
  std::vector<std::vector<double>> tables;
  for (int set = 0; set < m.hp.n_rope_sets(); ++set)
    tables.push_back(rope_inverse_frequencies(m.hp, factors, set));
  return tables;
}

// Throws std::bad_alloc when host RAM cannot hold the context (the backend reports it).
class cpu_context final : public backend_context {
 public:
  cpu_context(const model& m, const repacked_weights& repacked, const context_params& params,
              const backend_part& part);

  void decode(std::span<const batch_entry> batch, const kv_block_tables& tables) override {
    s_.tables = tables;
    // Logit rows first: the only buffer that may grow (on the first batch of a given size).
    int n_out = 0;
    for (size_t i = 0; i < batch.size(); ++i)
      if (batch[i].want_logits) s_.buf.out_rows[static_cast<size_t>(n_out++)] = static_cast<int>(i);
    if (computes_logits(s_)) ensure_logits(s_, n_out);
    forward(s_, batch, n_out);
  }
  std::span<const float> logits(int row) const override {
    const size_t n_vocab = static_cast<size_t>(s_.m->hp.n_vocab);
    return {s_.logits.data() + static_cast<size_t>(row) * n_vocab, n_vocab};
  }
  void sample(std::span<const int> rows, std::span<const sampling_step> steps,
              std::span<token_id> tokens) override {
    for (size_t i = 0; i < rows.size(); ++i)
      tokens[i] = choose_token(logits(rows[i]), steps[i], candidates_);
  }
  void logprobs(int row, token_id token, int n_top, token_logprobs& out) override {
    compute_logprobs(logits(row), token, n_top, candidates_, out);
  }
  void copy_block(int src, int dst) override {
    const hparams& hp = s_.m->hp;
    const size_t bytes = kv_block_size * s_.cache.row_bytes();
    for (int l = 0; l < n_cache_layers(); ++l) {
      if (!s_.cache.paged(l)) continue;
      for (int h = 0; h < hp.n_head_kv; ++h) {
        std::copy_n(s_.cache.k_block(l, src, h), bytes, s_.cache.k_block(l, dst, h));
        std::copy_n(s_.cache.v_block(l, src, h), bytes, s_.cache.v_block(l, dst, h));
      }
    }
  }
  void copy_ring_layers(int src, int dst, int n_pos) override {
    const hparams& hp = s_.m->hp;
    for (int l = 0; l < n_cache_layers(); ++l) {
      if (s_.cache.paged(l)) continue;
      // A ring holds every position it can: the tiles of the first n_pos rows, or all of them.
      const int rows = std::min(n_pos, s_.cache.ring_rows(l));
      const size_t bytes =
          static_cast<size_t>(kv_blocks_for(rows)) * kv_block_size * s_.cache.row_bytes();
      for (int h = 0; h < hp.n_head_kv; ++h) {
        std::copy_n(s_.cache.k_ring(l, src, h), bytes, s_.cache.k_ring(l, dst, h));
        std::copy_n(s_.cache.v_ring(l, src, h), bytes, s_.cache.v_ring(l, dst, h));
      }
    }
  }
  uint64_t device_bytes() const override { return 0; }
  activations residual() override { return {.data = s_.buf.x.data(), .device = -1}; }

 private:
  int n_cache_layers() const { return s_.layers.end - s_.layers.first; }

  cpu_state s_;
  sampling_candidates candidates_;  // (n_vocab,) reserved: sampling does not allocate
};

cpu_context::cpu_context(const model& m, const repacked_weights& repacked,
                         const context_params& params, const backend_part& part)
    : s_{.m = &m,
         .repacked = &repacked,
         .params = params,
         .layers = part.layers,
         .tensor = part.tensor,
         .cache =
             kv_cache(layer_ring_rows(m.hp, params, part.layers), m.hp.n_head_kv, m.hp.head_dim,
                      params.n_seq, static_cast<int>(kv_pool_blocks(params)), params.kv_f16),
         .tables = {},
         .pool = cpu::thread_pool(params.n_threads),
         .buf = {},
         .matmul_scratch = {},
         .rope_inv_freq = rope_tables(m, params.n_ctx),
         .logits = {}} {
  const hparams& hp = m.hp;
  const size_t nb = static_cast<size_t>(params.n_batch);
  const size_t d = static_cast<size_t>(hp.n_embd), hd = static_cast<size_t>(hp.head_dim);
  const size_t q_dim = static_cast<size_t>(hp.n_head) * hd;
  const size_t kv_dim = static_cast<size_t>(hp.n_head_kv) * hd;
  const size_t ff = static_cast<size_t>(hp.ffn_width());
  const size_t nt = static_cast<size_t>(params.n_threads);
  buffers& b = s_.buf;
  b.out_rows.resize(nb);
  b.x.resize(nb * d);
  b.xb.resize(nb * d);
  b.q.resize(nb * q_dim);
  b.k.resize(nb * kv_dim);
  b.v.resize(nb * kv_dim);
  b.att.resize(nb * q_dim);
  b.hb.resize(nb * ff);
  b.hb2.resize(nb * ff);
  b.out.resize(nb * d);
  if (hp.n_expert > 0) {
    const size_t ne = static_cast<size_t>(hp.n_expert);
    b.router.resize(nb * ne);
    b.expert_tokens.resize(ne * nb);
    b.expert_weight.resize(ne * nb);
    b.expert_count.resize(ne);
    b.xe.resize(nb * d);
    b.ye.resize(nb * d);
    b.moe_out.resize(nb * d);
  }
  const size_t heads_per_kv = static_cast<size_t>(hp.n_head / hp.n_head_kv);
  b.scores.resize(nt * heads_per_kv * static_cast<size_t>(params.n_ctx));
  b.tile_scores.resize(nt * heads_per_kv * kv_block_size);
  const size_t n_sets = static_cast<size_t>(hp.n_rope_sets());
  b.rope_cos.resize(n_sets * nb * static_cast<size_t>(hp.n_rot / 2));
  b.rope_sin.resize(n_sets * nb * static_cast<size_t>(hp.n_rot / 2));
  // Per matmul group: every activation format its weights want, side by side.
  size_t scratch = cpu::matmul_scratch_bytes(m.output.type, m.output.n_cols, nb);
  for (const auto& l : m.layers) {
    // Experts share their types: the first one stands for all.
    const bool moe = !l.expert_gate.empty();
    for (const auto& group :
         {std::vector<const weight*>{&l.wq, &l.wk, &l.wv},
          {&l.wo},
          {moe ? &l.expert_gate[0] : &l.ffn_gate, moe ? &l.expert_up[0] : &l.ffn_up},
          {moe ? &l.expert_down[0] : &l.ffn_down},
          {moe ? &l.ffn_gate_inp : &l.wo},
          {l.ffn_gate_shexp ? &l.ffn_gate_shexp : &l.wo, l.ffn_up_shexp ? &l.ffn_up_shexp : &l.wo},
          {l.ffn_down_shexp ? &l.ffn_down_shexp : &l.wo}}) {
      std::vector<tensor_type> types;
      for (const weight* w : group) types.push_back(w->type);
      scratch = std::max(scratch, cpu::matmul_scratch_bytes(types, group[0]->n_cols, nb));
    }
  }
  s_.matmul_scratch.resize(scratch + 64);
  if (computes_logits(s_)) ensure_logits(s_, params.n_seq);
  candidates_.reserve(static_cast<size_t>(hp.n_vocab));
}

// Whether a part reads a weight in: its layers', and the others (embeddings, output, rope
// factors) on the first and the last part.
bool part_holds(const weight_slot& slot, layer_range layers, int n_layer) {
  if (slot.layer >= 0) return slot.layer >= layers.first && slot.layer < layers.end;
  return layers.first == 0 || layers.end == n_layer;
}

// Lets the kernel take back the whole pages of a read-only file mapping in [p, p + n); they
// are read from the file again if touched.
void drop_pages(const uint8_t* p, size_t n, size_t page) {
  const auto first = (reinterpret_cast<uintptr_t>(p) + page - 1) / page * page;
  const auto end = (reinterpret_cast<uintptr_t>(p) + n) / page * page;
  if (end > first) ::madvise(reinterpret_cast<void*>(first), end - first, MADV_DONTNEED);
}

// Reads the part's weights in now (with progress) rather than during the first decode: those
// the kernels prefer in another layout into `repacked`; of the others every page is touched,
// and stays in the mapping, shared with the page cache.
void read_weights_in(const model& m, layer_range layers,
                     const std::function<void(const load_progress&)>& on_progress,
                     repacked_weights& repacked) {
  std::vector<weight_slot> slots;
  for (const weight_slot& s : m.weight_slots)
    if (part_holds(s, layers, m.hp.n_layer)) slots.push_back(s);
  load_progress progress;
  progress.tensors_total = static_cast<int>(slots.size());
  progress.layers_total = m.hp.n_layer;
  for (const auto& s : slots)
    if (*s.w) progress.bytes_total += static_cast<uint64_t>(s.w->n_rows) * s.w->row_bytes();
  const long page = ::sysconf(_SC_PAGESIZE);
  volatile uint8_t sink = 0;
  for (size_t i = 0; i < slots.size(); ++i) {
    const weight& w = *slots[i].w;
    if (w) {
      const size_t n = static_cast<size_t>(w.n_rows) * w.row_bytes();
      // The part multiplies by its layers' weights, and by the output when it is the last.
      const bool multiplied =
          slots[i].layer >= 0 || (&w == &m.output && layers.end == m.hp.n_layer);
      if (multiplied && repacked.add(w, m.n_threads)) {
        // The copy is what the kernels read: the file's pages need not stay in this process.
        if (m.file.maps(w.data, n)) drop_pages(w.data, n, static_cast<size_t>(page));
      } else {
        uint8_t acc = 0;
        for (size_t off = 0; off < n; off += static_cast<size_t>(page)) acc ^= w.data[off];
        sink = sink ^ acc;
      }
      progress.bytes_loaded += n;
    }
    progress.tensors_loaded = static_cast<int>(i + 1);
    const bool layer_done =
        slots[i].layer >= 0 && (i + 1 == slots.size() || slots[i + 1].layer != slots[i].layer);
    if (layer_done) progress.layers_loaded = slots[i].layer + 1;
    if (on_progress) on_progress(progress);
  }
}

class cpu_backend final : public backend {
 public:
  cpu_backend(const model& m, const backend_part& part, repacked_weights repacked)
      : m_(m), part_(part), repacked_(std::move(repacked)) {}

  std::unique_ptr<backend_context> create_context(const context_params& params) override {
    try {
      return std::make_unique<cpu_context>(m_, repacked_, params, part_);
    } catch (const std::bad_alloc&) {
      throw engine_error(error_code::out_of_memory,
                         str("host RAM: cannot allocate a context of ", params.n_ctx,
                             " positions x ", params.n_seq, " sequences (a KV pool of ",
                             kv_pool_blocks(params) * kv_block_size, " positions)"));
    }
  }
  uint64_t device_bytes() const override { return 0; }
  void copy_activations(const activations& from, const activations& to, size_t n) override {
    assert(from.device == -1 && to.device == -1 && "CPU parts hand over host memory");
    std::copy_n(from.data, n, to.data);
  }

 private:
  const model& m_;
  backend_part part_;
  repacked_weights repacked_;
};

}  // namespace

std::unique_ptr<backend> cpu::make_backend(const model& m, const model_params& params,
                                           const backend_part& part) {
  repacked_weights repacked;
  read_weights_in(m, part.layers, params.on_progress, repacked);
  return std::make_unique<cpu_backend>(m, part, std::move(repacked));
}

}  // namespace rbee::engine
