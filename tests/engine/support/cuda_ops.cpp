// Host wrappers of single ops for the kernel tests: plain allocations, synchronous copies.
#include "support/cuda_ops.h"

#include <bit>
#include <cmath>
#include <random>

#include "engine/cuda/check.h"
#include "engine/cuda/cublas_api.h"
#include "engine/cuda/ops.h"

namespace rbee::engine::cuda::testing {

namespace {

// A device allocation that frees itself.
class buffer {
 public:
  explicit buffer(size_t bytes) { RBEE_CUDA_CHECK(cudaMalloc(&p_, std::max<size_t>(bytes, 256))); }
  template <class T>
  explicit buffer(std::span<const T> host) : buffer(host.size_bytes()) {
    RBEE_CUDA_CHECK(cudaMemcpy(p_, host.data(), host.size_bytes(), cudaMemcpyHostToDevice));
  }
  ~buffer() { cudaFree(p_); }
  buffer(const buffer&) = delete;
  buffer& operator=(const buffer&) = delete;
  template <class T>
  T* as() const {
    return static_cast<T*>(p_);
  }
  template <class T>
  std::vector<T> download(size_t n) const {
    std::vector<T> out(n);
    RBEE_CUDA_CHECK(cudaDeviceSynchronize());
    RBEE_CUDA_CHECK(cudaMemcpy(out.data(), p_, n * sizeof(T), cudaMemcpyDeviceToHost));
    return out;
  }

 private:
  void* p_ = nullptr;
};

// The weights in their device layout, as upload() leaves them.
class device_weights {
 public:
  device_weights(tensor_type type, std::span<const uint8_t> w, int64_t rows, int64_t cols)
      : raw_(w), packed_(w.size()) {
    if (repacked(type)) repack(type, raw_.as<void>(), packed_.as<void>(), rows, cols, 0);
    data_ = repacked(type) ? packed_.as<uint8_t>() : raw_.as<uint8_t>();
  }
  const uint8_t* data() const { return data_; }

 private:
  buffer raw_, packed_;
  const uint8_t* data_ = nullptr;
};

class cublas_handle {
 public:
  cublas_handle() { RBEE_CUBLAS_CHECK(cublas().create(&h_)); }
  ~cublas_handle() { cublas().destroy(h_); }
  cublas_handle(const cublas_handle&) = delete;
  cublas_handle& operator=(const cublas_handle&) = delete;
  cublasHandle_t get() const { return h_; }

 private:
  cublasHandle_t h_ = nullptr;
};

}  // namespace

std::vector<float> matmul(tensor_type type, std::span<const uint8_t> w, int64_t rows, int64_t cols,
                          std::span<const float> x, int n_tok, product_route route, int tile) {
  device_weights dw(type, w, rows, cols);
  buffer dx(x), dy(static_cast<size_t>(rows) * n_tok * sizeof(float));
  if (route == product_route::matvec) {
    const size_t n_blocks = static_cast<size_t>(n_tok) * (cols / 32 + 1);
    buffer dq(q8_bytes(n_blocks));
    const q8_blocks q = q8_view(dq.as<void>(), n_blocks);
    if (uses_q8(type)) quantize_q8(dx.as<float>(), n_tok, static_cast<int>(cols), q, 0);
    matvec(type, dw.data(), rows, cols, dx.as<float>(), q, n_tok, dy.as<float>(), 0);
    return dy.download<float>(static_cast<size_t>(rows) * n_tok);
  }
  if (route == product_route::pipelined || route == product_route::mma) {
    buffer xh(x.size() * sizeof(__half));
    to_f16(dx.as<float>(), static_cast<int64_t>(x.size()), xh.as<__half>(), 0);
    if (route == product_route::pipelined) {
      buffer parts(gemm_pipelined_parts_bytes());
      gemm_pipelined(type, dw.data(), rows, cols, xh.as<__half>(), n_tok, dy.as<float>(),
                     parts.as<float>(), 0, static_cast<gemm_tile>(tile));
    } else {
      gemm_mma(type, dw.data(), rows, cols, xh.as<__half>(), n_tok, dy.as<float>(), 0, tile);
    }
    return dy.download<float>(static_cast<size_t>(rows) * n_tok);
  }
  const cublas_handle handle;
  if (route == product_route::cublas) {
    buffer scratch(gemm_cublas_scratch_bytes(type, rows, cols, n_tok));
    gemm_cublas(handle.get(), type, dw.data(), rows, cols, dx.as<float>(), n_tok, dy.as<float>(),
                scratch.as<void>(), 0);
    return dy.download<float>(static_cast<size_t>(rows) * n_tok);
  }
  buffer scratch(gemm_scratch_bytes(type, rows, cols, n_tok));
  gemm(handle.get(), type, dw.data(), rows, cols, dx.as<float>(), n_tok, dy.as<float>(),
       scratch.as<void>(), 0);
  return dy.download<float>(static_cast<size_t>(rows) * n_tok);
}

std::vector<float> dequantize(tensor_type type, std::span<const uint8_t> w, int64_t rows,
                              int64_t cols, std::span<const int32_t> ids) {
  device_weights dw(type, w, rows, cols);
  if (!ids.empty()) {
    buffer di(ids), out(ids.size() * static_cast<size_t>(cols) * sizeof(float));
    get_rows(type, dw.data(), cols, di.as<int32_t>(), static_cast<int>(ids.size()), out.as<float>(),
             0);
    return out.download<float>(ids.size() * static_cast<size_t>(cols));
  }
  const size_t n = static_cast<size_t>(rows) * static_cast<size_t>(cols);
  buffer out(n * 2);
  cuda::dequantize(type, dw.data(), rows, cols, out.as<void>(), true, 0);
  const auto halves = out.download<__half>(n);
  std::vector<float> f(n);
  for (size_t i = 0; i < n; ++i) f[i] = __half2float(halves[i]);
  return f;
}

std::vector<float> add_rmsnorm(std::vector<float>& x, std::span<const float> y,
                               std::span<const float> w, int n_rows, float eps) {
  buffer dx{std::span<const float>(x)}, dy(y), dw(w), out(x.size() * sizeof(float));
  cuda::add_rmsnorm(dx.as<float>(), y.empty() ? nullptr : dy.as<float>(), dw.as<float>(), n_rows,
                    static_cast<int>(w.size()), eps, out.as<float>(), {}, 0);
  x = dx.download<float>(x.size());
  return out.download<float>(x.size());
}

std::vector<float> silu_mul(std::span<const float> gate, std::span<const float> up) {
  buffer dg(gate), du(up), out(gate.size_bytes());
  cuda::silu_mul(dg.as<float>(), du.as<float>(), static_cast<int>(gate.size()), 1,
                 static_cast<int>(gate.size()), out.as<float>(), {}, 0);
  return out.download<float>(gate.size());
}

std::vector<float> quantize_q8_roundtrip(std::span<const float> x) {
  const size_t n_blocks = x.size() / 32;
  buffer dx(x), dq(q8_bytes(n_blocks));
  const q8_blocks q = q8_view(dq.as<void>(), n_blocks);
  quantize_q8(dx.as<float>(), 1, static_cast<int>(x.size()), q, 0);
  RBEE_CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<int8_t> qs(x.size());
  std::vector<float> ds(2 * n_blocks);
  RBEE_CUDA_CHECK(cudaMemcpy(qs.data(), q.qs, qs.size(), cudaMemcpyDeviceToHost));
  RBEE_CUDA_CHECK(cudaMemcpy(ds.data(), q.ds, ds.size() * sizeof(float), cudaMemcpyDeviceToHost));
  std::vector<float> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = ds[2 * (i / 32)] * qs[i];
  return out;
}

std::vector<float> rope_attention(const attention_case& c, std::span<const float> q,
                                  std::span<const float> k, std::span<const float> v, int n_tok) {
  const int hd = c.head_dim, q_dim = c.n_head * hd, kv_dim = c.n_head_kv * hd;
  hparams hp;
  hp.n_rot = hd;
  hp.rope_freq_base = c.freq_base;
  const std::vector<double> inv_freq = rope_inverse_frequencies(hp, nullptr);
  std::vector<int32_t> pos(static_cast<size_t>(n_tok)), seq(static_cast<size_t>(n_tok), 0);
  for (int i = 0; i < n_tok; ++i) pos[static_cast<size_t>(i)] = i;
  buffer dq(q), dk(k), dv(v), df{std::span<const double>(inv_freq)},
      dpos{std::span<const int32_t>(pos)}, dseq{std::span<const int32_t>(seq)};
  // Paged: two blocks more than the sequence needs, taken from the end of the pool back.
  const int max_blocks = (c.n_ctx + kv_block_size - 1) / kv_block_size;
  const int n_pool = max_blocks + 2;
  std::vector<int32_t> blocks(static_cast<size_t>(max_blocks));
  for (int i = 0; i < max_blocks; ++i) blocks[static_cast<size_t>(i)] = n_pool - 1 - i;
  buffer dblocks{std::span<const int32_t>(blocks)};
  const int32_t* block_table = c.paged ? dblocks.as<int32_t>() : nullptr;
  const size_t cache = static_cast<size_t>(c.paged ? n_pool * kv_block_size : c.n_ctx) * kv_dim;
  buffer kc(cache * 2), vc(cache * 2), out(static_cast<size_t>(n_tok) * q_dim * sizeof(float));
  buffer scratch(attention_scratch_floats(n_tok, c.n_head, hd, c.n_ctx) * sizeof(float));
  const size_t counter_bytes = static_cast<size_t>(n_tok) * c.n_head * sizeof(int);
  buffer counters(counter_bytes);
  RBEE_CUDA_CHECK(cudaMemset(counters.as<void>(), 0, counter_bytes));
  buffer table(static_cast<size_t>(n_tok) * hd / 2 * sizeof(float2));
  buffer q_out(q.size_bytes());
  // The first half as one prefill batch, the rest one token per call as decoding runs: the
  // calls share the scratch and counters as a context's layers do.
  auto step = [&](int first, int n) {
    const int32_t* p = dpos.as<int32_t>() + first;
    const int32_t* sq = dseq.as<int32_t>() + first;
    const size_t qo = static_cast<size_t>(first) * q_dim, ko = static_cast<size_t>(first) * kv_dim;
    rope_table(df.as<double>(), 1.0f, 1.0f, hd, p, n, table.as<float2>(), 0);
    const rope_args ra{c.n_head,           c.n_head_kv, hd, hd,          c.halves,
                       table.as<float2>(), c.n_ctx,     1,  block_table, max_blocks};
    rope_store(ra, dq.as<float>() + qo, q_dim, dk.as<float>() + ko, dv.as<float>() + ko, kv_dim,
               nullptr, nullptr, nullptr, p, sq, n, q_out.as<float>() + qo, kc.as<__half>(),
               vc.as<__half>(), 0);
    const attention_shape shape{.n_head = c.n_head,
                                .n_head_kv = c.n_head_kv,
                                .head_dim = hd,
                                .rows = c.n_ctx,
                                .window = 0,
                                .scale = 1.0f / std::sqrt(static_cast<float>(hd)),
                                .softcap = 0.0f,
                                .block_table = block_table,
                                .max_blocks = max_blocks};
    if (c.flash && n > 1) {
      std::vector<attention_tile> tiles(static_cast<size_t>(n));
      const int n_tiles = attention_tiles(seq.data() + first, n, tiles.data());
      buffer dtiles{std::span<const attention_tile>(tiles.data(), static_cast<size_t>(n_tiles))};
      flash_attention(q_out.as<float>() + qo, kc.as<__half>(), vc.as<__half>(), p, sq,
                      dtiles.as<attention_tile>(), n_tiles, shape, out.as<float>() + qo, 0);
      RBEE_CUDA_CHECK(cudaDeviceSynchronize());
      return;
    }
    attention(q_out.as<float>() + qo, kc.as<__half>(), vc.as<__half>(), p, sq, n, shape,
              scratch.as<float>(), counters.as<int>(), out.as<float>() + qo, {}, 0);
  };
  step(0, n_tok / 2);
  for (int t = n_tok / 2; t < n_tok; ++t) step(t, 1);
  return out.download<float>(static_cast<size_t>(n_tok) * q_dim);
}

attention_pair split_and_flash_attention(const attention_case& c, std::span<const int> history,
                                         std::span<const int> rows, int window, float softcap,
                                         uint32_t seed) {
  const int hd = c.head_dim, n_seq = static_cast<int>(rows.size());
  const size_t kv_dim = static_cast<size_t>(c.n_head_kv) * hd;
  const int max_blocks = (c.n_ctx + kv_block_size - 1) / kv_block_size;
  // Sequence s's block b is pool block (s + 1) * max_blocks - 1 - b.
  std::vector<int32_t> blocks(static_cast<size_t>(n_seq) * max_blocks);
  for (int s = 0; s < n_seq; ++s)
    for (int b = 0; b < max_blocks; ++b)
      blocks[static_cast<size_t>(s * max_blocks + b)] = (s + 1) * max_blocks - 1 - b;
  const size_t cache_rows =
      static_cast<size_t>(n_seq) * (c.paged ? max_blocks * kv_block_size : c.n_ctx);
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<__half> k(cache_rows * kv_dim), v(k.size());
  for (auto& x : k) x = __float2half(normal(rng));
  for (auto& x : v) x = __float2half(normal(rng));
  std::vector<int32_t> pos, seq;
  for (int s = 0; s < n_seq; ++s)
    for (int j = 0; j < rows[static_cast<size_t>(s)]; ++j) {
      pos.push_back(history[static_cast<size_t>(s)] + j);
      seq.push_back(s);
    }
  const int n = static_cast<int>(pos.size());
  std::vector<float> q(static_cast<size_t>(n) * c.n_head * hd);
  for (auto& x : q) x = normal(rng);
  std::vector<attention_tile> tiles(static_cast<size_t>(n));
  const int n_tiles = attention_tiles(seq.data(), n, tiles.data());
  buffer dq{std::span<const float>(q)}, dk{std::span<const __half>(k)},
      dv{std::span<const __half>(v)}, dpos{std::span<const int32_t>(pos)},
      dseq{std::span<const int32_t>(seq)}, dblocks{std::span<const int32_t>(blocks)},
      dtiles{std::span<const attention_tile>(tiles.data(), static_cast<size_t>(n_tiles))};
  const attention_shape shape{.n_head = c.n_head,
                              .n_head_kv = c.n_head_kv,
                              .head_dim = hd,
                              .rows = c.n_ctx,
                              .window = window,
                              .scale = 1.0f / std::sqrt(static_cast<float>(hd)),
                              .softcap = softcap,
                              .block_table = c.paged ? dblocks.as<int32_t>() : nullptr,
                              .max_blocks = max_blocks};
  const size_t out_floats = q.size();
  buffer split_out(out_floats * sizeof(float)), flash_out(out_floats * sizeof(float));
  buffer scratch(attention_scratch_floats(n, c.n_head, hd, c.n_ctx) * sizeof(float));
  const size_t counter_bytes = static_cast<size_t>(n) * c.n_head * sizeof(int);
  buffer counters(counter_bytes);
  RBEE_CUDA_CHECK(cudaMemset(counters.as<void>(), 0, counter_bytes));
  attention(dq.as<float>(), dk.as<__half>(), dv.as<__half>(), dpos.as<int32_t>(),
            dseq.as<int32_t>(), n, shape, scratch.as<float>(), counters.as<int>(),
            split_out.as<float>(), {}, 0);
  flash_attention(dq.as<float>(), dk.as<__half>(), dv.as<__half>(), dpos.as<int32_t>(),
                  dseq.as<int32_t>(), dtiles.as<attention_tile>(), n_tiles, shape,
                  flash_out.as<float>(), 0);
  return {split_out.download<float>(out_floats), flash_out.download<float>(out_floats)};
}

token_id sample(std::span<const float> logits, const sampling_step& a) {
  const int n = static_cast<int>(logits.size());
  buffer dl(logits), pen(a.penalized), off(a.offsets), allowed(a.allowed),
      scratch(sample_scratch_bytes(n)), token(sizeof(int32_t));
  int n_allowed = 0;
  for (const uint64_t word : a.allowed) n_allowed += std::popcount(word);
  sample_row(dl.as<float>(), n, a.allowed.empty() ? nullptr : allowed.as<uint64_t>(), n_allowed,
             pen.as<int32_t>(), static_cast<int>(a.penalized.size()), off.as<token_offset>(),
             static_cast<int>(a.offsets.size()), a.knobs, scratch.as<void>(), token.as<int32_t>(),
             nullptr);
  return token.download<int32_t>(1)[0];
}

}  // namespace rbee::engine::cuda::testing
