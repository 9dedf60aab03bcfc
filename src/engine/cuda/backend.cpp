// The CUDA backend's host side: devices, weight upload, contexts and the forward pass, which
// enqueues the kernels of ops.h on one stream. Single-token steps (up to max_matvec_tokens
// tokens) are captured once per shape as CUDA graphs and replayed.
#include <algorithm>
#include <bit>
#include <cassert>
#include <cmath>
#include <map>
#include <tuple>
#include <unordered_map>

#include "engine/communicator.h"
#include "engine/cuda/check.h"
#include "engine/cuda/cublas_api.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/ops.h"

namespace rbee::engine::cuda {

void throw_cuda_error(cudaError_t err, const char* call, const char* file, int line) {
  const error_code code = err == cudaErrorMemoryAllocation ? error_code::out_of_memory
                                                           : error_code::backend_unavailable;
  throw engine_error(code, str("CUDA error ", cudaGetErrorName(err), " (", cudaGetErrorString(err),
                               ") in ", call, " at ", file, ":", line));
}

void throw_cublas_error(cublasStatus_t st, const char* call, const char* file, int line) {
  const error_code code = st == CUBLAS_STATUS_ALLOC_FAILED ? error_code::out_of_memory
                                                           : error_code::backend_unavailable;
  throw engine_error(code, str("cuBLAS error ", cublas().status_name(st), " (",
                               cublas().status_string(st), ") in ", call, " at ", file, ":", line));
}

namespace {

constexpr size_t alignment = 256;

size_t align_up(size_t n) {
  return (n + alignment - 1) / alignment * alignment;
}

// A weight in device memory, same packing as on the host.
struct dweight {
  tensor_type type = tensor_type::f32;
  const uint8_t* data = nullptr;
  int64_t n_cols = 0, n_rows = 0;
  explicit operator bool() const { return data != nullptr; }
  const float* f32() const { return reinterpret_cast<const float*>(data); }
};

struct dlayer {
  dweight attn_norm, wq, wk, wv, wo, bq, bk, bv, ffn_norm, ffn_gate, ffn_up, ffn_down;
  dweight attn_q_norm, attn_k_norm, attn_post_norm, ffn_post_norm;  // null where absent
  // Mixture of experts: the router and each expert's matrices (empty for a dense FFN).
  dweight ffn_gate_inp;
  std::vector<dweight> expert_gate, expert_up, expert_down;
  expert_matrices experts_gate, experts_up, experts_down;  // the same, as strided arrays
  dweight ffn_gate_inp_shexp, ffn_gate_shexp, ffn_up_shexp, ffn_down_shexp;  // qwen2moe
  // wq|wk|wv and ffn_gate|ffn_up as one matrix when they lie back to back in the same type:
  // one product (one launch, one bigger grid) instead of three or two. Null otherwise.
  dweight wqkv, ffn_gate_up;
};

// The rows of `parts` as one matrix, when they are consecutive in memory with one type.
dweight stacked(std::initializer_list<const dweight*> parts) {
  const dweight& first = **parts.begin();
  dweight s = first;
  s.n_rows = 0;
  const uint8_t* next = first.data;
  for (const dweight* p : parts) {
    if (p->type != first.type || p->n_cols != first.n_cols || p->data != next) return {};
    s.n_rows += p->n_rows;
    next += row_size(p->type, p->n_cols) * static_cast<size_t>(p->n_rows);
  }
  return s;
}

// A layer's experts of one kind as one strided array: visit_tensors uploads them one after
// the other, each of the same type and size.
expert_matrices strided(const std::vector<dweight>& experts) {
  const dweight& first = experts.front();
  const size_t stride = experts.size() > 1 ? static_cast<size_t>(experts[1].data - first.data) : 0;
  for (size_t e = 0; e < experts.size(); ++e)
    assert(experts[e].data == first.data + e * stride && experts[e].type == first.type &&
           experts[e].n_rows == first.n_rows && experts[e].n_cols == first.n_cols &&
           "strided: a layer's experts are not evenly spaced");
  return {.type = first.type,
          .w = first.data,
          .stride = stride,
          .row_bytes = row_size(first.type, first.n_cols),
          .rows = first.n_rows,
          .cols = first.n_cols};
}

void check_device(int device) {
  if (device < 0 || device >= device_count())
    throw engine_error(
        error_code::backend_unavailable,
        str("Device cuda:", device, " not available. Available: ", available_backends()));
}

uint64_t free_vram(int device) {
  size_t free = 0, total = 0;
  RBEE_CUDA_CHECK(cudaSetDevice(device));
  RBEE_CUDA_CHECK(cudaMemGetInfo(&free, &total));
  return free;
}

void require_vram(uint64_t need, int device) {
  const uint64_t avail = free_vram(device);
  if (need > avail)
    throw engine_error(error_code::out_of_memory,
                       str("Not enough GPU memory: VRAM required ", need / (1024 * 1024),
                           " MiB, available ", avail / (1024 * 1024), " MiB on cuda:", device));
}

bool supported(tensor_type t) {
  switch (t) {
    case tensor_type::f32:
    case tensor_type::f16:
    case tensor_type::bf16:
    case tensor_type::q4_0:
    case tensor_type::q4_1:
    case tensor_type::q5_0:
    case tensor_type::q5_1:
    case tensor_type::q8_0:
    case tensor_type::q4_k:
    case tensor_type::q5_k:
    case tensor_type::q6_k:
    case tensor_type::q2_k:
    case tensor_type::q3_k:
    case tensor_type::iq4_nl:
    case tensor_type::iq4_xs:
      return true;
    default:
      return false;
  }
}

// The tensors of a model in one order, for the host's weights and the device's copies alike:
// the upload pairs them by position. visit(tensor, layer) with layer -1 outside the layers;
// the layers' expert vectors must already have their size. A layer's experts of one kind come
// one after the other, so that their device copies lie a fixed stride apart (expert_matrices).
template <class Model, class Visit>
void visit_tensors(Model& m, Visit visit) {
  for (auto* p : {&m.tok_embd, &m.output_norm, &m.output, &m.rope_freqs, &m.rope_freqs_long}) {
    visit(p, -1);
  }
  for (size_t i = 0; i < m.layers.size(); ++i) {
    auto& l = m.layers[i];
    const int layer = static_cast<int>(i);
    for (auto* p : {&l.attn_norm,
                    &l.wq,
                    &l.wk,
                    &l.wv,
                    &l.wo,
                    &l.bq,
                    &l.bk,
                    &l.bv,
                    &l.ffn_norm,
                    &l.ffn_gate,
                    &l.ffn_up,
                    &l.ffn_down,
                    &l.attn_q_norm,
                    &l.attn_k_norm,
                    &l.attn_post_norm,
                    &l.ffn_post_norm,
                    &l.ffn_gate_inp,
                    &l.ffn_gate_inp_shexp,
                    &l.ffn_gate_shexp,
                    &l.ffn_up_shexp,
                    &l.ffn_down_shexp})
      visit(p, layer);
    for (auto* experts : {&l.expert_gate, &l.expert_up, &l.expert_down})
      for (auto& e : *experts) visit(&e, layer);
  }
}

// Every weight of a model with the layer it belongs to (-1: not in a layer).
struct weight_ref {
  const weight* host;
  int layer;
};
std::vector<weight_ref> all_weights(const model_weights& w) {
  std::vector<weight_ref> out;
  visit_tensors(w, [&](const weight* p, int layer) { out.push_back({p, layer}); });
  return out;
}

uint64_t weight_bytes(const model_weights& w) {
  uint64_t total = 0;
  std::vector<const uint8_t*> seen;
  for (const auto& r : all_weights(w)) {
    if (!*r.host || std::find(seen.begin(), seen.end(), r.host->data) != seen.end()) continue;
    seen.push_back(r.host->data);
    total += align_up(r.host->row_bytes() * static_cast<size_t>(r.host->n_rows));
  }
  return total;
}

// The log-probabilities buffer: the token's, then max_top_logprobs of the top pairs (their
// ids follow the floats).
constexpr size_t logprobs_floats = 1 + max_top_logprobs;

// Sizes of a context's device buffers (bytes, each aligned).
struct context_layout {
  size_t kv = 0;      // one of K or V: the pool's blocks and the rings (kv_layer_offsets)
  size_t tables = 0;  // the block tables (n_seq, kv_blocks_for(n_ctx))
  size_t x = 0, qkv = 0, q = 0, ff = 0, logits = 0, q8 = 0, att_scratch = 0, att_counters = 0,
         gemm = 0, ints = 0, rope = 0, rope_table = 0;
  // Mixture of experts (0 for a dense FFN): the router logits (n_batch, n_expert); per (token,
  // slot) pair (n_batch * n_used) one int32 or float array (expert ids, routing weights, the
  // grouped order and each pair's place in it); where each expert's pairs start (n_expert + 1);
  // the pairs' gate, up and SwiGLU rows (n_ff each); their input rows, then their output rows
  // (n_embd); the q8 blocks of a decode's SwiGLU rows.
  size_t moe = 0, moe_pairs = 0, moe_offsets = 0, moe_ff = 0, moe_rows = 0, moe_q8 = 0;
  // Sampling: the penalized tokens and the offsets (up to a vocabulary each), the allowed-token
  // bits of a constrained choice, scratch, the chosen tokens (one per batch row) and the
  // log-probabilities (the token's, then the top pairs).
  size_t penalized = 0, offsets = 0, allowed = 0, sample = 0, token = 0, logprobs = 0;
  size_t total() const {
    return 2 * kv + tables + 4 * x + qkv + 2 * q + 3 * ff + logits + q8 + att_scratch +
           att_counters + gemm + ints + rope + rope_table + penalized + offsets + allowed + sample +
           token + logprobs + moe + (moe > 0 ? x : 0) + 4 * moe_pairs + moe_offsets + 3 * moe_ff +
           moe_rows + moe_q8;
  }
};

// q8 blocks of the widest activation rows of a decode-sized batch.
size_t q8_blocks_max(const hparams& hp) {
  const size_t widest =
      std::max({static_cast<size_t>(hp.n_embd), static_cast<size_t>(hp.n_head) * hp.head_dim,
                static_cast<size_t>(hp.ffn_width())});
  return static_cast<size_t>(max_matvec_tokens) * (widest / 32 + 1);
}

// q8 blocks of the SwiGLU rows of a decode-sized batch's (token, slot) pairs.
size_t moe_q8_blocks(const hparams& hp) {
  return static_cast<size_t>(max_matvec_tokens) * static_cast<size_t>(hp.n_expert_used) *
         (static_cast<size_t>(hp.n_ff) / 32 + 1);
}

// Halves of one of K or V before each layer's part of the cache, and the total at the end:
// a full-attention layer holds the pool's blocks, a sliding layer a ring per sequence.
// Only the layers of the weights' part have a cache.
std::vector<size_t> kv_layer_offsets(const model_weights& w, const context_params& p) {
  const hparams& hp = w.hp;
  const size_t kv_dim = static_cast<size_t>(hp.n_head_kv) * hp.head_dim;
  const size_t pool_rows = static_cast<size_t>(kv_pool_blocks(p)) * kv_block_size;
  std::vector<size_t> offsets{0};
  const int end = w.first_layer + static_cast<int>(w.layers.size());
  for (int l = w.first_layer; l < end; ++l) {
    const size_t rows = hp.layer_slides(l)
                            ? static_cast<size_t>(p.n_seq) *
                                  static_cast<size_t>(hp.cache_rows(l, p.n_ctx, p.n_batch))
                            : pool_rows;
    offsets.push_back(offsets.back() + rows * kv_dim);
  }
  return offsets;
}

context_layout layout_of(const model_weights& w, const context_params& p) {
  const hparams& hp = w.hp;
  const int n_ctx = p.n_ctx, n_batch = p.n_batch;
  const size_t nb = static_cast<size_t>(n_batch);
  const size_t q_dim = static_cast<size_t>(hp.n_head) * hp.head_dim;
  const size_t kv_dim = static_cast<size_t>(hp.n_head_kv) * hp.head_dim;
  const size_t n_rope_sets = static_cast<size_t>(hp.n_rope_sets());
  context_layout c;
  c.kv = align_up(kv_layer_offsets(w, p).back() * 2);
  c.tables = align_up(static_cast<size_t>(p.n_seq) * static_cast<size_t>(kv_blocks_for(n_ctx)) *
                      sizeof(int32_t));
  c.x = align_up(nb * hp.n_embd * 4);
  c.q = align_up(nb * q_dim * 4);
  c.qkv = align_up(nb * (q_dim + 2 * kv_dim) * 4);
  c.ff = align_up(nb * hp.ffn_width() * 4);
  c.logits = w.output ? align_up(nb * hp.n_vocab * 4) : 0;  // the last part's
  c.q8 = align_up(q8_bytes(q8_blocks_max(hp)));
  c.att_scratch =
      align_up(attention_scratch_floats(n_batch, hp.n_head, hp.head_dim, n_ctx) * sizeof(float));
  c.att_counters = align_up(nb * hp.n_head * sizeof(int));
  for (const auto& r : all_weights(w)) {
    const weight& wt = *r.host;
    if (wt && wt.n_rows > 1 && r.host != &w.tok_embd)
      c.gemm = std::max(c.gemm, gemm_scratch_bytes(wt.type, wt.n_rows, wt.n_cols, n_batch));
  }
  // Stacked products (dlayer) are bigger than their parts.
  for (const auto& l : w.layers) {
    c.gemm = std::max(c.gemm, gemm_scratch_bytes(l.wq.type, l.wq.n_rows + l.wk.n_rows + l.wv.n_rows,
                                                 l.wq.n_cols, n_batch));
    c.gemm = std::max(c.gemm, gemm_scratch_bytes(l.ffn_gate.type, 2 * l.ffn_gate.n_rows,
                                                 l.ffn_gate.n_cols, n_batch));
  }
  // tokens, positions, sequences, logits rows, then the attention tiles (two ints each).
  c.ints = align_up(6 * nb * sizeof(int32_t));
  if (hp.n_expert > 0) {
    const size_t n_pairs = nb * static_cast<size_t>(hp.n_expert_used);
    c.moe = align_up(nb * static_cast<size_t>(hp.n_expert) * sizeof(float));
    c.moe_pairs = align_up(n_pairs * sizeof(int32_t));
    c.moe_offsets = align_up((static_cast<size_t>(hp.n_expert) + 1) * sizeof(int32_t));
    c.moe_ff = align_up(n_pairs * static_cast<size_t>(hp.n_ff) * sizeof(float));
    c.moe_rows = align_up(n_pairs * static_cast<size_t>(hp.n_embd) * sizeof(float));
    c.moe_q8 = align_up(q8_bytes(moe_q8_blocks(hp)));
  }
  c.rope = align_up(n_rope_sets * static_cast<size_t>(hp.n_rot / 2) * sizeof(double));
  c.rope_table = align_up(n_rope_sets * nb * static_cast<size_t>(hp.n_rot / 2) * sizeof(float2));
  c.penalized = align_up(static_cast<size_t>(hp.n_vocab) * sizeof(int32_t));
  c.allowed = align_up((static_cast<size_t>(hp.n_vocab) + 63) / 64 * sizeof(uint64_t));
  c.sample = align_up(sample_scratch_bytes(hp.n_vocab));
  c.offsets = align_up(static_cast<size_t>(hp.n_vocab) * sizeof(token_offset));
  c.token = align_up(nb * sizeof(int32_t));
  c.logprobs = align_up(logprobs_floats * sizeof(float) + max_top_logprobs * sizeof(int32_t));
  return c;
}

// A device allocation freed at scope exit (temporary buffers).
class device_buffer {
 public:
  explicit device_buffer(size_t bytes) {
    if (bytes > 0) RBEE_CUDA_CHECK(cudaMalloc(&p_, bytes));
  }
  ~device_buffer() { cudaFree(p_); }
  device_buffer(const device_buffer&) = delete;
  device_buffer& operator=(const device_buffer&) = delete;
  void* get() const { return p_; }

 private:
  void* p_ = nullptr;
};

// cuBLAS keeps a workspace and the runtime a context per device beyond our buffers.
constexpr uint64_t runtime_margin = 256ull << 20;

}  // namespace

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // a missing driver is an answer (0), not an error to keep
    return 0;
  }
  return n;
}

std::vector<device_info> devices() {
  std::vector<device_info> out;
  const int n = device_count();
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp prop{};
    RBEE_CUDA_CHECK(cudaGetDeviceProperties(&prop, i));
    size_t free = 0, total = 0;
    RBEE_CUDA_CHECK(cudaSetDevice(i));
    RBEE_CUDA_CHECK(cudaMemGetInfo(&free, &total));
    out.push_back({i, prop.name, total, free});
  }
  return out;
}

std::string available_backends() {
  std::string s = "cpu";
  const int n = device_count();
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) == cudaSuccess)
      s += str(", cuda:", i, " (", prop.name, ")");
  }
  return s;
}

model_weights weights_of(const model& m) {
  return weights_of(m, {0, m.hp.n_layer});
}

model_weights weights_of(const model& m, layer_range layers) {
  const bool first = layers.first == 0, last = layers.end == m.hp.n_layer;
  return {.hp = m.hp,
          .tok_embd = first ? m.tok_embd : weight{},
          .output_norm = last ? m.output_norm : weight{},
          .output = last ? m.output : weight{},
          .rope_freqs = m.rope_freqs,
          .layers = std::vector<layer_weights>(m.layers.begin() + layers.first,
                                               m.layers.begin() + layers.end),
          .rope_freqs_long = m.rope_freqs_long,
          .first_layer = layers.first,
          .tensor = {}};
}

uint64_t vram_required(const model_weights& w, int n_ctx, int n_seq, int n_batch) {
  context_params p = context_default_params();
  p.n_ctx = n_ctx;
  p.n_seq = n_seq;
  p.n_batch = n_batch;
  return weight_bytes(w) + layout_of(w, p).total() + runtime_margin;
}

class device_model {
 public:
  device_model(const model_weights& w, int device) : w_(w), device_(device) {}
  ~device_model() {
    cudaSetDevice(device_);
    cudaFree(arena_);
  }
  device_model(const device_model&) = delete;
  device_model& operator=(const device_model&) = delete;

  model_weights w_;  // host views: shapes and types for the context's layout
  int device_;
  void* arena_ = nullptr;
  uint64_t arena_bytes_ = 0;
  dweight tok_embd, output_norm, output, rope_freqs, rope_freqs_long;
  std::vector<dlayer> layers;
};

void device_model_deleter::operator()(device_model* m) const {
  delete m;
}

device_model_ptr upload(const model& m, int device,
                        const std::function<void(const load_progress&)>& progress) {
  return upload(weights_of(m), device, progress);
}

device_model_ptr upload(const model_weights& w, int device,
                        const std::function<void(const load_progress&)>& progress) {
  check_device(device);
  const auto refs = all_weights(w);
  for (const auto& r : refs)
    if (*r.host && !supported(r.host->type))
      throw engine_error(
          error_code::unsupported_tensor_type,
          str("CUDA backend: tensor type ", to_string(r.host->type), " is not supported"));
  const uint64_t total = weight_bytes(w);
  require_vram(total + runtime_margin, device);
  device_model_ptr dm(new device_model(w, device));
  dm->arena_bytes_ = std::max<uint64_t>(total, alignment);
  RBEE_CUDA_CHECK(cudaMalloc(&dm->arena_, dm->arena_bytes_));

  dm->layers.resize(w.layers.size());
  for (size_t i = 0; i < dm->layers.size(); ++i) {
    const size_t n_expert = w.layers[i].expert_gate.size();
    dm->layers[i].expert_gate.resize(n_expert);
    dm->layers[i].expert_up.resize(n_expert);
    dm->layers[i].expert_down.resize(n_expert);
  }
  std::vector<dweight*> targets;
  visit_tensors(*dm, [&](dweight* p, int) { targets.push_back(p); });
  assert(targets.size() == refs.size());

  load_progress p;
  // Layers count in the whole model's numbers: the parts of a split load one after the other.
  p.layers_total = w.hp.n_layer;
  p.bytes_total = total;
  for (const auto& r : refs) p.tensors_total += *r.host ? 1 : 0;
  std::unordered_map<const uint8_t*, const uint8_t*> uploaded;  // tied weights share
  auto* cursor = static_cast<uint8_t*>(dm->arena_);
  // Repacked types go through a staging buffer into the device layout (ops.h: repack).
  size_t staging_bytes = 0;
  for (const auto& r : refs)
    if (*r.host && repacked(r.host->type))
      staging_bytes =
          std::max(staging_bytes, r.host->row_bytes() * static_cast<size_t>(r.host->n_rows));
  device_buffer staging(staging_bytes);
  for (size_t i = 0; i < refs.size(); ++i) {
    const weight& h = *refs[i].host;
    if (!h) continue;
    dweight& d = *targets[i];
    d.type = h.type;
    d.n_cols = h.n_cols;
    d.n_rows = h.n_rows;
    if (auto it = uploaded.find(h.data); it != uploaded.end()) {
      d.data = it->second;
    } else {
      const size_t bytes = h.row_bytes() * static_cast<size_t>(h.n_rows);
      if (repacked(h.type)) {
        RBEE_CUDA_CHECK(cudaMemcpy(staging.get(), h.data, bytes, cudaMemcpyHostToDevice));
        repack(h.type, staging.get(), cursor, h.n_rows, h.n_cols, nullptr);
        RBEE_CUDA_CHECK(cudaDeviceSynchronize());
      } else {
        RBEE_CUDA_CHECK(cudaMemcpy(cursor, h.data, bytes, cudaMemcpyHostToDevice));
      }
      d.data = cursor;
      uploaded.emplace(h.data, cursor);
      cursor += align_up(bytes);
      p.bytes_loaded += align_up(bytes);
    }
    ++p.tensors_loaded;
    const bool last_of_layer =
        refs[i].layer >= 0 && (i + 1 == refs.size() || refs[i + 1].layer != refs[i].layer);
    if (last_of_layer) p.layers_loaded = w.first_layer + refs[i].layer + 1;
    if (progress) progress(p);
  }
  for (auto& l : dm->layers) {
    l.wqkv = stacked({&l.wq, &l.wk, &l.wv});
    l.ffn_gate_up = stacked({&l.ffn_gate, &l.ffn_up});
    if (!l.expert_gate.empty()) {
      l.experts_gate = strided(l.expert_gate);
      l.experts_up = strided(l.expert_up);
      l.experts_down = strided(l.expert_down);
    }
  }
  return dm;
}

class device_context {
 public:
  device_context(device_model& m, const context_params& p) : m_(m), params_(p) {}
  ~device_context() {
    cudaSetDevice(m_.device_);
    for (auto& [key, exec] : graphs_) cudaGraphExecDestroy(exec);
    if (cublas_) cublas().destroy(cublas_);
    if (stream_) cudaStreamDestroy(stream_);
    cudaFree(arena_);
    cudaFreeHost(host_ints_);
    cudaFreeHost(host_penalized_);
    cudaFreeHost(host_offsets_);
    cudaFreeHost(host_logprobs_);
    cudaFreeHost(host_allowed_);
    cudaFreeHost(host_moe_offsets_);
    cudaFreeHost(host_tables_);
  }
  device_context(const device_context&) = delete;
  device_context& operator=(const device_context&) = delete;

  void init();
  void decode(std::span<const batch_entry> batch);
  void sample(std::span<const int> rows, std::span<const sampling_step> steps,
              std::span<token_id> tokens);
  void logprobs(int row, token_id token, int n_top, token_logprobs& out);
  void set_block_tables(const kv_block_tables& tables);
  void copy_block(int src, int dst);
  void copy_ring_layers(int src, int dst, int n_pos);
  void forward(int n, int n_out, bool gather);
  void join_partial_sums(float* rows, int n);
  void mm(const dweight& w, const float* x, q8_blocks xq, int n, float* y);

  device_model& m_;
  context_params params_;
  bool use_graphs_ = true;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  void* arena_ = nullptr;
  uint64_t arena_bytes_ = 0;
  int32_t* host_ints_ = nullptr;          // pinned staging of the batch arrays
  int32_t* host_penalized_ = nullptr;     // pinned staging of sampling_step::penalized (n_vocab)
  token_offset* host_offsets_ = nullptr;  // pinned staging of sampling_step::offsets (n_vocab)
  uint64_t* host_allowed_ = nullptr;      // pinned staging of sampling_step::allowed
  int32_t* host_token_ = nullptr;         // pinned: the sampled tokens come back here
  uint8_t* host_logprobs_ = nullptr;      // pinned: the log-probabilities come back here
  int32_t* host_moe_offsets_ = nullptr;   // pinned: where each expert's pairs start (prefill)
  std::map<std::tuple<int, int, bool>, cudaGraphExec_t> graphs_;  // (n, n_out, gather)
  std::vector<size_t> kv_offsets_;  // (part's layers + 1,) kv_layer_offsets: each one's cache
  int max_blocks_ = 0;              // the block tables' stride: kv_blocks_for(n_ctx)
  int32_t* host_tables_ = nullptr;  // pinned: the block tables last uploaded
  uint64_t tables_version_ = 0;     // their kv_block_tables::version
  bool engine_tables_ = false;      // set_block_tables was called (else the identity tables)

  // Device buffers (rows = tokens).
  __half *k_cache_ = nullptr, *v_cache_ = nullptr;
  int32_t* block_tables_ = nullptr;  // (n_seq, max_blocks_)
  float *x_ = nullptr, *xb_ = nullptr, *tmp_ = nullptr, *out_ = nullptr, *att_ = nullptr;
  float *qkv_ = nullptr, *q_ = nullptr, *hb_ = nullptr, *hb2_ = nullptr;
  float *logits_ = nullptr, *att_scratch_ = nullptr;
  int* att_counters_ = nullptr;  // (n_batch, n_head), zero between launches
  q8_blocks q8_;
  void* gemm_scratch_ = nullptr;
  int32_t *tokens_ = nullptr, *pos_ = nullptr, *seq_ = nullptr, *out_rows_ = nullptr;
  attention_tile* tiles_ = nullptr;  // the batch's attention_tiles, for flash attention
  int n_tiles_ = 0, widest_tile_ = 0;
  bool flash_ = false;              // flash_attention_supported for the model's head size
  double* inv_freq_ = nullptr;      // (n_rope_sets, n_rot/2)
  float2* rope_cos_sin_ = nullptr;  // (n_rope_sets, n_batch, n_rot/2) rope_table of the batch
  int32_t *penalized_ = nullptr, *token_ = nullptr;
  token_offset* offsets_ = nullptr;
  uint64_t* allowed_ = nullptr;
  void* sample_scratch_ = nullptr;
  uint8_t* logprobs_ = nullptr;  // logprobs_floats floats, then max_top_logprobs ids
  // Mixture of experts (context_layout::moe...): router logits (n_batch, n_expert), the sum of
  // the experts' outputs (n_batch, n_embd); per (token, slot) pair the expert, its weight, the
  // order grouped by expert and each pair's place in it; the pairs' rows.
  float *moe_logits_ = nullptr, *moe_acc_ = nullptr, *moe_weights_ = nullptr;
  int32_t *moe_ids_ = nullptr, *moe_order_ = nullptr, *moe_row_of_ = nullptr;
  int32_t* moe_offsets_ = nullptr;
  float *moe_ff_ = nullptr, *moe_rows_ = nullptr;
  q8_blocks moe_q8_;
  void moe_ffn(const dlayer& l, q8_blocks xq, int n);
  void moe_experts_grouped(const dlayer& l, int n);
};

void device_context_deleter::operator()(device_context* c) const {
  delete c;
}

void device_context::init() {
  const model_weights& w = m_.w_;
  const hparams& hp = w.hp;
  if (hp.head_dim > 256)
    throw engine_error(error_code::unsupported_architecture,
                       str("CUDA backend: head_dim ", hp.head_dim, " above 256 is not supported"));
  if (hp.n_embd > max_norm_width)
    throw engine_error(
        error_code::unsupported_architecture,
        str("CUDA backend: n_embd ", hp.n_embd, " above ", max_norm_width, " is not supported"));
  RBEE_CUDA_CHECK(cudaSetDevice(m_.device_));  // the products' routes depend on the device
  const context_layout lay = layout_of(w, params_);
  kv_offsets_ = kv_layer_offsets(w, params_);
  max_blocks_ = kv_blocks_for(params_.n_ctx);
  require_vram(lay.total() + runtime_margin / 2, m_.device_);
  // A tensor-parallel part waits on the host for the other parts' sums in mid-pass, which a
  // graph cannot hold.
  if (w.tensor.comm) use_graphs_ = false;
  RBEE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  RBEE_CUBLAS_CHECK(cublas().create(&cublas_));
  arena_bytes_ = lay.total();
  RBEE_CUDA_CHECK(cudaMalloc(&arena_, arena_bytes_));
  RBEE_CUDA_CHECK(cudaMallocHost(&host_ints_, lay.ints + lay.token));
  host_token_ = host_ints_ + lay.ints / sizeof(int32_t);
  RBEE_CUDA_CHECK(cudaMallocHost(&host_penalized_, lay.penalized));
  RBEE_CUDA_CHECK(cudaMallocHost(&host_offsets_, lay.offsets));
  RBEE_CUDA_CHECK(cudaMallocHost(&host_logprobs_, lay.logprobs));
  RBEE_CUDA_CHECK(cudaMallocHost(&host_allowed_, lay.allowed));
  RBEE_CUDA_CHECK(cudaMallocHost(&host_tables_, lay.tables));
  auto* cur = static_cast<uint8_t*>(arena_);
  auto take = [&cur](size_t bytes) {
    void* p = cur;
    cur += bytes;
    return p;
  };
  k_cache_ = static_cast<__half*>(take(lay.kv));
  v_cache_ = static_cast<__half*>(take(lay.kv));
  block_tables_ = static_cast<int32_t*>(take(lay.tables));
  x_ = static_cast<float*>(take(lay.x));
  xb_ = static_cast<float*>(take(lay.x));
  tmp_ = static_cast<float*>(take(lay.x));
  out_ = static_cast<float*>(take(lay.x));
  qkv_ = static_cast<float*>(take(lay.qkv));
  q_ = static_cast<float*>(take(lay.q));
  att_ = static_cast<float*>(take(lay.q));
  hb_ = static_cast<float*>(take(2 * lay.ff));
  hb2_ = static_cast<float*>(take(lay.ff));
  logits_ = static_cast<float*>(take(lay.logits));
  q8_ = q8_view(take(lay.q8), q8_blocks_max(hp));
  att_scratch_ = static_cast<float*>(take(lay.att_scratch));
  att_counters_ = static_cast<int*>(take(lay.att_counters));
  RBEE_CUDA_CHECK(cudaMemset(att_counters_, 0, lay.att_counters));
  gemm_scratch_ = take(lay.gemm);
  const size_t nb = static_cast<size_t>(params_.n_batch);
  tokens_ = static_cast<int32_t*>(take(lay.ints));
  pos_ = tokens_ + nb;
  seq_ = tokens_ + 2 * nb;
  out_rows_ = tokens_ + 3 * nb;
  tiles_ = reinterpret_cast<attention_tile*>(tokens_ + 4 * nb);
  flash_ = flash_attention_supported(hp.head_dim);
  inv_freq_ = static_cast<double*>(take(lay.rope));
  rope_cos_sin_ = static_cast<float2*>(take(lay.rope_table));
  penalized_ = static_cast<int32_t*>(take(lay.penalized));
  offsets_ = static_cast<token_offset*>(take(lay.offsets));
  allowed_ = static_cast<uint64_t*>(take(lay.allowed));
  sample_scratch_ = take(lay.sample);
  token_ = static_cast<int32_t*>(take(lay.token));
  logprobs_ = static_cast<uint8_t*>(take(lay.logprobs));
  if (lay.moe > 0) {
    moe_logits_ = static_cast<float*>(take(lay.moe));
    moe_acc_ = static_cast<float*>(take(lay.x));
    moe_ids_ = static_cast<int32_t*>(take(lay.moe_pairs));
    moe_weights_ = static_cast<float*>(take(lay.moe_pairs));
    moe_order_ = static_cast<int32_t*>(take(lay.moe_pairs));
    moe_row_of_ = static_cast<int32_t*>(take(lay.moe_pairs));
    moe_offsets_ = static_cast<int32_t*>(take(lay.moe_offsets));
    moe_ff_ = static_cast<float*>(take(3 * lay.moe_ff));
    moe_rows_ = static_cast<float*>(take(lay.moe_rows));
    moe_q8_ = q8_view(take(lay.moe_q8), moe_q8_blocks(hp));
    RBEE_CUDA_CHECK(cudaMallocHost(&host_moe_offsets_, lay.moe_offsets));
  }
  assert(cur == static_cast<uint8_t*>(arena_) + lay.total());

  // Until the engine's context gives its tables, sequence s owns blocks [s * max_blocks,
  // (s + 1) * max_blocks) (as far as the pool has them): contexts used directly (tests,
  // benchmarks) decode like an unpaged cache.
  const size_t n_entries = static_cast<size_t>(params_.n_seq) * static_cast<size_t>(max_blocks_);
  const size_t n_blocks = static_cast<size_t>(kv_pool_blocks(params_));
  for (size_t i = 0; i < n_entries; ++i) host_tables_[i] = static_cast<int32_t>(i % n_blocks);
  RBEE_CUDA_CHECK(
      cudaMemcpy(block_tables_, host_tables_, n_entries * sizeof(int32_t), cudaMemcpyHostToDevice));

  // The rotation frequencies (rope_inverse_frequencies), once; the factors are read back
  // from the device, since the host weights need not outlive the upload.
  std::vector<float> factors;
  const bool long_factors =
      w.rope_freqs_long && rope_factors_for(hp, w.rope_freqs, w.rope_freqs_long, params_.n_ctx) ==
                               reinterpret_cast<const float*>(w.rope_freqs_long.data);
  const dweight& chosen = long_factors ? m_.rope_freqs_long : m_.rope_freqs;
  if (chosen) {
    factors.resize(static_cast<size_t>(chosen.n_cols));
    RBEE_CUDA_CHECK(
        cudaMemcpy(factors.data(), chosen.data, factors.size() * 4, cudaMemcpyDeviceToHost));
  }
  const size_t half = static_cast<size_t>(hp.n_rot / 2);
  for (int set = 0; set < hp.n_rope_sets(); ++set) {
    const std::vector<double> inv_freq =
        rope_inverse_frequencies(hp, factors.empty() ? nullptr : factors.data(), set);
    if (!inv_freq.empty())
      RBEE_CUDA_CHECK(cudaMemcpy(inv_freq_ + static_cast<size_t>(set) * half, inv_freq.data(),
                                 inv_freq.size() * sizeof(double), cudaMemcpyHostToDevice));
  }
}

// tmp_ (n, n_embd) = each token's weighted sum of its chosen experts' SwiGLU FFNs of xb_
// (whose q8 blocks are xq), routed on the device; only the chosen experts' matrices are read,
// each once per step for all the tokens that chose it (plus qwen2moe's shared expert).
void device_context::moe_ffn(const dlayer& l, q8_blocks xq, int n) {
  const hparams& hp = m_.w_.hp;
  const int d = hp.n_embd, ff = hp.n_ff, n_used = hp.n_expert_used;
  const int n_expert = static_cast<int>(l.expert_gate.size());
  const size_t n_pairs = static_cast<size_t>(n) * n_used;
  mm(l.ffn_gate_inp, xb_, xq, n, moe_logits_);
  moe_route(moe_logits_, n, n_expert, n_used, hp.expert_weights_norm, moe_ids_, moe_weights_,
            stream_);
  if (n <= max_matvec_tokens) {
    // Pair p's rows: gate and up (n_ff), their SwiGLU, then its expert's output in moe_rows_.
    float* gate = moe_ff_;
    float* up = gate + n_pairs * ff;
    float* act = up + n_pairs * ff;
    moe_matvec({l.experts_gate, l.experts_up}, moe_ids_, n, n_used, n_used, xb_, xq, {gate, up},
               stream_);
    const q8_blocks aq = uses_q8(l.experts_down.type) ? moe_q8_ : q8_blocks{};
    silu_mul(gate, up, ff, static_cast<int>(n_pairs), ff, act, aq, stream_);
    moe_matvec({l.experts_down, {}}, moe_ids_, n, n_used, 1, act, aq, {moe_rows_, nullptr},
               stream_);
    moe_combine(moe_acc_, moe_rows_, moe_weights_, nullptr, n, n_used, d, stream_);
  } else {
    moe_experts_grouped(l, n);
    moe_combine(moe_acc_, moe_rows_, moe_weights_, moe_row_of_, n, n_used, d, stream_);
  }
  if (l.ffn_gate_shexp) {
    // qwen2moe's shared expert, on every token, gated by sigmoid(ffn_gate_inp_shexp . xb); xq
    // still holds xb_'s q8 blocks (the experts' products quantize into moe_q8_).
    const int ffs = hp.n_ff_shared;
    const bool small = n <= max_matvec_tokens;
    float* shared_up = hb_ + static_cast<size_t>(n) * ffs;
    const q8_blocks sdq = small && uses_q8(l.ffn_down_shexp.type) ? q8_ : q8_blocks{};
    mm(l.ffn_gate_shexp, xb_, xq, n, hb_);
    mm(l.ffn_up_shexp, xb_, xq, n, shared_up);
    silu_mul(hb_, shared_up, ffs, n, ffs, hb2_, sdq, stream_);
    mm(l.ffn_down_shexp, hb2_, sdq, n, tmp_);
    moe_add_shared(moe_acc_, tmp_, xb_, l.ffn_gate_inp_shexp.f32(), n, d, stream_);
  }
  RBEE_CUDA_CHECK(cudaMemcpyAsync(tmp_, moe_acc_, static_cast<size_t>(n) * d * sizeof(float),
                                  cudaMemcpyDeviceToDevice, stream_));
}

// Larger batches (never captured in a graph): the pairs grouped by expert, then one cuBLAS
// product per chosen expert and matrix over the rows of its pairs. How many pairs each expert
// got sizes those products, so it is read back once per layer. moe_rows_ holds the gathered
// input rows, then, expert by expert in the same places, the outputs (an expert's inputs are
// all read before its outputs are written).
void device_context::moe_experts_grouped(const dlayer& l, int n) {
  const hparams& hp = m_.w_.hp;
  const int d = hp.n_embd, ff = hp.n_ff, n_used = hp.n_expert_used;
  const int n_expert = static_cast<int>(l.expert_gate.size());
  const size_t n_pairs = static_cast<size_t>(n) * n_used;
  moe_group(moe_ids_, n, n_used, n_expert, xb_, d, moe_offsets_, moe_order_, moe_row_of_, moe_rows_,
            stream_);
  RBEE_CUDA_CHECK(cudaMemcpyAsync(host_moe_offsets_, moe_offsets_,
                                  (static_cast<size_t>(n_expert) + 1) * sizeof(int32_t),
                                  cudaMemcpyDeviceToHost, stream_));
  RBEE_CUDA_CHECK(cudaStreamSynchronize(stream_));
  float* gate = moe_ff_;
  float* up = gate + n_pairs * ff;
  float* act = up + n_pairs * ff;
  const auto product = [&](const expert_matrices& m, int e, const float* x, float* y) {
    const size_t first = static_cast<size_t>(host_moe_offsets_[e]);
    const int count = host_moe_offsets_[e + 1] - host_moe_offsets_[e];
    if (count == 0) return;
    gemm(cublas_, m.type, m.w + static_cast<size_t>(e) * m.stride, m.rows, m.cols,
         x + first * static_cast<size_t>(m.cols), count, y + first * static_cast<size_t>(m.rows),
         gemm_scratch_, stream_);
  };
  for (int e = 0; e < n_expert; ++e) {
    product(l.experts_gate, e, moe_rows_, gate);
    product(l.experts_up, e, moe_rows_, up);
  }
  silu_mul(gate, up, ff, static_cast<int>(n_pairs), ff, act, {}, stream_);
  for (int e = 0; e < n_expert; ++e) product(l.experts_down, e, act, moe_rows_);
}

// y (n, rows) = x (n, cols) @ W^T: packed matrix x vector for decode-sized batches; above,
// gemm: the packed weights on tensor cores up to max_pipelined_tokens, cuBLAS beyond (gemm.cu).
void device_context::mm(const dweight& w, const float* x, q8_blocks xq, int n, float* y) {
  if (n <= max_matvec_tokens)
    matvec(w.type, w.data, w.n_rows, w.n_cols, x, xq, n, y, stream_);
  else
    gemm(cublas_, w.type, w.data, w.n_rows, w.n_cols, x, n, y, gemm_scratch_, stream_);
}

// A tensor-parallel part's product of its slice (n rows of n_embd in `rows`) becomes the
// whole product, the sum over the parts: the communicator reads the rows once this part's
// stream has written them, and returns with the sum in place.
void device_context::join_partial_sums(float* rows, int n) {
  const tensor_rank& t = m_.w_.tensor;
  if (!t.comm) return;
  RBEE_CUDA_CHECK(cudaStreamSynchronize(stream_));
  t.comm->all_reduce_sum(t.rank, rows,
                         static_cast<size_t>(n) * static_cast<size_t>(m_.w_.hp.n_embd));
}

// Enqueues the whole forward pass of the batch already on the device (tokens_, pos_, seq_,
// out_rows_); no host synchronisation, so it can be captured into a graph, except in a
// tensor-parallel part (join_partial_sums), whose passes are not captured.
void device_context::forward(int n, int n_out, bool gather) {
  const hparams& hp = m_.w_.hp;
  const int d = hp.n_embd, hd = hp.head_dim, ff = hp.n_ff;
  const int q_dim = hp.n_head * hd, kv_dim = hp.n_head_kv * hd;
  const bool small = n <= max_matvec_tokens;
  // q8 activations only where a matrix x vector product of an integer type reads them.
  auto q8_for = [&](std::initializer_list<const dweight*> ws) -> q8_blocks {
    if (!small) return {};
    for (const dweight* w : ws)
      if (uses_q8(w->type)) return q8_;
    return {};
  };
  const size_t half = static_cast<size_t>(hp.n_rot / 2), nb = static_cast<size_t>(params_.n_batch);
  // Prefill runs (a tile of at least one product's 16 rows) on tensor cores; decode-sized
  // batches, which graphs capture, keep the split kernel that spreads a query over the context.
  const bool use_flash = flash_ && !small && widest_tile_ >= 16;

  // A part after the first starts from the residual stream the part before left in x_.
  if (m_.tok_embd) {
    get_rows(m_.tok_embd.type, m_.tok_embd.data, d, tokens_, n, x_, stream_);
    if (hp.embd_scale != 1.0f) scale(x_, static_cast<int64_t>(n) * d, hp.embd_scale, stream_);
  }
  for (int set = 0; set < hp.n_rope_sets(); ++set)
    rope_table(inv_freq_ + static_cast<size_t>(set) * half, hp.rope_of_set(set).freq_scale,
               hp.rope_attn_factor, hp.n_rot, pos_, n,
               rope_cos_sin_ + static_cast<size_t>(set) * nb * half, stream_);
  for (size_t li = 0; li < m_.layers.size(); ++li) {
    const dlayer& l = m_.layers[li];
    const int layer = m_.w_.first_layer + static_cast<int>(li);
    const int rows = hp.cache_rows(layer, params_.n_ctx, params_.n_batch);
    __half* k_layer = k_cache_ + kv_offsets_[li];
    __half* v_layer = v_cache_ + kv_offsets_[li];
    // Full-attention layers live in the block pool; sliding ones in their rings.
    const int32_t* tables = hp.layer_slides(layer) ? nullptr : block_tables_;
    const rope_args ra{hp.n_head,
                       hp.n_head_kv,
                       hd,
                       hp.n_rot,
                       hp.rope == rope_style::halves,
                       rope_cos_sin_ + static_cast<size_t>(hp.rope_set(layer)) * nb * half,
                       rows,
                       params_.n_seq,
                       tables,
                       max_blocks_};
    // The previous layer's FFN output joins the residual here, fused with this norm.
    q8_blocks xq = q8_for({&l.wq, &l.wk, &l.wv});
    add_rmsnorm(x_, li == 0 ? nullptr : tmp_, l.attn_norm.f32(), n, d, hp.rms_eps, xb_, xq,
                stream_);
    // Projections: one stacked product (rows of q|k|v per token) or three (q, k, v blocks).
    float *qp = qkv_, *kp, *vp;
    int q_stride, kv_stride;
    if (l.wqkv) {
      mm(l.wqkv, xb_, xq, n, qkv_);
      q_stride = kv_stride = q_dim + 2 * kv_dim;
      kp = qkv_ + q_dim;
      vp = kp + kv_dim;
    } else {
      float* k_out = qkv_ + static_cast<size_t>(n) * q_dim;
      float* v_out = k_out + static_cast<size_t>(n) * kv_dim;
      mm(l.wq, xb_, xq, n, qkv_);
      mm(l.wk, xb_, xq, n, k_out);
      mm(l.wv, xb_, xq, n, v_out);
      q_stride = q_dim;
      kv_stride = kv_dim;
      kp = k_out;
      vp = v_out;
    }
    if (l.attn_q_norm) {
      head_rmsnorm(qp, q_stride, n, hp.n_head, hd, l.attn_q_norm.f32(), hp.rms_eps, stream_);
      head_rmsnorm(kp, kv_stride, n, hp.n_head_kv, hd, l.attn_k_norm.f32(), hp.rms_eps, stream_);
    }
    rope_store(ra, qp, q_stride, kp, vp, kv_stride, l.bq ? l.bq.f32() : nullptr,
               l.bk ? l.bk.f32() : nullptr, l.bv ? l.bv.f32() : nullptr, pos_, seq_, n, q_, k_layer,
               v_layer, stream_);
    q8_blocks aq = q8_for({&l.wo});
    const bool fused_q = hd % 32 == 0;
    const attention_shape shape{.n_head = hp.n_head,
                                .n_head_kv = hp.n_head_kv,
                                .head_dim = hd,
                                .rows = rows,
                                .window = hp.layer_slides(layer) ? hp.n_swa : 0,
                                .scale = hp.attn_scale,
                                .softcap = hp.attn_softcap,
                                .block_table = tables,
                                .max_blocks = max_blocks_};
    if (use_flash) {
      flash_attention(q_, k_layer, v_layer, pos_, seq_, tiles_, n_tiles_, shape, att_, stream_);
    } else {
      attention(q_, k_layer, v_layer, pos_, seq_, n, shape, att_scratch_, att_counters_, att_,
                fused_q ? aq : q8_blocks{}, stream_);
    }
    if (aq && !fused_q) quantize_q8(att_, n, hp.n_head * hd, aq, stream_);
    mm(l.wo, att_, aq, n, tmp_);
    join_partial_sums(tmp_, n);
    if (l.attn_post_norm)
      add_rmsnorm(tmp_, nullptr, l.attn_post_norm.f32(), n, d, hp.rms_eps, tmp_, {}, stream_);
    const bool moe = !l.expert_gate.empty();
    q8_blocks fq = moe ? q8_for({&l.ffn_gate_inp, &l.expert_gate[0], &l.expert_up[0],
                                 &l.ffn_gate_shexp, &l.ffn_up_shexp})
                       : q8_for({&l.ffn_gate, &l.ffn_up});
    add_rmsnorm(x_, tmp_, l.ffn_norm.f32(), n, d, hp.rms_eps, xb_, fq, stream_);
    if (moe) {
      moe_ffn(l, fq, n);
      continue;
    }
    const float* up;
    int ff_stride;
    if (l.ffn_gate_up) {
      mm(l.ffn_gate_up, xb_, fq, n, hb_);
      up = hb_ + ff;
      ff_stride = 2 * ff;
    } else {
      float* up_out = hb_ + static_cast<size_t>(n) * ff;
      mm(l.ffn_gate, xb_, fq, n, hb_);
      mm(l.ffn_up, xb_, fq, n, up_out);
      up = up_out;
      ff_stride = ff;
    }
    q8_blocks dq = q8_for({&l.ffn_down});
    if (hp.ffn_act == ffn_activation::silu)
      silu_mul(hb_, up, ff_stride, n, ff, hb2_, dq, stream_);
    else
      gelu_mul(hb_, up, ff_stride, n, ff, hb2_, dq, stream_);
    mm(l.ffn_down, hb2_, dq, n, tmp_);
    join_partial_sums(tmp_, n);
    if (l.ffn_post_norm)
      add_rmsnorm(tmp_, nullptr, l.ffn_post_norm.f32(), n, d, hp.rms_eps, tmp_, {}, stream_);
  }
  if (!m_.output) {
    // A part before the last: its last FFN output joins the residual stream for the next part.
    add(x_, tmp_, static_cast<int64_t>(n) * d, stream_);
    return;
  }
  add_rmsnorm(x_, tmp_, m_.output_norm.f32(), n, d, hp.rms_eps, xb_, {}, stream_);
  if (n_out == 0) return;
  const float* rows = xb_;
  if (gather) {
    gather_rows(xb_, out_rows_, n_out, d, out_, stream_);
    rows = out_;
  }
  q8_blocks oq;
  if (n_out <= max_matvec_tokens && uses_q8(m_.output.type)) {
    oq = q8_;
    quantize_q8(rows, n_out, d, oq, stream_);
  }
  mm(m_.output, rows, oq, n_out, logits_);
  if (hp.final_softcap > 0)
    softcap(logits_, static_cast<int64_t>(n_out) * hp.n_vocab, hp.final_softcap, stream_);
}

void device_context::decode(std::span<const batch_entry> batch) {
  const int n = static_cast<int>(batch.size());
  const size_t nb = static_cast<size_t>(params_.n_batch);
  int n_out = 0;
  bool identity = true;  // every entry wants logits: no gather needed
  for (int i = 0; i < n; ++i) {
    const batch_entry& e = batch[static_cast<size_t>(i)];
    host_ints_[i] = e.token;
    host_ints_[nb + static_cast<size_t>(i)] = e.pos;
    host_ints_[2 * nb + static_cast<size_t>(i)] = e.seq;
    if (e.want_logits) host_ints_[3 * nb + static_cast<size_t>(n_out++)] = i;
    identity = identity && e.want_logits;
  }
  const bool gather = !identity;
  auto* host_tiles = reinterpret_cast<attention_tile*>(host_ints_ + 4 * nb);
  n_tiles_ = attention_tiles(host_ints_ + 2 * nb, n, host_tiles);
  widest_tile_ = 0;
  for (int i = 0; i < n_tiles_; ++i) widest_tile_ = std::max(widest_tile_, host_tiles[i].n_rows);
  RBEE_CUDA_CHECK(cudaSetDevice(m_.device_));
  RBEE_CUDA_CHECK(cudaMemcpyAsync(tokens_, host_ints_, 6 * nb * sizeof(int32_t),
                                  cudaMemcpyHostToDevice, stream_));
  if (use_graphs_ && n <= max_matvec_tokens) {
    const auto key = std::make_tuple(n, n_out, gather);
    auto it = graphs_.find(key);
    if (it == graphs_.end()) {
      cudaGraph_t graph = nullptr;
      RBEE_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
      try {
        forward(n, n_out, gather);
      } catch (const engine_error&) {
        cudaStreamEndCapture(stream_, &graph);
        if (graph) cudaGraphDestroy(graph);
        throw;
      }
      RBEE_CUDA_CHECK(cudaStreamEndCapture(stream_, &graph));
      cudaGraphExec_t exec = nullptr;
      const cudaError_t err = cudaGraphInstantiate(&exec, graph, 0);
      cudaGraphDestroy(graph);
      RBEE_CUDA_CHECK(err);
      it = graphs_.emplace(key, exec).first;
    }
    RBEE_CUDA_CHECK(cudaGraphLaunch(it->second, stream_));
  } else {
    forward(n, n_out, gather);
  }
  // Errors of the forward pass surface here, in the call that caused them.
  RBEE_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void device_context::sample(std::span<const int> rows, std::span<const sampling_step> steps,
                            std::span<token_id> tokens) {
  const int n_vocab = m_.w_.hp.n_vocab;
  const size_t mask_words = (static_cast<size_t>(n_vocab) + 63) / 64;
  assert(rows.size() == steps.size() && rows.size() == tokens.size() &&
         rows.size() <= static_cast<size_t>(params_.n_batch) &&
         "sample: one step and one token per row, at most n_batch rows");
  RBEE_CUDA_CHECK(cudaSetDevice(m_.device_));
  // Each row's penalties, offsets and mask are staged after the previous rows' and uploaded
  // as it is launched; the staging holds one row's worst case, so when the next row does not
  // fit, the rows so far come back first (the host staging is free again after that copy).
  size_t first = 0;                          // the first row whose token is not back yet
  size_t pen_used = 0, off_used = 0;         // staged penalized tokens and offsets
  bool mask_used = false;                    // a mask is staged (room for one)
  const auto bring_back = [&](size_t end) {  // the tokens of rows [first, end)
    if (end == first) return;
    RBEE_CUDA_CHECK(cudaMemcpyAsync(host_token_ + first, token_ + first,
                                    (end - first) * sizeof(int32_t), cudaMemcpyDeviceToHost,
                                    stream_));
    RBEE_CUDA_CHECK(cudaStreamSynchronize(stream_));
    std::copy(host_token_ + first, host_token_ + end,
              tokens.begin() + static_cast<ptrdiff_t>(first));
    first = end;
    pen_used = off_used = 0;
    mask_used = false;
  };
  for (size_t i = 0; i < rows.size(); ++i) {
    const sampling_step& a = steps[i];
    const size_t n_pen = a.knobs.repeat_penalty != 1.0f ? a.penalized.size() : 0;
    const size_t n_off = a.offsets.size();
    assert(n_pen <= static_cast<size_t>(n_vocab) && n_off <= static_cast<size_t>(n_vocab) &&
           "sample: more penalized tokens or offsets than the vocabulary has");
    if (pen_used + n_pen > static_cast<size_t>(n_vocab) ||
        off_used + n_off > static_cast<size_t>(n_vocab) || (mask_used && !a.allowed.empty()))
      bring_back(i);
    int32_t* penalized = penalized_ + pen_used;
    if (n_pen > 0) {
      std::copy(a.penalized.begin(), a.penalized.begin() + static_cast<ptrdiff_t>(n_pen),
                host_penalized_ + pen_used);
      RBEE_CUDA_CHECK(cudaMemcpyAsync(penalized, host_penalized_ + pen_used,
                                      n_pen * sizeof(int32_t), cudaMemcpyHostToDevice, stream_));
      pen_used += n_pen;
    }
    token_offset* offsets = offsets_ + off_used;
    if (n_off > 0) {
      std::copy(a.offsets.begin(), a.offsets.end(), host_offsets_ + off_used);
      RBEE_CUDA_CHECK(cudaMemcpyAsync(offsets, host_offsets_ + off_used,
                                      n_off * sizeof(token_offset), cudaMemcpyHostToDevice,
                                      stream_));
      off_used += n_off;
    }
    int n_allowed = n_vocab;
    if (!a.allowed.empty()) {
      assert(a.allowed.size() == mask_words && "sample: the mask must have a bit per token");
      n_allowed = 0;
      for (const uint64_t word : a.allowed) n_allowed += std::popcount(word);
      assert(n_allowed > 0 && "sample: the constraint allows no token");
      std::copy(a.allowed.begin(), a.allowed.end(), host_allowed_);
      RBEE_CUDA_CHECK(cudaMemcpyAsync(allowed_, host_allowed_, mask_words * sizeof(uint64_t),
                                      cudaMemcpyHostToDevice, stream_));
      mask_used = true;
    }
    sample_row(logits_ + static_cast<size_t>(rows[i]) * n_vocab, n_vocab,
               a.allowed.empty() ? nullptr : allowed_, n_allowed, penalized,
               static_cast<int>(n_pen), offsets, static_cast<int>(n_off), a.knobs, sample_scratch_,
               token_ + i, stream_);
  }
  bring_back(rows.size());
}

void device_context::logprobs(int row, token_id token, int n_top, token_logprobs& out) {
  const int n_vocab = m_.w_.hp.n_vocab;
  RBEE_CUDA_CHECK(cudaSetDevice(m_.device_));
  // The token goes up through token_, where a sampled one already is.
  *host_token_ = token;
  RBEE_CUDA_CHECK(
      cudaMemcpyAsync(token_, host_token_, sizeof(int32_t), cudaMemcpyHostToDevice, stream_));
  auto* values = reinterpret_cast<float*>(logprobs_);
  auto* ids = reinterpret_cast<int32_t*>(logprobs_ + logprobs_floats * sizeof(float));
  logprobs_row(logits_ + static_cast<size_t>(row) * n_vocab, n_vocab, token_, n_top,
               sample_scratch_, values, ids, stream_);
  RBEE_CUDA_CHECK(
      cudaMemcpyAsync(host_logprobs_, logprobs_,
                      logprobs_floats * sizeof(float) + max_top_logprobs * sizeof(int32_t),
                      cudaMemcpyDeviceToHost, stream_));
  RBEE_CUDA_CHECK(cudaStreamSynchronize(stream_));
  const auto* host_values = reinterpret_cast<const float*>(host_logprobs_);
  const auto* host_ids =
      reinterpret_cast<const int32_t*>(host_logprobs_ + logprobs_floats * sizeof(float));
  out.logprob = host_values[0];
  out.n_top = n_top;
  for (int j = 0; j < n_top; ++j)
    out.top[static_cast<size_t>(j)] = {.token = host_ids[j], .logprob = host_values[1 + j]};
}

// Uploaded on the stream, ahead of the next forward pass (a replayed graph reads them too).
// The previous upload is done: every decode ends with a synchronisation.
void device_context::set_block_tables(const kv_block_tables& tables) {
  if (engine_tables_ && tables.version == tables_version_) return;
  assert(tables.max_blocks == max_blocks_ && "set_block_tables: tables of another shape");
  const size_t n_entries = static_cast<size_t>(params_.n_seq) * static_cast<size_t>(max_blocks_);
  std::copy_n(tables.blocks, n_entries, host_tables_);
  RBEE_CUDA_CHECK(cudaSetDevice(m_.device_));
  RBEE_CUDA_CHECK(cudaMemcpyAsync(block_tables_, host_tables_, n_entries * sizeof(int32_t),
                                  cudaMemcpyHostToDevice, stream_));
  tables_version_ = tables.version;
  engine_tables_ = true;
}

// Per full-attention layer, K and V: the block's rows of every KV head lie together.
void device_context::copy_block(int src, int dst) {
  const hparams& hp = m_.w_.hp;
  const size_t block_halves =
      static_cast<size_t>(hp.n_head_kv) * kv_block_size * static_cast<size_t>(hp.head_dim);
  RBEE_CUDA_CHECK(cudaSetDevice(m_.device_));
  for (size_t li = 0; li < m_.layers.size(); ++li) {
    if (hp.layer_slides(m_.w_.first_layer + static_cast<int>(li))) continue;
    for (__half* cache : {k_cache_, v_cache_}) {
      __half* layer = cache + kv_offsets_[li];
      RBEE_CUDA_CHECK(cudaMemcpyAsync(layer + static_cast<size_t>(dst) * block_halves,
                                      layer + static_cast<size_t>(src) * block_halves,
                                      block_halves * sizeof(__half), cudaMemcpyDeviceToDevice,
                                      stream_));
    }
  }
  RBEE_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

// Per sliding layer, K and V: the sequence's n_kv_head rows of n_pos positions (all of a
// ring's rows when it holds fewer), a layer's rows apart.
void device_context::copy_ring_layers(int src, int dst, int n_pos) {
  const hparams& hp = m_.w_.hp;
  RBEE_CUDA_CHECK(cudaSetDevice(m_.device_));
  for (size_t li = 0; li < m_.layers.size(); ++li) {
    const int l = m_.w_.first_layer + static_cast<int>(li);
    if (!hp.layer_slides(l)) continue;
    const int rows = hp.cache_rows(l, params_.n_ctx, params_.n_batch);
    const size_t head_rows = static_cast<size_t>(rows) * hp.head_dim;  // halves per head
    const size_t seq_stride = static_cast<size_t>(hp.n_head_kv) * head_rows;
    const size_t width = static_cast<size_t>(std::min(n_pos, rows)) * hp.head_dim * sizeof(__half);
    for (__half* cache : {k_cache_, v_cache_}) {
      __half* layer = cache + kv_offsets_[li];
      RBEE_CUDA_CHECK(cudaMemcpy2DAsync(
          layer + static_cast<size_t>(dst) * seq_stride, head_rows * sizeof(__half),
          layer + static_cast<size_t>(src) * seq_stride, head_rows * sizeof(__half), width,
          hp.n_head_kv, cudaMemcpyDeviceToDevice, stream_));
    }
  }
  RBEE_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

device_context_ptr create_context(device_model& m, const context_params& p) {
  assert(p.n_ctx > 0 && p.n_seq > 0 && p.n_batch > 0 && "create_context: sizes must be positive");
  device_context_ptr c(new device_context(m, p));
  c->init();
  return c;
}

void decode(device_context& c, std::span<const batch_entry> batch) {
  c.decode(batch);
}

void copy_logits(device_context& c, int row, float* out) {
  const size_t n_vocab = static_cast<size_t>(c.m_.w_.hp.n_vocab);
  RBEE_CUDA_CHECK(cudaSetDevice(c.m_.device_));
  RBEE_CUDA_CHECK(cudaMemcpyAsync(out, c.logits_ + static_cast<size_t>(row) * n_vocab,
                                  n_vocab * sizeof(float), cudaMemcpyDeviceToHost, c.stream_));
  RBEE_CUDA_CHECK(cudaStreamSynchronize(c.stream_));
}

void sample(device_context& c, std::span<const int> rows, std::span<const sampling_step> steps,
            std::span<token_id> tokens) {
  c.sample(rows, steps, tokens);
}

void logprobs(device_context& c, int row, token_id token, int n_top, token_logprobs& out) {
  c.logprobs(row, token, n_top, out);
}

void copy_sequence(device_context& c, int src, int dst, int n_pos) {
  if (n_pos <= 0) return;
  // The blocks dst's table names receive src's positions.
  const size_t stride = static_cast<size_t>(c.max_blocks_);
  for (int i = 0; i < kv_blocks_for(n_pos); ++i) {
    const int32_t from = c.host_tables_[static_cast<size_t>(src) * stride + static_cast<size_t>(i)];
    const int32_t to = c.host_tables_[static_cast<size_t>(dst) * stride + static_cast<size_t>(i)];
    if (from != to) c.copy_block(from, to);
  }
  c.copy_ring_layers(src, dst, n_pos);
}

void set_block_tables(device_context& c, const kv_block_tables& tables) {
  c.set_block_tables(tables);
}

void copy_block(device_context& c, int src, int dst) {
  c.copy_block(src, dst);
}

void copy_ring_layers(device_context& c, int src, int dst, int n_pos) {
  if (n_pos > 0) c.copy_ring_layers(src, dst, n_pos);
}

uint64_t device_bytes(const device_model& m) {
  return m.arena_bytes_;
}

uint64_t device_bytes(const device_context& c) {
  return c.arena_bytes_;
}

int n_vocab(const device_context& c) {
  return c.m_.w_.hp.n_vocab;
}

activations residual(device_context& c) {
  return {.data = c.x_, .device = c.m_.device_};
}

void copy_activations(const activations& from, const activations& to, size_t n) {
  const size_t bytes = n * sizeof(float);
  RBEE_CUDA_CHECK(cudaSetDevice(to.device));
  if (from.device == to.device)
    RBEE_CUDA_CHECK(cudaMemcpy(to.data, from.data, bytes, cudaMemcpyDeviceToDevice));
  else if (from.device >= 0)
    RBEE_CUDA_CHECK(cudaMemcpyPeer(to.data, to.device, from.data, from.device, bytes));
  else
    RBEE_CUDA_CHECK(cudaMemcpy(to.data, from.data, bytes, cudaMemcpyHostToDevice));
  // The next part's stream does not wait on the default stream the copy ran on.
  RBEE_CUDA_CHECK(cudaDeviceSynchronize());
}

void set_use_graphs(device_context& c, bool on) {
  c.use_graphs_ = on && !c.m_.w_.tensor.comm;
}

}  // namespace rbee::engine::cuda
