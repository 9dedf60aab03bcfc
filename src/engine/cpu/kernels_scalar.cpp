// Portable kernels: the fallback level and the complete default table. Quantized weights are
// multiplied with the same int8 activations as the SIMD levels, block by block.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/cpu/dispatch.h"
#include "engine/kv_block_size.h"
#include "engine/quant.h"

namespace rbee::engine::cpu {

namespace {

int nearest(float x) {
  return static_cast<int>(std::lrintf(x));
}

void quantize_q8_32(const float* x, uint8_t* row, int64_t n) {
  auto* qs = reinterpret_cast<int8_t*>(row);
  auto* d = reinterpret_cast<float*>(row + n);
  auto* sum = reinterpret_cast<int32_t*>(d + n / 32);
  for (int64_t b = 0; b < n / 32; ++b) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b * 32 + j]));
    const float db = amax / 127;
    const float id = db ? 1 / db : 0;
    int s = 0;
    for (int j = 0; j < 32; ++j) {
      const int q = nearest(x[b * 32 + j] * id);
      qs[b * 32 + j] = static_cast<int8_t>(q);
      s += q;
    }
    d[b] = db;
    sum[b] = s;
  }
}

void quantize_q8_k(const float* x, uint8_t* row, int64_t n) {
  auto* qs = reinterpret_cast<int8_t*>(row);
  auto* d = reinterpret_cast<float*>(row + n);
  auto* bsums = reinterpret_cast<int16_t*>(d + n / qk_k);
  for (int64_t b = 0; b < n / qk_k; ++b) {
    const float* xb = x + b * qk_k;
    float amax = 0;
    for (int j = 0; j < qk_k; ++j) amax = std::max(amax, std::fabs(xb[j]));
    const float db = amax / 127;
    const float id = db ? 1 / db : 0;
    for (int j = 0; j < qk_k; ++j) qs[b * qk_k + j] = static_cast<int8_t>(nearest(xb[j] * id));
    d[b] = db;
    for (int g = 0; g < qk_k / 16; ++g) {
      int s = 0;
      for (int j = 0; j < 16; ++j) s += qs[b * qk_k + g * 16 + j];
      bsums[b * (qk_k / 16) + g] = static_cast<int16_t>(s);
    }
  }
}

// ---- one weight row · one activation row, per type

// Integer dot of one 32-element 4-bit block (nibbles 0..15, unsigned) with 32 int8 values.
template <class Block>
int dot_q4_block(const Block& w, const int8_t* x) {
  int s = 0;
  for (int j = 0; j < 16; ++j) s += (w.qs[j] & 0xf) * x[j] + (w.qs[j] >> 4) * x[j + 16];
  return s;
}

float dot_q4_0(const uint8_t* wr, const uint8_t* xr, int64_t n) {
  const auto* w = reinterpret_cast<const block_q4_0*>(wr);
  const act_q8_32 a = view_q8_32(xr, n);
  float sum = 0;
  for (int64_t b = 0; b < n / 32; ++b) {
    const int s = dot_q4_block(w[b], a.qs + b * 32);
    sum += fp16_to_fp32(w[b].d) * a.d[b] * (s - 8 * a.sum[b]);
  }
  return sum;
}

float dot_q4_1(const uint8_t* wr, const uint8_t* xr, int64_t n) {
  const auto* w = reinterpret_cast<const block_q4_1*>(wr);
  const act_q8_32 a = view_q8_32(xr, n);
  float sum = 0;
  for (int64_t b = 0; b < n / 32; ++b) {
    const int s = dot_q4_block(w[b], a.qs + b * 32);
    sum += a.d[b] * (fp16_to_fp32(w[b].d) * s + fp16_to_fp32(w[b].m) * a.sum[b]);
  }
  return sum;
}

template <class Block>
int dot_q5_block(const Block& w, const int8_t* x) {
  uint32_t qh;
  std::memcpy(&qh, w.qh, 4);
  int s = 0;
  for (int j = 0; j < 16; ++j) {
    const int lo = (w.qs[j] & 0xf) | (((qh >> j) & 1) << 4);
    const int hi = (w.qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
    s += lo * x[j] + hi * x[j + 16];
  }
  return s;
}

float dot_q5_0(const uint8_t* wr, const uint8_t* xr, int64_t n) {
  const auto* w = reinterpret_cast<const block_q5_0*>(wr);
  const act_q8_32 a = view_q8_32(xr, n);
  float sum = 0;
  for (int64_t b = 0; b < n / 32; ++b) {
    const int s = dot_q5_block(w[b], a.qs + b * 32);
    sum += fp16_to_fp32(w[b].d) * a.d[b] * (s - 16 * a.sum[b]);
  }
  return sum;
}

float dot_q5_1(const uint8_t* wr, const uint8_t* xr, int64_t n) {
  const auto* w = reinterpret_cast<const block_q5_1*>(wr);
  const act_q8_32 a = view_q8_32(xr, n);
  float sum = 0;
  for (int64_t b = 0; b < n / 32; ++b) {
    const int s = dot_q5_block(w[b], a.qs + b * 32);
    sum += a.d[b] * (fp16_to_fp32(w[b].d) * s + fp16_to_fp32(w[b].m) * a.sum[b]);
  }
  return sum;
}

float dot_q8_0(const uint8_t* wr, const uint8_t* xr, int64_t n) {
  const auto* w = reinterpret_cast<const block_q8_0*>(wr);
  const act_q8_32 a = view_q8_32(xr, n);
  float sum = 0;
  for (int64_t b = 0; b < n / 32; ++b) {
    int s = 0;
    for (int j = 0; j < 32; ++j) s += w[b].qs[j] * a.qs[b * 32 + j];
    sum += fp16_to_fp32(w[b].d) * a.d[b] * s;
  }
  return sum;
}

// q4_k and q5_k: sub-block j of 32 has value d*sc_j*q - dmin*m_j.
template <bool five>
float dot_qk_affine(const uint8_t* wr, size_t block_bytes, const uint8_t* xr, int64_t n) {
  const act_q8_k a = view_q8_k(xr, n);
  float sum = 0;
  for (int64_t b = 0; b < n / qk_k; ++b) {
    const uint8_t* blk = wr + b * block_bytes;
    fp16_t d16, dmin16;
    std::memcpy(&d16, blk, 2);
    std::memcpy(&dmin16, blk + 2, 2);
    const uint8_t* scales = blk + 4;
    const uint8_t* qh = five ? blk + 4 + k_scale_size : nullptr;
    const uint8_t* ql = blk + 4 + k_scale_size + (five ? qk_k / 8 : 0);
    const int8_t* x = a.qs + b * qk_k;
    const int16_t* bs = a.bsums + b * (qk_k / 16);
    int isum = 0, msum = 0;
    for (int j = 0; j < 8; ++j) {
      uint8_t sc, m;
      scale_min_k4(j, scales, sc, m);
      const int shift = (j & 1) * 4;
      int s = 0;
      for (int l = 0; l < 32; ++l) {
        int q = (ql[(j / 2) * 32 + l] >> shift) & 0xf;
        if (five) q |= ((qh[l] >> j) & 1) << 4;
        s += q * x[j * 32 + l];
      }
      isum += sc * s;
      msum += m * (bs[2 * j] + bs[2 * j + 1]);
    }
    sum += a.d[b] * (fp16_to_fp32(d16) * isum - fp16_to_fp32(dmin16) * msum);
  }
  return sum;
}

float dot_q4_k(const uint8_t* w, const uint8_t* x, int64_t n) {
  return dot_qk_affine<false>(w, sizeof(block_q4_k), x, n);
}
float dot_q5_k(const uint8_t* w, const uint8_t* x, int64_t n) {
  return dot_qk_affine<true>(w, sizeof(block_q5_k), x, n);
}

float dot_q6_k(const uint8_t* wr, const uint8_t* xr, int64_t n) {
  const auto* w = reinterpret_cast<const block_q6_k*>(wr);
  const act_q8_k a = view_q8_k(xr, n);
  float sum = 0;
  for (int64_t b = 0; b < n / qk_k; ++b) {
    const int8_t* x = a.qs + b * qk_k;
    const int16_t* bs = a.bsums + b * (qk_k / 16);
    int isum = 0;
    for (int half = 0; half < 2; ++half) {
      const uint8_t* ql = w[b].ql + half * 64;
      const uint8_t* qh = w[b].qh + half * 32;
      const int8_t* sc = w[b].scales + half * 8;
      const int8_t* xh = x + half * 128;
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = (ql[l] & 0xf) | ((qh[l] & 3) << 4);
        const int q2 = (ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4);
        const int q3 = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
        const int q4 = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
        isum += sc[is] * q1 * xh[l] + sc[is + 2] * q2 * xh[l + 32] + sc[is + 4] * q3 * xh[l + 64] +
                sc[is + 6] * q4 * xh[l + 96];
      }
    }
    int corr = 0;
    for (int g = 0; g < qk_k / 16; ++g) corr += w[b].scales[g] * bs[g];
    sum += fp16_to_fp32(w[b].d) * a.d[b] * (isum - 32 * corr);
  }
  return sum;
}

// q2_k: sub-block j of 16 is d*sc_j*q - dmin*m_j; the mins meet the activations' bsums.
float dot_q2_k(const uint8_t* wr, const uint8_t* xr, int64_t n) {
  const auto* w = reinterpret_cast<const block_q2_k*>(wr);
  const act_q8_k a = view_q8_k(xr, n);
  float sum = 0;
  for (int64_t b = 0; b < n / qk_k; ++b) {
    const int8_t* x = a.qs + b * qk_k;
    const int16_t* bs = a.bsums + b * (qk_k / 16);
    int isum = 0, msum = 0;
    for (int e = 0; e < qk_k; ++e) {
      const int q = (w[b].qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
      isum += (w[b].scales[e / 16] & 0xf) * q * x[e];
    }
    for (int j = 0; j < 16; ++j) msum += (w[b].scales[j] >> 4) * bs[j];
    sum += a.d[b] * (fp16_to_fp32(w[b].d) * isum - fp16_to_fp32(w[b].dmin) * msum);
  }
  return sum;
}

// q3_k: sub-block j of 16 is d*(code_j - 32)*q with q in [-4, 3].
float dot_q3_k(const uint8_t* wr, const uint8_t* xr, int64_t n) {
  const auto* w = reinterpret_cast<const block_q3_k*>(wr);
  const act_q8_k a = view_q8_k(xr, n);
  float sum = 0;
  for (int64_t b = 0; b < n / qk_k; ++b) {
    const block_q3_k& wb = w[b];
    const int8_t* x = a.qs + b * qk_k;
    int isum = 0;
    for (int j = 0; j < 16; ++j) {
      const int low = j < 8 ? wb.scales[j] & 0xf : wb.scales[j - 8] >> 4;
      const int scale = (low | (((wb.scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
      int s = 0;
      for (int e = 16 * j; e < 16 * j + 16; ++e) {
        const int l = e % 32;
        const int q = ((wb.qs[32 * (e / 128) + l] >> (2 * ((e % 128) / 32))) & 3) -
                      ((wb.hmask[l] >> (e / 32)) & 1 ? 0 : 4);
        s += q * x[e];
      }
      isum += scale * s;
    }
    sum += a.d[b] * fp16_to_fp32(wb.d) * isum;
  }
  return sum;
}

float dot_iq4_nl(const uint8_t* wr, const uint8_t* xr, int64_t n) {
  const auto* w = reinterpret_cast<const block_iq4_nl*>(wr);
  const act_q8_32 a = view_q8_32(xr, n);
  float sum = 0;
  for (int64_t b = 0; b < n / 32; ++b) {
    const int8_t* x = a.qs + b * 32;
    int s = 0;
    for (int j = 0; j < 16; ++j)
      s += iq4_levels[w[b].qs[j] & 0xf] * x[j] + iq4_levels[w[b].qs[j] >> 4] * x[j + 16];
    sum += fp16_to_fp32(w[b].d) * a.d[b] * s;
  }
  return sum;
}

// iq4_xs: sub-block j of 32 is d*(code_j - 32)*level.
float dot_iq4_xs(const uint8_t* wr, const uint8_t* xr, int64_t n) {
  const auto* w = reinterpret_cast<const block_iq4_xs*>(wr);
  const act_q8_k a = view_q8_k(xr, n);
  float sum = 0;
  for (int64_t b = 0; b < n / qk_k; ++b) {
    const block_iq4_xs& wb = w[b];
    const int8_t* x = a.qs + b * qk_k;
    int isum = 0;
    for (int j = 0; j < 8; ++j) {
      const int scale =
          (((wb.scales_l[j / 2] >> (4 * (j % 2))) & 0xf) | (((wb.scales_h >> (2 * j)) & 3) << 4)) -
          32;
      const uint8_t* qs = wb.qs + 16 * j;
      int s = 0;
      for (int l = 0; l < 16; ++l)
        s += iq4_levels[qs[l] & 0xf] * x[32 * j + l] + iq4_levels[qs[l] >> 4] * x[32 * j + l + 16];
      isum += scale * s;
    }
    sum += a.d[b] * fp16_to_fp32(wb.d) * isum;
  }
  return sum;
}

float dot_f32_row(const uint8_t* wr, const uint8_t* xr, int64_t n) {
  const auto* w = reinterpret_cast<const float*>(wr);
  const auto* x = reinterpret_cast<const float*>(xr);
  float sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += w[i] * x[i];
  return sum;
}

float dot_f16_row(const uint8_t* wr, const uint8_t* xr, int64_t n) {
  const auto* w = reinterpret_cast<const fp16_t*>(wr);
  const auto* x = reinterpret_cast<const float*>(xr);
  float sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += fp16_to_fp32(w[i]) * x[i];
  return sum;
}

float dot_bf16_row(const uint8_t* wr, const uint8_t* xr, int64_t n) {
  const auto* w = reinterpret_cast<const bf16_t*>(wr);
  const auto* x = reinterpret_cast<const float*>(xr);
  float sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += bf16_to_fp32(w[i]) * x[i];
  return sum;
}

template <float (*dot)(const uint8_t*, const uint8_t*, int64_t)>
void gemm_rows(const gemm_args& a) {
  for (int64_t r = 0; r < a.n_rows; ++r) {
    for (int64_t t = 0; t < a.n_tok; ++t) {
      a.y[t * a.y_stride + r] = dot(a.w + r * a.w_stride, a.x + t * a.x_stride, a.n);
    }
  }
}

// Row r of a rows16 block against block b of a token's activations, with dot_q4_0's,
// dot_q8_0's and dot_qk_affine's arithmetic: the same results as the file layout.
float rows16_block_dot(const q4_0_rows16_block& w, int r, const act_q8_32& x, int64_t b) {
  int s = 0;
  for (int j = 0; j < 32; ++j) s += rows16_quant(w, r, j) * x.qs[b * 32 + j];
  return fp16_to_fp32(w.d[r]) * x.d[b] * (s - 8 * x.sum[b]);
}
float rows16_block_dot(const q8_0_rows16_block& w, int r, const act_q8_32& x, int64_t b) {
  int s = 0;
  for (int j = 0; j < 32; ++j) s += rows16_quant(w, r, j) * x.qs[b * 32 + j];
  return fp16_to_fp32(w.d[r]) * x.d[b] * s;
}
float rows16_block_dot(const q4_k_rows16_block& w, int r, const act_q8_k& x, int64_t b) {
  const int16_t* bs = x.bsums + b * (qk_k / 16);
  int isum = 0, msum = 0;
  for (int j = 0; j < 8; ++j) {
    int s = 0;
    for (int l = 0; l < 32; ++l) s += rows16_quant(w, r, j, l) * x.qs[b * qk_k + j * 32 + l];
    isum += rows16_set(w, j, r) * s;
    msum += rows16_set(w, 8 + j, r) * (bs[2 * j] + bs[2 * j + 1]);
  }
  return x.d[b] * (fp16_to_fp32(w.d[r]) * isum - fp16_to_fp32(w.dmin[r]) * msum);
}

// Weights in the rows16 layout of GroupBlock (blocks of `columns`), activations as `view`
// reads them; rows past the last whole group go to the file layout's file_dot.
template <class GroupBlock, int columns, auto view,
          float (*file_dot)(const uint8_t*, const uint8_t*, int64_t)>
void gemm_rows16(const gemm_args& a) {
  const int64_t nb = a.n / columns, groups = a.n_rows / rows16;
  for (int64_t g = 0; g < groups; ++g) {
    const auto* w = reinterpret_cast<const GroupBlock*>(a.w + g * rows16 * a.w_stride);
    for (int64_t t = 0; t < a.n_tok; ++t) {
      const auto x = view(a.x + t * a.x_stride, a.n);
      for (int r = 0; r < rows16; ++r) {
        float sum = 0;
        for (int64_t b = 0; b < nb; ++b) sum += rows16_block_dot(w[b], r, x, b);
        a.y[t * a.y_stride + g * rows16 + r] = sum;
      }
    }
  }
  gemm_args tail = a;
  tail.w += groups * rows16 * a.w_stride;
  tail.n_rows -= groups * rows16;
  tail.y += groups * rows16;
  gemm_rows<file_dot>(tail);
}

void f16_to_f32_s(const fp16_t* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = fp16_to_fp32(x[i]);
}
void f32_to_f16_s(const float* x, fp16_t* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = fp32_to_fp16(x[i]);
}
// Element i of a KV cache row or tile of fp32 or fp16 values.
float cache_f32(const uint8_t* p, int64_t i) {
  return reinterpret_cast<const float*>(p)[i];
}
float cache_f16(const uint8_t* p, int64_t i) {
  return fp16_to_fp32(reinterpret_cast<const fp16_t*>(p)[i]);
}

template <float (*element)(const uint8_t*, int64_t)>
void tile_scores_s(const uint8_t* k, const float* q, int n_q, int hd, float* scores) {
  for (int g = 0; g < n_q; ++g) {
    for (int j = 0; j < kv_block_size; ++j) {
      float s = 0;
      for (int d = 0; d < hd; ++d) s += q[g * hd + d] * element(k, d * kv_block_size + j);
      scores[g * kv_block_size + j] = s;
    }
  }
}

template <float (*element)(const uint8_t*, int64_t)>
void weighted_rows_s(const float* p, int64_t p_stride, int n_q, const uint8_t* v, int n_rows,
                     int hd, float* out) {
  for (int g = 0; g < n_q; ++g)
    for (int j = 0; j < n_rows; ++j)
      for (int d = 0; d < hd; ++d)
        out[g * hd + d] += p[g * p_stride + j] * element(v, int64_t{j} * hd + d);
}
void rmsnorm_s(const float* x, const float* w, float* out, int64_t n, float eps) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  const float scale = static_cast<float>(1.0 / std::sqrt(ss / n + eps));
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * scale * w[i];
}
void softmax_s(float* x, int64_t n) {
  float max = x[0];
  for (int64_t i = 1; i < n; ++i) max = std::max(max, x[i]);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - max);
    sum += x[i];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}
void silu_mul_s(const float* g, const float* u, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

}  // namespace

void fill_scalar_kernels(kernel_table& t) {
  t.gemm[slot_f32] = gemm_rows<dot_f32_row>;
  t.gemm[slot_f16] = gemm_rows<dot_f16_row>;
  t.gemm[slot_bf16] = gemm_rows<dot_bf16_row>;
  t.gemm[slot_q4_0] = gemm_rows<dot_q4_0>;
  t.gemm_rows16[slot_q4_0] = gemm_rows16<q4_0_rows16_block, 32, view_q8_32, dot_q4_0>;
  t.gemm_rows16[slot_q8_0] = gemm_rows16<q8_0_rows16_block, 32, view_q8_32, dot_q8_0>;
  t.gemm_rows16[slot_q4_k] = gemm_rows16<q4_k_rows16_block, qk_k, view_q8_k, dot_q4_k>;
  t.gemm[slot_q4_1] = gemm_rows<dot_q4_1>;
  t.gemm[slot_q5_0] = gemm_rows<dot_q5_0>;
  t.gemm[slot_q5_1] = gemm_rows<dot_q5_1>;
  t.gemm[slot_q8_0] = gemm_rows<dot_q8_0>;
  t.gemm[slot_q4_k] = gemm_rows<dot_q4_k>;
  t.gemm[slot_q5_k] = gemm_rows<dot_q5_k>;
  t.gemm[slot_q6_k] = gemm_rows<dot_q6_k>;
  t.gemm[slot_q2_k] = gemm_rows<dot_q2_k>;
  t.gemm[slot_q3_k] = gemm_rows<dot_q3_k>;
  t.gemm[slot_iq4_nl] = gemm_rows<dot_iq4_nl>;
  t.gemm[slot_iq4_xs] = gemm_rows<dot_iq4_xs>;
  t.quantize_q8_32 = quantize_token_rows<quantize_q8_32>;
  t.quantize_q8_k = quantize_token_rows<quantize_q8_k>;
  t.f16_to_f32 = f16_to_f32_s;
  t.f32_to_f16 = f32_to_f16_s;
  t.tile_scores_f16 = tile_scores_s<cache_f16>;
  t.tile_scores_f32 = tile_scores_s<cache_f32>;
  t.weighted_rows_f16 = weighted_rows_s<cache_f16>;
  t.weighted_rows_f32 = weighted_rows_s<cache_f32>;
  t.rmsnorm = rmsnorm_s;
  t.softmax = softmax_s;
  t.silu_mul = silu_mul_s;
}

}  // namespace rbee::engine::cpu
