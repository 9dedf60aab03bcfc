#include "support/reference.h"

#include <algorithm>
#include <cmath>

#include "engine/quant.h"

namespace rbee::engine::reference {

namespace {

// Any weight as fp32, row-major (n_rows, n_cols).
std::vector<float> load(const gguf::file& f, const std::string& name, std::vector<int64_t> shape,
                        bool required = true) {
  const weight w = get_weight(f, name, std::move(shape), required);
  std::vector<float> out;
  if (!w) return out;
  out.resize(static_cast<size_t>(w.n_rows * w.n_cols));
  for (int64_t r = 0; r < w.n_rows; ++r)
    dequantize_row_reference(w.type, w.row(r), out.data() + r * w.n_cols, w.n_cols);
  return out;
}

// W (d,n) @ x (n,) -> xout (d,)
void matmul(float* xout, const float* x, const float* w, int n, int d) {
  for (int i = 0; i < d; i++) {
    double val = 0.0;
    for (int j = 0; j < n; j++) val += static_cast<double>(w[i * n + j]) * x[j];
    xout[i] = static_cast<float>(val);
  }
}

// x (n,) normalised by its root mean square, times weight (n,) -> o (n,)
void rmsnorm(float* o, const float* x, const float* weight, int n, float eps) {
  double ss = 0.0;
  for (int j = 0; j < n; j++) ss += static_cast<double>(x[j]) * x[j];
  const float scale = static_cast<float>(1.0 / std::sqrt(ss / n + eps));
  for (int j = 0; j < n; j++) o[j] = weight[j] * (scale * x[j]);
}

// x (n,) -> softmax in place
void softmax(float* x, int n) {
  float max_val = x[0];
  for (int i = 1; i < n; i++)
    if (x[i] > max_val) max_val = x[i];
  double sum = 0.0;
  for (int i = 0; i < n; i++) {
    x[i] = std::exp(x[i] - max_val);
    sum += x[i];
  }
  for (int i = 0; i < n; i++) x[i] = static_cast<float>(x[i] / sum);
}

// Rotates one head vec (head_dim,) at position pos with the rotation of its layer. Llama
// rotates adjacent pairs (2i, 2i+1); the others (i, i + n_rot/2). Pair i turns by
// pos * freq_scale * base^(-2i/n_rot) / factor_i.
void rope(float* vec, const hparams& hp, const rope_params& rp,
          const std::vector<float>& freq_factors, int pos) {
  const int half = hp.n_rot / 2;
  for (int i = 0; i < half; i++) {
    double theta =
        rp.freq_scale * pos * std::pow(static_cast<double>(rp.freq_base), -2.0 * i / hp.n_rot);
    if (!freq_factors.empty()) theta /= freq_factors[static_cast<size_t>(i)];
    // phi3 (LongRoPE) scales cos and sin by its attention factor; others by 1.
    const double c = std::cos(theta) * hp.rope_attn_factor;
    const double s = std::sin(theta) * hp.rope_attn_factor;
    const int a = hp.rope == rope_style::adjacent_pairs ? 2 * i : i;
    const int b = hp.rope == rope_style::adjacent_pairs ? 2 * i + 1 : i + half;
    const double v0 = vec[a], v1 = vec[b];
    vec[a] = static_cast<float>(v0 * c - v1 * s);
    vec[b] = static_cast<float>(v0 * s + v1 * c);
  }
}

// x -> c * tanh(x / c): Gemma 2's soft cap of attention scores and logits.
float softcap(float x, float c) {
  return static_cast<float>(c * std::tanh(static_cast<double>(x) / c));
}

// GELU with the tanh approximation, as Gemma's FFN uses it.
float gelu_tanh(float x) {
  const double v = x;
  return static_cast<float>(0.5 * v *
                            (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v))));
}

// SwiGLU FFN: w2 (dim, hidden) @ (silu(w1 (hidden, dim) @ x) * (w3 (hidden, dim) @ x)) -> out
void swiglu(float* out, const float* x, const std::vector<float>& w1, const std::vector<float>& w3,
            const std::vector<float>& w2, int dim, int hidden) {
  std::vector<float> h(static_cast<size_t>(hidden)), h2(static_cast<size_t>(hidden));
  matmul(h.data(), x, w1.data(), dim, hidden);
  matmul(h2.data(), x, w3.data(), dim, hidden);
  for (int i = 0; i < hidden; i++) h[i] = h[i] / (1.0f + std::exp(-h[i])) * h2[i];
  matmul(out, h.data(), w2.data(), hidden, dim);
}

}  // namespace

transformer::transformer(const std::string& path, int n_ctx) {
  const gguf::file f = gguf::file::open(path);
  hp_ = read_hparams(f);
  const int64_t dim = hp_.n_embd, hd = hp_.head_dim, q_dim = hp_.n_head * hd,
                kv_dim = hp_.n_head_kv * hd, hidden = hp_.n_ff, vocab = hp_.n_vocab;
  token_embedding_ = load(f, "token_embd.weight", {dim, vocab});
  for (int i = 0; i < hp_.n_layer; i++) {
    const auto n = [i](const char* s) { return "blk." + std::to_string(i) + "." + s; };
    layer l;
    l.attn_norm = load(f, n("attn_norm.weight"), {dim});
    if (f.find_tensor(n("attn_qkv.weight"))) {
      // phi3: wqkv (q_dim + 2 kv_dim, dim) -> wq, wk, wv by rows
      const auto wqkv = load(f, n("attn_qkv.weight"), {dim, q_dim + 2 * kv_dim});
      const auto q_end = wqkv.begin() + q_dim * dim, k_end = q_end + kv_dim * dim;
      l.wq.assign(wqkv.begin(), q_end);
      l.wk.assign(q_end, k_end);
      l.wv.assign(k_end, wqkv.end());
    } else {
      l.wq = load(f, n("attn_q.weight"), {dim, q_dim});
      l.wk = load(f, n("attn_k.weight"), {dim, kv_dim});
      l.wv = load(f, n("attn_v.weight"), {dim, kv_dim});
    }
    l.bq = load(f, n("attn_q.bias"), {q_dim}, hp_.has_qkv_bias);
    l.bk = load(f, n("attn_k.bias"), {kv_dim}, hp_.has_qkv_bias);
    l.bv = load(f, n("attn_v.bias"), {kv_dim}, hp_.has_qkv_bias);
    l.q_norm = load(f, n("attn_q_norm.weight"), {hd}, hp_.has_qk_norm);
    l.k_norm = load(f, n("attn_k_norm.weight"), {hd}, hp_.has_qk_norm);
    l.wo = load(f, n("attn_output.weight"), {q_dim, dim});
    l.attn_post_norm = load(f, n("post_attention_norm.weight"), {dim}, hp_.has_post_norms);
    l.ffn_norm = load(f, n("ffn_norm.weight"), {dim});
    if (hp_.n_expert > 0) {
      // experts: ffn_*_exps hold n_expert matrices one after the other
      const int64_t ne = hp_.n_expert;
      l.router = load(f, n("ffn_gate_inp.weight"), {dim, ne});
      const auto gate = load(f, n("ffn_gate_exps.weight"), {dim, hidden, ne});
      const auto up = load(f, n("ffn_up_exps.weight"), {dim, hidden, ne});
      const auto down = load(f, n("ffn_down_exps.weight"), {hidden, dim, ne});
      const int64_t per_expert = hidden * dim;
      for (int64_t e = 0; e < ne; ++e) {
        l.expert_w1.emplace_back(gate.begin() + e * per_expert,
                                 gate.begin() + (e + 1) * per_expert);
        l.expert_w3.emplace_back(up.begin() + e * per_expert, up.begin() + (e + 1) * per_expert);
        l.expert_w2.emplace_back(down.begin() + e * per_expert,
                                 down.begin() + (e + 1) * per_expert);
      }
      if (hp_.n_ff_shared > 0) {
        const int64_t shared = hp_.n_ff_shared;
        l.shared_gate_inp = load(f, n("ffn_gate_inp_shexp.weight"), {dim});
        l.shared_w1 = load(f, n("ffn_gate_shexp.weight"), {dim, shared});
        l.shared_w3 = load(f, n("ffn_up_shexp.weight"), {dim, shared});
        l.shared_w2 = load(f, n("ffn_down_shexp.weight"), {shared, dim});
      }
    } else if (hp_.architecture == "phi3") {
      // phi3: ffn_up (2 hidden, dim) holds gate rows, then up rows
      const auto gate_up = load(f, n("ffn_up.weight"), {dim, 2 * hidden});
      l.w1.assign(gate_up.begin(), gate_up.begin() + hidden * dim);
      l.w3.assign(gate_up.begin() + hidden * dim, gate_up.end());
    } else {
      l.w1 = load(f, n("ffn_gate.weight"), {dim, hidden});
      l.w3 = load(f, n("ffn_up.weight"), {dim, hidden});
    }
    l.w2 = load(f, n("ffn_down.weight"), {hidden, dim}, hp_.n_expert == 0);
    l.ffn_post_norm = load(f, n("post_ffw_norm.weight"), {dim}, hp_.has_post_norms);
    layers_.push_back(std::move(l));
  }
  final_norm_ = load(f, "output_norm.weight", {dim});
  wcls_ = load(f, "output.weight", {dim, vocab}, false);
  if (wcls_.empty()) wcls_ = token_embedding_;
  if (hp_.architecture == "phi3") {
    // LongRoPE: the long factors beyond the original context, else the short ones
    const bool long_context = n_ctx > hp_.n_ctx_orig;
    rope_freqs_ = load(f, long_context ? "rope_factors_long.weight" : "rope_factors_short.weight",
                       {hp_.n_rot / 2}, false);
  } else {
    rope_freqs_ = load(f, "rope_freqs.weight", {hp_.n_rot / 2}, false);
  }

  x_.resize(static_cast<size_t>(dim));
  xb_.resize(static_cast<size_t>(dim));
  q_.resize(static_cast<size_t>(q_dim));
  k_.resize(static_cast<size_t>(kv_dim));
  v_.resize(static_cast<size_t>(kv_dim));
  att_out_.resize(static_cast<size_t>(q_dim));
  hb_.resize(static_cast<size_t>(hidden));
  hb2_.resize(static_cast<size_t>(hidden));
  moe_out_.resize(static_cast<size_t>(dim));
  xb2_.resize(static_cast<size_t>(dim));
  logits_.resize(static_cast<size_t>(vocab));
}

// Mixture of experts on xb (dim,) -> moe_out (dim,): router (n_expert, dim) @ xb -> softmax;
// the n_expert_used most likely experts (lower index first on ties), their probabilities
// (renormalised to sum 1 unless the family keeps them), each a SwiGLU FFN; moe_out = sum of
// weight * expert output, plus qwen2moe's shared expert times sigmoid(shared_gate_inp . xb).
void transformer::moe_ffn(const layer& w) {
  const hparams& p = hp_;
  const int dim = p.n_embd, hidden = p.n_ff;
  std::vector<float> probs(static_cast<size_t>(p.n_expert));
  matmul(probs.data(), xb_.data(), w.router.data(), dim, p.n_expert);
  softmax(probs.data(), p.n_expert);
  std::vector<int> order(static_cast<size_t>(p.n_expert));
  for (int e = 0; e < p.n_expert; e++) order[static_cast<size_t>(e)] = e;
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    return probs[static_cast<size_t>(a)] > probs[static_cast<size_t>(b)];
  });
  double total = 0;
  for (int k = 0; k < p.n_expert_used; k++)
    total += probs[static_cast<size_t>(order[static_cast<size_t>(k)])];
  if (!p.expert_weights_norm) total = 1.0;
  std::fill(moe_out_.begin(), moe_out_.end(), 0.0f);
  for (int k = 0; k < p.n_expert_used; k++) {
    const int e = order[static_cast<size_t>(k)];
    const float weight = static_cast<float>(probs[static_cast<size_t>(e)] / total);
    const size_t ei = static_cast<size_t>(e);
    swiglu(xb2_.data(), xb_.data(), w.expert_w1[ei], w.expert_w3[ei], w.expert_w2[ei], dim, hidden);
    for (int i = 0; i < dim; i++) moe_out_[i] += weight * xb2_[i];
  }
  if (!w.shared_w1.empty()) {
    double logit = 0;
    for (int i = 0; i < dim; i++) logit += static_cast<double>(w.shared_gate_inp[i]) * xb_[i];
    const float gate = static_cast<float>(1.0 / (1.0 + std::exp(-logit)));
    swiglu(xb2_.data(), xb_.data(), w.shared_w1, w.shared_w3, w.shared_w2, dim, p.n_ff_shared);
    for (int i = 0; i < dim; i++) moe_out_[i] += gate * xb2_[i];
  }
}

const std::vector<float>& transformer::forward(token_id token, int pos) {
  const hparams& p = hp_;
  const int dim = p.n_embd, hd = p.head_dim, q_dim = p.n_head * hd, kv_dim = p.n_head_kv * hd;
  const int hidden = p.n_ff, kv_mul = p.n_head / p.n_head_kv;
  if (pos != seq_len_) throw std::invalid_argument("reference: positions must come in order");
  seq_len_ = pos + 1;
  key_cache_.resize(static_cast<size_t>(p.n_layer) * seq_len_ * kv_dim);
  value_cache_.resize(static_cast<size_t>(p.n_layer) * seq_len_ * kv_dim);
  // Re-pack the caches for the longer sequence: (layer, seq_len, kv_dim).
  for (int l = p.n_layer - 1; l >= 0; l--)
    for (int t = pos - 1; t >= 0; t--)
      for (int i = kv_dim - 1; i >= 0; i--) {
        key_cache_[(static_cast<size_t>(l) * seq_len_ + t) * kv_dim + i] =
            key_cache_[(static_cast<size_t>(l) * pos + t) * kv_dim + i];
        value_cache_[(static_cast<size_t>(l) * seq_len_ + t) * kv_dim + i] =
            value_cache_[(static_cast<size_t>(l) * pos + t) * kv_dim + i];
      }

  // token_embedding (vocab, dim)[token] * embd_scale -> x (dim,)
  for (int i = 0; i < dim; i++)
    x_[i] = token_embedding_[static_cast<size_t>(token) * dim + i] * p.embd_scale;

  for (int l = 0; l < p.n_layer; l++) {
    const layer& w = layers_[static_cast<size_t>(l)];
    // x (dim,) -> xb (dim,)
    rmsnorm(xb_.data(), x_.data(), w.attn_norm.data(), dim, p.rms_eps);

    // wq (q_dim, dim) @ xb (dim,) -> q (q_dim,); likewise k, v (kv_dim,)
    matmul(q_.data(), xb_.data(), w.wq.data(), dim, q_dim);
    matmul(k_.data(), xb_.data(), w.wk.data(), dim, kv_dim);
    matmul(v_.data(), xb_.data(), w.wv.data(), dim, kv_dim);
    if (!w.bq.empty()) {
      for (int i = 0; i < q_dim; i++) q_[i] += w.bq[i];
      for (int i = 0; i < kv_dim; i++) k_[i] += w.bk[i];
      for (int i = 0; i < kv_dim; i++) v_[i] += w.bv[i];
    }

    // qwen3, gemma3: each head of q and k (head_dim,) -> rmsnorm with q_norm / k_norm
    if (!w.q_norm.empty()) {
      for (int h = 0; h < p.n_head; h++)
        rmsnorm(q_.data() + h * hd, q_.data() + h * hd, w.q_norm.data(), hd, p.rms_eps);
      for (int h = 0; h < p.n_head_kv; h++)
        rmsnorm(k_.data() + h * hd, k_.data() + h * hd, w.k_norm.data(), hd, p.rms_eps);
    }

    // rope on each head of q (n_head, head_dim) and k (n_head_kv, head_dim); gemma3's sliding
    // layers rotate with their own base, without the model's frequency factors
    const int set = p.rope_set(l);
    const rope_params rp = p.rope_of_set(set);
    const std::vector<float> no_factors;
    const std::vector<float>& factors = set == 0 ? rope_freqs_ : no_factors;
    for (int h = 0; h < p.n_head; h++) rope(q_.data() + h * hd, p, rp, factors, pos);
    for (int h = 0; h < p.n_head_kv; h++) rope(k_.data() + h * hd, p, rp, factors, pos);

    // k, v (kv_dim,) -> caches (layer, seq_len, kv_dim)[l, pos]
    const size_t loff = static_cast<size_t>(l) * seq_len_ * kv_dim;
    for (int i = 0; i < kv_dim; i++) {
      key_cache_[loff + static_cast<size_t>(pos) * kv_dim + i] = k_[i];
      value_cache_[loff + static_cast<size_t>(pos) * kv_dim + i] = v_[i];
    }

    // attention per head over positions first..pos (a sliding layer sees the n_swa latest):
    // q_h (head_dim,) · k_t (head_dim,) * attn_scale, soft-capped (gemma2) -> att (n,)
    const int first = p.layer_slides(l) ? std::max(0, pos - p.n_swa + 1) : 0;
    const int n = pos + 1 - first;
    att_.resize(static_cast<size_t>(n));
    for (int h = 0; h < p.n_head; h++) {
      const float* q = q_.data() + h * hd;
      const int kvh = h / kv_mul;
      for (int t = first; t <= pos; t++) {
        const float* k = key_cache_.data() + loff + static_cast<size_t>(t) * kv_dim + kvh * hd;
        double score = 0.0;
        for (int i = 0; i < hd; i++) score += static_cast<double>(q[i]) * k[i];
        float s = static_cast<float>(score * p.attn_scale);
        if (p.attn_softcap > 0) s = softcap(s, p.attn_softcap);
        att_[t - first] = s;
      }
      softmax(att_.data(), n);
      // att (n,) @ v_cache (n, head_dim) -> att_out_h (head_dim,)
      float* out = att_out_.data() + h * hd;
      for (int i = 0; i < hd; i++) {
        double acc = 0.0;
        for (int t = first; t <= pos; t++)
          acc += static_cast<double>(att_[t - first]) *
                 value_cache_[loff + static_cast<size_t>(t) * kv_dim + kvh * hd + i];
        out[i] = static_cast<float>(acc);
      }
    }

    // wo (dim, q_dim) @ att_out (q_dim,) -> xb (dim,); gemma: rmsnorm of xb; residual into x
    matmul(xb_.data(), att_out_.data(), w.wo.data(), q_dim, dim);
    if (!w.attn_post_norm.empty())
      rmsnorm(xb_.data(), xb_.data(), w.attn_post_norm.data(), dim, p.rms_eps);
    for (int i = 0; i < dim; i++) x_[i] += xb_[i];

    // x (dim,) -> xb (dim,)
    rmsnorm(xb_.data(), x_.data(), w.ffn_norm.data(), dim, p.rms_eps);
    if (p.n_expert > 0) {
      moe_ffn(w);
      for (int i = 0; i < dim; i++) x_[i] += moe_out_[i];
      continue;
    }
    // w1 (hidden, dim) @ xb -> hb (hidden,); w3 (hidden, dim) @ xb -> hb2 (hidden,)
    matmul(hb_.data(), xb_.data(), w.w1.data(), dim, hidden);
    matmul(hb2_.data(), xb_.data(), w.w3.data(), dim, hidden);
    // hb = act(hb) * hb2: SwiGLU, or GELU (tanh) for gemma
    for (int i = 0; i < hidden; i++) {
      const float g = hb_[i];
      const float a = p.ffn_act == ffn_activation::silu ? g / (1.0f + std::exp(-g)) : gelu_tanh(g);
      hb_[i] = a * hb2_[i];
    }
    // w2 (dim, hidden) @ hb (hidden,) -> xb (dim,); gemma: rmsnorm of xb; residual into x
    matmul(xb_.data(), hb_.data(), w.w2.data(), hidden, dim);
    if (!w.ffn_post_norm.empty())
      rmsnorm(xb_.data(), xb_.data(), w.ffn_post_norm.data(), dim, p.rms_eps);
    for (int i = 0; i < dim; i++) x_[i] += xb_[i];
  }

  // x (dim,) -> xb (dim,); wcls (vocab, dim) @ xb -> logits (vocab,), soft-capped (gemma2)
  rmsnorm(xb_.data(), x_.data(), final_norm_.data(), dim, p.rms_eps);
  matmul(logits_.data(), xb_.data(), wcls_.data(), dim, p.n_vocab);
  if (p.final_softcap > 0)
    for (float& v : logits_) v = softcap(v, p.final_softcap);
  return logits_;
}

}  // namespace rbee::engine::reference
