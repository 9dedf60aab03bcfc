#include "engine/quant.h"

#include <algorithm>
#include <cassert>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <span>
#include <vector>

namespace rbee::engine {

namespace {

uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Round to nearest, ties to even, for |x| < 2^22 (ggml's nearest_int: same results).
int nearest_int(float x) {
  const float v = x + 12582912.f;
  return static_cast<int>(float_bits(v) & 0x007fffff) - 0x00400000;
}

// ---------------------------------------------------------------- 32-element blocks

void quantize_q4_0(const float* x, block_q4_0* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += qk4_0) {
    float amax = 0, max = 0;
    for (int j = 0; j < qk4_0; ++j) {
      if (amax < std::fabs(x[j])) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    const float d = max / -8;
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    for (int j = 0; j < qk4_0 / 2; ++j) {
      const uint8_t lo = std::min(15, static_cast<int>(static_cast<int8_t>(x[j] * id + 8.5f)));
      const uint8_t hi = std::min(15, static_cast<int>(static_cast<int8_t>(x[j + 16] * id + 8.5f)));
      y[i].qs[j] = lo | (hi << 4);
    }
  }
}

void quantize_q4_1(const float* x, block_q4_1* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += qk4_1) {
    float min = FLT_MAX, max = -FLT_MAX;
    for (int j = 0; j < qk4_1; ++j) {
      min = std::min(min, x[j]);
      max = std::max(max, x[j]);
    }
    const float d = (max - min) / 15;
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    y[i].m = fp32_to_fp16(min);
    for (int j = 0; j < qk4_1 / 2; ++j) {
      const uint8_t lo =
          std::min(15, static_cast<int>(static_cast<int8_t>((x[j] - min) * id + 0.5f)));
      const uint8_t hi =
          std::min(15, static_cast<int>(static_cast<int8_t>((x[j + 16] - min) * id + 0.5f)));
      y[i].qs[j] = lo | (hi << 4);
    }
  }
}

// Bit j of qh is the 5th bit of element j (elements 16..31 use bits 16..31).
void pack_q5(const uint8_t* q, uint8_t* qs, uint8_t* qh_out) {
  uint32_t qh = 0;
  for (int j = 0; j < 16; ++j) {
    qs[j] = (q[j] & 0x0f) | ((q[j + 16] & 0x0f) << 4);
    qh |= static_cast<uint32_t>((q[j] & 0x10) >> 4) << j;
    qh |= static_cast<uint32_t>((q[j + 16] & 0x10) >> 4) << (j + 16);
  }
  std::memcpy(qh_out, &qh, 4);
}

void quantize_q5_0(const float* x, block_q5_0* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += qk5_0) {
    float amax = 0, max = 0;
    for (int j = 0; j < qk5_0; ++j) {
      if (amax < std::fabs(x[j])) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    const float d = max / -16;
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    uint8_t q[qk5_0];
    for (int j = 0; j < qk5_0; ++j) {
      q[j] = std::min(31, static_cast<int>(static_cast<int8_t>(x[j] * id + 16.5f)));
    }
    pack_q5(q, y[i].qs, y[i].qh);
  }
}

void quantize_q5_1(const float* x, block_q5_1* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += qk5_1) {
    float min = FLT_MAX, max = -FLT_MAX;
    for (int j = 0; j < qk5_1; ++j) {
      min = std::min(min, x[j]);
      max = std::max(max, x[j]);
    }
    const float d = (max - min) / 31;
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    y[i].m = fp32_to_fp16(min);
    uint8_t q[qk5_1];
    for (int j = 0; j < qk5_1; ++j) q[j] = static_cast<uint8_t>((x[j] - min) * id + 0.5f);
    pack_q5(q, y[i].qs, y[i].qh);
  }
}

void quantize_q8_0(const float* x, block_q8_0* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += qk8_0) {
    float amax = 0;
    for (int j = 0; j < qk8_0; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127;
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    for (int j = 0; j < qk8_0; ++j) y[i].qs[j] = static_cast<int8_t>(std::roundf(x[j] * id));
  }
}

void quantize_q8_1(const float* x, block_q8_1* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += qk8_1) {
    float amax = 0;
    for (int j = 0; j < qk8_1; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127;
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    int sum = 0;
    for (int j = 0; j < qk8_1; ++j) {
      y[i].qs[j] = static_cast<int8_t>(std::roundf(x[j] * id));
      sum += y[i].qs[j];
    }
    y[i].s = fp32_to_fp16(sum * d);
  }
}

// ---------------------------------------------------------------- k-quants

void pack_scale_min_k4(const uint8_t* ls, const uint8_t* lm, uint8_t* scales) {
  std::memset(scales, 0, k_scale_size);
  for (int j = 0; j < 8; ++j) {
    if (j < 4) {
      scales[j] = ls[j];
      scales[j + 4] = lm[j];
    } else {
      scales[j + 4] = (ls[j] & 0x0f) | ((lm[j] & 0x0f) << 4);
      scales[j - 4] |= (ls[j] >> 4) << 6;
      scales[j] |= (lm[j] >> 4) << 6;
    }
  }
}

// ---- Scale search of q2_k, q4_k and q5_k
//
// A sub-block stores levels q in [0, q_max] and reads back as step * q + origin, origin <= 0
// (the block keeps -origin as the sub-block's "min"). Rounding onto the plain grid over the
// value range is not the best fit: the error is weighted, and a slightly denser or sparser
// grid often rounds the large weights better. So the search
//  1. starts from the plain grid: q_max levels over [origin, max], origin = min(values, 0);
//  2. tries grids of q_max + extra levels over [origin, max], for the few values of `extra`
//     in grid_candidates, with origin the best fit's so far (a better fit moves the grids);
//  3. refits step and origin to each grid's levels by weighted least squares (step alone when
//     the best origin would be positive) and keeps the fit with the smallest weighted error
//     (squared for q4_k and q5_k, absolute for q2_k: the measures llama-quantize uses, so
//     the chosen levels are the same).
// The arithmetic (float, in this order) is what the written files depend on byte for byte;
// quant_test pins the output.

enum class error_norm { squared, absolute };

// The extra levels tried: first_extra, first_extra + extra_step, ... (n_steps + 1 grids), and
// how a fit's error is measured.
struct grid_candidates {
  float first_extra;
  float extra_step;
  int n_steps;
  error_norm norm = error_norm::squared;
};

struct affine_fit {
  float step;
  float origin;  // the value of level 0, <= 0
};

// Levels of x on a grid of inv_step levels per unit with level 0 at origin, clamped to
// [0, q_max].
void place_on_grid(std::span<const float> x, float inv_step, float origin, int q_max,
                   uint8_t* levels) {
  for (size_t i = 0; i < x.size(); ++i) {
    levels[i] = static_cast<uint8_t>(std::clamp(nearest_int(inv_step * (x[i] - origin)), 0, q_max));
  }
}

// Sum of w * (step * q + origin - x)^2, or of w * |step * q + origin - x|. The square is
// rounded before the weight multiplies it, as llama.cpp does: (w * diff) * diff can pick
// another fit when two fits' errors are a rounding apart.
float weighted_error(std::span<const float> x, std::span<const float> w, const uint8_t* levels,
                     const affine_fit& fit, error_norm norm) {
  float error = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const float diff = fit.step * levels[i] + fit.origin - x[i];
    error += norm == error_norm::squared ? w[i] * (diff * diff) : w[i] * std::fabs(diff);
  }
  return error;
}

// Weighted least squares of x ≈ step * q + origin for fixed levels q: the 2x2 normal
// equations in (step, origin). sum_w and sum_wx do not depend on the levels. nullopt when the
// system is singular (every level equal).
std::optional<affine_fit> refit(std::span<const float> x, std::span<const float> w,
                                const uint8_t* levels, float sum_w, float sum_wx) {
  float sum_wq = 0, sum_wqq = 0, sum_wqx = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const int q = levels[i];
    sum_wq += w[i] * q;
    sum_wqq += w[i] * q * q;
    sum_wqx += w[i] * q * x[i];
  }
  const float det = sum_w * sum_wqq - sum_wq * sum_wq;
  if (!(det > 0)) return std::nullopt;
  affine_fit fit{.step = (sum_w * sum_wqx - sum_wx * sum_wq) / det,
                 .origin = (sum_wqq * sum_wx - sum_wq * sum_wqx) / det};
  if (fit.origin > 0) {
    // The stored min cannot be negative: pin the origin at zero and fit the step alone.
    fit = {.step = sum_wqx / sum_wqq, .origin = 0};
  }
  return fit;
}

// Finds levels (into `levels`) and returns the step; min_out gets -origin. `scratch` holds
// x.size() levels of a candidate.
float search_affine_levels(std::span<const float> x, std::span<const float> w, int q_max,
                           const grid_candidates& grids, uint8_t* levels, float& min_out,
                           uint8_t* scratch) {
  float lo = x[0], hi = x[0];
  float sum_w = w[0];
  float sum_wx = w[0] * x[0];
  for (size_t i = 1; i < x.size(); ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
    sum_w += w[i];
    sum_wx += w[i] * x[i];
  }
  affine_fit best{.step = 0, .origin = std::min(lo, 0.0f)};
  if (hi == best.origin) {  // all values equal and not positive: level 0 holds them
    std::fill(levels, levels + x.size(), 0);
    min_out = -best.origin;
    return 0.0f;
  }
  const float plain_inv_step = q_max / (hi - best.origin);
  best.step = 1 / plain_inv_step;
  place_on_grid(x, plain_inv_step, best.origin, q_max, levels);
  float best_error = weighted_error(x, w, levels, best, grids.norm);

  for (int k = 0; k <= grids.n_steps; ++k) {
    const float inv_step = (grids.first_extra + grids.extra_step * k + q_max) / (hi - best.origin);
    place_on_grid(x, inv_step, best.origin, q_max, scratch);
    const std::optional<affine_fit> fit = refit(x, w, scratch, sum_w, sum_wx);
    if (!fit) continue;
    const float error = weighted_error(x, w, scratch, *fit, grids.norm);
    if (error < best_error) {
      std::copy(scratch, scratch + x.size(), levels);
      best_error = error;
      best = *fit;
    }
  }
  min_out = -best.origin;
  return best.step;
}

// Symmetric quantization x ≈ scale*(L - nmax) with L in [0, 2*nmax), weights x^2, searching
// scales around nmax/max (ggml's make_qx_quants, rmse_type 1, no importance weights).
float make_qx_quants(int n, int nmax, const float* x, int8_t* L) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  }
  if (amax < 1e-30f) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.f;
  }
  float iscale = -nmax / max;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
    L[i] = static_cast<int8_t>(l + nmax);
    const float w = x[i] * x[i];
    sumlx += w * x[i] * l;
    suml2 += w * l * l;
  }
  float scale = sumlx / suml2;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(nmax + 0.1f * is) / max;
    sumlx = suml2 = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
      const float w = x[i] * x[i];
      sumlx += w * x[i] * l;
      suml2 += w * l * l;
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i) {
        L[i] = static_cast<int8_t>(nmax + std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1));
      }
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// The grids each k-quant tries: from one level fewer (4 bits) or half a level fewer (5 bits).
constexpr grid_candidates q4_k_grids{.first_extra = -1.0f, .extra_step = 0.1f, .n_steps = 20};
constexpr grid_candidates q5_k_grids{.first_extra = -0.5f, .extra_step = 0.1f, .n_steps = 15};

// Shared by q4_k (q_max 15) and q5_k (q_max 31): a super-block of 8 sub-blocks of 32. Each
// sub-block gets its own step and min from the search; these are then stored as 6-bit
// multiples of two fp16 super-block factors, and the values are placed again on the steps
// and mins as stored, so rounding the scales costs no more than it must.
void quantize_k_affine(const float* x, int q_max, const grid_candidates& grids, fp16_t& d_out,
                       fp16_t& dmin_out, uint8_t* scales_out, uint8_t* levels) {
  float steps[8], mins[8];
  uint8_t scratch[32];
  float max_step = 0, max_min = 0;
  for (int j = 0; j < 8; ++j) {
    const float* sub = x + 32 * j;
    // Error weights: large values count more, on top of the sub-block's RMS for every value.
    float sum_squares = 0;
    for (int i = 0; i < 32; ++i) sum_squares += sub[i] * sub[i];
    const float rms = std::sqrt(sum_squares / 32);
    float weights[32];
    for (int i = 0; i < 32; ++i) weights[i] = rms + std::fabs(sub[i]);
    steps[j] =
        search_affine_levels({sub, 32}, weights, q_max, grids, levels + 32 * j, mins[j], scratch);
    max_step = std::max(max_step, steps[j]);
    max_min = std::max(max_min, mins[j]);
  }
  const float steps_per_unit = max_step > 0 ? 63.f / max_step : 0.f;
  const float mins_per_unit = max_min > 0 ? 63.f / max_min : 0.f;
  uint8_t step_codes[8], min_codes[8];
  for (int j = 0; j < 8; ++j) {
    step_codes[j] = static_cast<uint8_t>(std::min(63, nearest_int(steps_per_unit * steps[j])));
    min_codes[j] = static_cast<uint8_t>(std::min(63, nearest_int(mins_per_unit * mins[j])));
  }
  pack_scale_min_k4(step_codes, min_codes, scales_out);
  d_out = fp32_to_fp16(max_step / 63.f);
  dmin_out = fp32_to_fp16(max_min / 63.f);
  for (int j = 0; j < 8; ++j) {
    uint8_t step_code, min_code;
    scale_min_k4(j, scales_out, step_code, min_code);
    const float step = fp16_to_fp32(d_out) * step_code;
    if (!step) continue;
    const float min = fp16_to_fp32(dmin_out) * min_code;
    for (int i = 0; i < 32; ++i) {
      levels[32 * j + i] =
          static_cast<uint8_t>(std::clamp(nearest_int((x[32 * j + i] + min) / step), 0, q_max));
    }
  }
}

void quantize_q4_k(const float* x, block_q4_k* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += qk_k) {
    uint8_t L[qk_k];
    quantize_k_affine(x, 15, q4_k_grids, y[i].d, y[i].dmin, y[i].scales, L);
    uint8_t* q = y[i].qs;
    for (int j = 0; j < qk_k; j += 64, q += 32) {
      for (int l = 0; l < 32; ++l) q[l] = L[j + l] | (L[j + l + 32] << 4);
    }
  }
}

void quantize_q5_k(const float* x, block_q5_k* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += qk_k) {
    uint8_t L[qk_k];
    quantize_k_affine(x, 31, q5_k_grids, y[i].d, y[i].dmin, y[i].scales, L);
    std::memset(y[i].qh, 0, sizeof(y[i].qh));
    uint8_t* ql = y[i].qs;
    uint8_t m1 = 1, m2 = 2;
    for (int n = 0; n < qk_k; n += 64, ql += 32, m1 <<= 2, m2 <<= 2) {
      for (int j = 0; j < 32; ++j) {
        int l1 = L[n + j], l2 = L[n + j + 32];
        if (l1 > 15) {
          l1 -= 16;
          y[i].qh[j] |= m1;
        }
        if (l2 > 15) {
          l2 -= 16;
          y[i].qh[j] |= m2;
        }
        ql[j] = static_cast<uint8_t>(l1 | (l2 << 4));
      }
    }
  }
}

void quantize_q6_k(const float* x, block_q6_k* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += qk_k) {
    int8_t L[qk_k];
    float scales[qk_k / 16];
    float max_scale = 0, max_abs_scale = 0;
    for (int ib = 0; ib < qk_k / 16; ++ib) {
      scales[ib] = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
      if (std::fabs(scales[ib]) > max_abs_scale) {
        max_abs_scale = std::fabs(scales[ib]);
        max_scale = scales[ib];
      }
    }
    if (!max_abs_scale) {
      std::memset(&y[i], 0, sizeof(block_q6_k));
      continue;
    }
    const float iscale = -128.f / max_scale;
    y[i].d = fp32_to_fp16(1 / iscale);
    for (int ib = 0; ib < qk_k / 16; ++ib) {
      y[i].scales[ib] = static_cast<int8_t>(std::min(127, nearest_int(iscale * scales[ib])));
    }
    for (int j = 0; j < qk_k / 16; ++j) {
      const float d = fp16_to_fp32(y[i].d) * y[i].scales[j];
      if (!d) continue;
      for (int ii = 0; ii < 16; ++ii) {
        L[16 * j + ii] =
            static_cast<int8_t>(std::clamp(nearest_int(x[16 * j + ii] / d), -32, 31) + 32);
      }
    }
    uint8_t* ql = y[i].ql;
    uint8_t* qh = y[i].qh;
    for (int j = 0; j < qk_k; j += 128, ql += 64, qh += 32) {
      for (int l = 0; l < 32; ++l) {
        const uint8_t q1 = L[j + l] & 0xf, q2 = L[j + l + 32] & 0xf;
        const uint8_t q3 = L[j + l + 64] & 0xf, q4 = L[j + l + 96] & 0xf;
        ql[l] = q1 | (q3 << 4);
        ql[l + 32] = q2 | (q4 << 4);
        qh[l] = (L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) |
                ((L[j + l + 96] >> 4) << 6);
      }
    }
  }
}

void quantize_q8_k(const float* x, block_q8_k* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += qk_k) {
    float max = 0, amax = 0;
    for (int j = 0; j < qk_k; ++j) {
      if (std::fabs(x[j]) > amax) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    if (!amax) {
      std::memset(&y[i], 0, sizeof(block_q8_k));
      continue;
    }
    const float iscale = -127.f / max;
    for (int j = 0; j < qk_k; ++j) {
      y[i].qs[j] = static_cast<int8_t>(std::min(127, nearest_int(iscale * x[j])));
    }
    for (int j = 0; j < qk_k / 16; ++j) {
      int sum = 0;
      for (int l = 0; l < 16; ++l) sum += y[i].qs[16 * j + l];
      y[i].bsums[j] = static_cast<int16_t>(sum);
    }
    y[i].d = 1 / iscale;
  }
}

// ---- q2_k and q3_k: sub-blocks of 16 with 2- and 3-bit levels

// Levels of a 256-element super-block into q2_k/q3_k's qs: bits 2s..2s+1 of byte l of each
// 128-element half hold element 32*s + l of it.
void pack_2bit_levels(const uint8_t* levels, uint8_t* qs) {
  for (int half = 0; half < qk_k; half += 128, qs += 32) {
    for (int l = 0; l < 32; ++l) {
      qs[l] = static_cast<uint8_t>(levels[half + l] | (levels[half + l + 32] << 2) |
                                   (levels[half + l + 64] << 4) | (levels[half + l + 96] << 6));
    }
  }
}

// q2_k's grids: from half a level fewer, and the absolute error.
constexpr grid_candidates q2_k_grids{
    .first_extra = -0.5f, .extra_step = 0.1f, .n_steps = 15, .norm = error_norm::absolute};

// Each sub-block of 16 gets its step and min from the affine search (weights |x|); both are
// stored as 4-bit multiples of two fp16 super-block factors, and the values are placed again
// on the stored steps and mins (a sub-block whose stored step is 0 keeps its searched levels).
void quantize_q2_k(const float* x, block_q2_k* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += qk_k) {
    uint8_t levels[qk_k], scratch[16];
    float steps[16], mins[16];
    float max_step = 0, max_min = 0;
    for (int j = 0; j < 16; ++j) {
      const float* sub = x + 16 * j;
      float weights[16];
      for (int l = 0; l < 16; ++l) weights[l] = std::fabs(sub[l]);
      steps[j] = search_affine_levels({sub, 16}, weights, 3, q2_k_grids, levels + 16 * j, mins[j],
                                      scratch);
      max_step = std::max(max_step, steps[j]);
      max_min = std::max(max_min, mins[j]);
    }
    for (int j = 0; j < 16; ++j) y[i].scales[j] = 0;
    y[i].d = fp32_to_fp16(0.f);
    y[i].dmin = fp32_to_fp16(0.f);
    if (max_step > 0) {
      const float codes_per_unit = 15.f / max_step;
      for (int j = 0; j < 16; ++j)
        y[i].scales[j] = static_cast<uint8_t>(nearest_int(codes_per_unit * steps[j]));
      y[i].d = fp32_to_fp16(max_step / 15.f);
    }
    if (max_min > 0) {
      const float codes_per_unit = 15.f / max_min;
      for (int j = 0; j < 16; ++j)
        y[i].scales[j] |= static_cast<uint8_t>(nearest_int(codes_per_unit * mins[j]) << 4);
      y[i].dmin = fp32_to_fp16(max_min / 15.f);
    }
    for (int j = 0; j < 16; ++j) {
      const float step = fp16_to_fp32(y[i].d) * static_cast<float>(y[i].scales[j] & 0xf);
      if (!step) continue;
      const float min = fp16_to_fp32(y[i].dmin) * static_cast<float>(y[i].scales[j] >> 4);
      for (int l = 0; l < 16; ++l) {
        levels[16 * j + l] =
            static_cast<uint8_t>(std::clamp(nearest_int((x[16 * j + l] + min) / step), 0, 3));
      }
    }
    pack_2bit_levels(levels, y[i].qs);
  }
}

// Symmetric levels l in [-4, 3] for x ≈ scale * l, error weights x^2: start from the grid
// that puts the largest magnitude on -4, then move single elements to the level their
// leave-one-out least-squares scale asks for while that lowers the error (at most 5 passes).
// Returns the least-squares scale; levels come out offset by 4 (0 for an all-zero input).
float search_q3_levels(const float* x, int8_t* levels) {
  constexpr int n = 16, half_range = 4;
  float max = 0, amax = 0;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  }
  if (amax < 1e-15f) {
    std::fill(levels, levels + n, 0);
    return 0.f;
  }
  const float inv_scale = -half_range / max;
  float sum_wxl = 0, sum_wll = 0;
  for (int i = 0; i < n; ++i) {
    const int l = std::clamp(nearest_int(inv_scale * x[i]), -half_range, half_range - 1);
    levels[i] = static_cast<int8_t>(l);
    const float w = x[i] * x[i];
    sum_wxl += w * x[i] * l;
    sum_wll += w * l * l;
  }
  for (int pass = 0; pass < 5; ++pass) {
    int n_changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = x[i] * x[i];
      float wxl = sum_wxl - w * x[i] * levels[i];
      if (!(wxl > 0)) continue;
      float wll = sum_wll - w * levels[i] * levels[i];
      const int l = std::clamp(nearest_int(x[i] * wll / wxl), -half_range, half_range - 1);
      if (l == levels[i]) continue;
      wxl += w * x[i] * l;
      wll += w * l * l;
      // Better when the explained part wxl^2 / wll grows.
      if (wll > 0 && wxl * wxl * sum_wll > sum_wxl * sum_wxl * wll) {
        levels[i] = static_cast<int8_t>(l);
        sum_wxl = wxl;
        sum_wll = wll;
        ++n_changed;
      }
    }
    if (!n_changed) break;
  }
  for (int i = 0; i < n; ++i) levels[i] = static_cast<int8_t>(levels[i] + half_range);
  return sum_wxl / sum_wll;
}

// 6-bit scale code (0..63) of sub-block j of a q3_k block.
int q3_k_scale_code(const uint8_t* scales, int j) {
  const int low = j < 8 ? scales[j] & 0xf : scales[j - 8] >> 4;
  return low | (((scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4);
}

// Each sub-block of 16 gets its own signed scale from the level search; the scales are stored
// as 6-bit multiples of one fp16 factor and the values placed again on the stored scales.
void quantize_q3_k(const float* x, block_q3_k* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += qk_k) {
    int8_t levels[qk_k];
    float scales[16];
    float max_scale = 0, max_abs_scale = 0;
    for (int j = 0; j < 16; ++j) {
      scales[j] = search_q3_levels(x + 16 * j, levels + 16 * j);
      if (std::fabs(scales[j]) > max_abs_scale) {
        max_abs_scale = std::fabs(scales[j]);
        max_scale = scales[j];
      }
    }
    std::memset(y[i].scales, 0, sizeof(y[i].scales));
    y[i].d = fp32_to_fp16(0.f);
    if (max_scale) {
      const float codes_per_unit = -32.f / max_scale;
      for (int j = 0; j < 16; ++j) {
        const int code = std::clamp(nearest_int(codes_per_unit * scales[j]), -32, 31) + 32;
        if (j < 8) {
          y[i].scales[j] = static_cast<uint8_t>(code & 0xf);
        } else {
          y[i].scales[j - 8] |= static_cast<uint8_t>((code & 0xf) << 4);
        }
        y[i].scales[8 + j % 4] |= static_cast<uint8_t>((code >> 4) << (2 * (j / 4)));
      }
      y[i].d = fp32_to_fp16(1 / codes_per_unit);
    }
    for (int j = 0; j < 16; ++j) {
      const float step =
          fp16_to_fp32(y[i].d) * static_cast<float>(q3_k_scale_code(y[i].scales, j) - 32);
      if (!step) continue;
      for (int l = 0; l < 16; ++l) {
        levels[16 * j + l] =
            static_cast<int8_t>(std::clamp(nearest_int(x[16 * j + l] / step), -4, 3) + 4);
      }
    }
    // Levels 4..7 set their element's high bit and keep the low two bits in qs.
    std::memset(y[i].hmask, 0, sizeof(y[i].hmask));
    uint8_t low[qk_k];
    for (int j = 0; j < qk_k; ++j) {
      int level = levels[j];
      if (level > 3) {
        y[i].hmask[j % 32] |= static_cast<uint8_t>(1 << (j / 32));
        level -= 4;
      }
      low[j] = static_cast<uint8_t>(level);
    }
    pack_2bit_levels(low, y[i].qs);
  }
}

// ---- iq4_nl and iq4_xs: 4-bit indices into the non-linear levels

// Index of the level nearest to v (the upper one on a tie).
int nearest_iq4_level(float v) {
  if (v <= iq4_levels[0]) return 0;
  if (v >= iq4_levels[15]) return 15;
  int lo = 0, hi = 15;
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    if (v < iq4_levels[mid]) {
      hi = mid;
    } else {
      lo = mid;
    }
  }
  return v - iq4_levels[hi - 1] < iq4_levels[hi] - v ? hi - 1 : hi;
}

// The scale of one block of 32 (error weights x^2): the scale that puts the largest magnitude
// on level -127, then 15 nearby grids (the largest magnitude on -127 + k, k = -7..7), keeping
// the least-squares scale of the grid that explains most. 0 for an all-zero block.
float search_iq4_scale(const float* x) {
  constexpr int n = 32, n_tries = 7;
  float amax = 0, max = 0;
  for (int j = 0; j < n; ++j) {
    if (std::fabs(x[j]) > amax) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  if (amax < 1e-15f) return 0.f;
  // Σ w*q*x and Σ w*q*q of x placed on the levels with inv_scale.
  const auto fit = [&](float inv_scale, float& sum_wqx, float& sum_wqq) {
    sum_wqx = sum_wqq = 0;
    for (int j = 0; j < n; ++j) {
      const float q = iq4_levels[nearest_iq4_level(inv_scale * x[j])];
      const float w = x[j] * x[j];
      sum_wqx += w * q * x[j];
      sum_wqq += w * q * q;
    }
  };
  float sum_wqx, sum_wqq;
  fit(1 / (-max / iq4_levels[0]), sum_wqx, sum_wqq);
  float scale = sum_wqx / sum_wqq;
  float best = scale * sum_wqx;
  for (int k = -n_tries; k <= n_tries; ++k) {
    fit(static_cast<float>(k + iq4_levels[0]) / max, sum_wqx, sum_wqq);
    if (sum_wqq > 0 && sum_wqx * sum_wqx > best * sum_wqq) {
      scale = sum_wqx / sum_wqq;
      best = scale * sum_wqx;
    }
  }
  return scale;
}

// Two 16-element halves of 32 level indices into 16 bytes (low nibbles: the first half).
void pack_nibbles(const uint8_t* indices, uint8_t* qs) {
  for (int j = 0; j < 16; ++j) qs[j] = static_cast<uint8_t>(indices[j] | (indices[j + 16] << 4));
}

void quantize_iq4_nl(const float* x, block_iq4_nl* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += qk4_nl) {
    const float scale = search_iq4_scale(x);
    y[i].d = fp32_to_fp16(scale);
    const float inv_scale = scale ? 1 / scale : 0;
    uint8_t indices[qk4_nl];
    for (int j = 0; j < qk4_nl; ++j)
      indices[j] = static_cast<uint8_t>(nearest_iq4_level(inv_scale * x[j]));
    pack_nibbles(indices, y[i].qs);
  }
}

// Each sub-block's scale from the search, stored as a 6-bit multiple of the super-block factor
// d = -max_scale/32; the values are placed on the stored scales (d in float, as written
// before rounding to fp16).
void quantize_iq4_xs(const float* x, block_iq4_xs* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += qk_k) {
    float scales[8];
    float max_scale = 0, max_abs_scale = 0;
    for (int j = 0; j < 8; ++j) {
      scales[j] = search_iq4_scale(x + 32 * j);
      if (std::fabs(scales[j]) > max_abs_scale) {
        max_abs_scale = std::fabs(scales[j]);
        max_scale = scales[j];
      }
    }
    const float d = -max_scale / 32;
    y[i].d = fp32_to_fp16(d);
    y[i].scales_h = 0;
    const float codes_per_unit = d ? 1 / d : 0.f;
    for (int j = 0; j < 8; ++j) {
      const int code = std::clamp(nearest_int(codes_per_unit * scales[j]), -32, 31);
      const float step = d * static_cast<float>(code);
      const float inv_step = step ? 1 / step : 0.f;
      uint8_t indices[32];
      for (int l = 0; l < 32; ++l)
        indices[l] = static_cast<uint8_t>(nearest_iq4_level(inv_step * x[32 * j + l]));
      pack_nibbles(indices, y[i].qs + 16 * j);
      const int stored = code + 32;
      if (j % 2 == 0) {
        y[i].scales_l[j / 2] = static_cast<uint8_t>(stored & 0xf);
      } else {
        y[i].scales_l[j / 2] |= static_cast<uint8_t>((stored & 0xf) << 4);
      }
      y[i].scales_h |= static_cast<uint16_t>((stored >> 4) << (2 * j));
    }
  }
}

// ---------------------------------------------------------------- dequantization

void dequantize_q4_k(const block_q4_k* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_fp32(x[i].d), dmin = fp16_to_fp32(x[i].dmin);
    const uint8_t* q = x[i].qs;
    for (int j = 0; j < 4; ++j, q += 32) {
      uint8_t sc, m;
      scale_min_k4(2 * j, x[i].scales, sc, m);
      const float d1 = d * sc, m1 = dmin * m;
      scale_min_k4(2 * j + 1, x[i].scales, sc, m);
      const float d2 = d * sc, m2 = dmin * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0xf) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
    }
  }
}

void dequantize_q5_k(const block_q5_k* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_fp32(x[i].d), dmin = fp16_to_fp32(x[i].dmin);
    const uint8_t* ql = x[i].qs;
    const uint8_t* qh = x[i].qh;
    uint8_t u1 = 1, u2 = 2;
    for (int j = 0; j < 4; ++j, ql += 32, u1 <<= 2, u2 <<= 2) {
      uint8_t sc, m;
      scale_min_k4(2 * j, x[i].scales, sc, m);
      const float d1 = d * sc, m1 = dmin * m;
      scale_min_k4(2 * j + 1, x[i].scales, sc, m);
      const float d2 = d * sc, m2 = dmin * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * ((ql[l] & 0xf) + (qh[l] & u1 ? 16 : 0)) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
    }
  }
}

void dequantize_q6_k(const block_q6_k* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_fp32(x[i].d);
    const uint8_t* ql = x[i].ql;
    const uint8_t* qh = x[i].qh;
    const int8_t* sc = x[i].scales;
    for (int n = 0; n < qk_k; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0xf) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l] = d * sc[is] * q1;
        y[l + 32] = d * sc[is + 2] * q2;
        y[l + 64] = d * sc[is + 4] * q3;
        y[l + 96] = d * sc[is + 6] * q4;
      }
    }
  }
}

void dequantize_q2_k(const block_q2_k* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_fp32(x[i].d), dmin = fp16_to_fp32(x[i].dmin);
    for (int e = 0; e < qk_k; ++e, ++y) {
      const int half = e / 128, shift = 2 * ((e % 128) / 32), l = e % 32;
      const uint8_t sc = x[i].scales[e / 16];
      const int q = (x[i].qs[32 * half + l] >> shift) & 3;
      *y = d * static_cast<float>(sc & 0xf) * static_cast<float>(q) -
           dmin * static_cast<float>(sc >> 4);
    }
  }
}

void dequantize_q3_k(const block_q3_k* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_fp32(x[i].d);
    for (int e = 0; e < qk_k; ++e, ++y) {
      const int half = e / 128, shift = 2 * ((e % 128) / 32), l = e % 32;
      const int low = (x[i].qs[32 * half + l] >> shift) & 3;
      const int q = low - ((x[i].hmask[l] >> (e / 32)) & 1 ? 0 : 4);
      const float step = d * static_cast<float>(q3_k_scale_code(x[i].scales, e / 16) - 32);
      *y = step * static_cast<float>(q);
    }
  }
}

void dequantize_iq4_nl(const block_iq4_nl* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += qk4_nl) {
    const float d = fp16_to_fp32(x[i].d);
    for (int j = 0; j < 16; ++j) {
      y[j] = d * iq4_levels[x[i].qs[j] & 0xf];
      y[j + 16] = d * iq4_levels[x[i].qs[j] >> 4];
    }
  }
}

// 6-bit scale code (0..63) of sub-block j of an iq4_xs block.
int iq4_xs_scale_code(const block_iq4_xs& b, int j) {
  return ((b.scales_l[j / 2] >> (4 * (j % 2))) & 0xf) | (((b.scales_h >> (2 * j)) & 3) << 4);
}

void dequantize_iq4_xs(const block_iq4_xs* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_fp32(x[i].d);
    for (int j = 0; j < 8; ++j, y += 32) {
      const float step = d * static_cast<float>(iq4_xs_scale_code(x[i], j) - 32);
      const uint8_t* qs = x[i].qs + 16 * j;
      for (int l = 0; l < 16; ++l) {
        y[l] = step * iq4_levels[qs[l] & 0xf];
        y[l + 16] = step * iq4_levels[qs[l] >> 4];
      }
    }
  }
}

[[noreturn]] void unsupported(const char* what, tensor_type type) {
  std::fprintf(stderr, "%s: unsupported tensor type %u\n", what, static_cast<unsigned>(type));
  std::abort();
}

}  // namespace

float fp16_to_fp32(fp16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1f;
  const uint32_t mant = h & 0x3ff;
  if (exp == 0) {
    const float f = static_cast<float>(mant) * 5.9604644775390625e-8f;  // 2^-24
    return sign ? -f : f;
  }
  if (exp == 31) return bits_float(sign | 0x7f800000 | (mant << 13));
  return bits_float(sign | ((exp + 112) << 23) | (mant << 13));
}

fp16_t fp32_to_fp16(float f) {
  uint32_t x = float_bits(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000);
  x &= 0x7fffffff;
  if (x >= 0x7f800000) return sign | 0x7c00 | (x > 0x7f800000 ? 0x200 : 0);  // inf, nan
  if (x >= 0x477ff000) return sign | 0x7c00;                                 // rounds to infinity
  if (x < 0x38800000) {
    // Subnormal half: adding 0.5 aligns the mantissa so the FPU rounds to nearest even.
    const float r = bits_float(x) + 0.5f;
    return sign | static_cast<uint16_t>(float_bits(r) - 0x3f000000);
  }
  const uint32_t odd = (x >> 13) & 1;
  x += 0xc8000fffu + odd;  // rebias exponent (-112 << 23) and round to nearest even
  return sign | static_cast<uint16_t>(x >> 13);
}

float bf16_to_fp32(bf16_t h) {
  return bits_float(static_cast<uint32_t>(h) << 16);
}

bf16_t fp32_to_bf16(float f) {
  const uint32_t u = float_bits(f);
  if ((u & 0x7fffffff) > 0x7f800000) return static_cast<bf16_t>((u >> 16) | 64);  // quiet NaN
  return static_cast<bf16_t>((u + (0x7fff + ((u >> 16) & 1))) >> 16);
}

void dequantize_row_reference(tensor_type type, const void* src, float* y, int64_t n) {
  const int64_t nb = n / traits_of(type).block_size;
  assert(n % traits_of(type).block_size == 0 && "row length must be a multiple of the block");
  switch (type) {
    case tensor_type::f32:
      std::memcpy(y, src, n * sizeof(float));
      return;
    case tensor_type::f16: {
      const auto* x = static_cast<const fp16_t*>(src);
      for (int64_t i = 0; i < n; ++i) y[i] = fp16_to_fp32(x[i]);
      return;
    }
    case tensor_type::bf16: {
      const auto* x = static_cast<const bf16_t*>(src);
      for (int64_t i = 0; i < n; ++i) y[i] = bf16_to_fp32(x[i]);
      return;
    }
    case tensor_type::q4_0: {
      const auto* x = static_cast<const block_q4_0*>(src);
      for (int64_t i = 0; i < nb; ++i, y += 32) {
        const float d = fp16_to_fp32(x[i].d);
        for (int j = 0; j < 16; ++j) {
          y[j] = ((x[i].qs[j] & 0xf) - 8) * d;
          y[j + 16] = ((x[i].qs[j] >> 4) - 8) * d;
        }
      }
      return;
    }
    case tensor_type::q4_1: {
      const auto* x = static_cast<const block_q4_1*>(src);
      for (int64_t i = 0; i < nb; ++i, y += 32) {
        const float d = fp16_to_fp32(x[i].d), m = fp16_to_fp32(x[i].m);
        for (int j = 0; j < 16; ++j) {
          y[j] = (x[i].qs[j] & 0xf) * d + m;
          y[j + 16] = (x[i].qs[j] >> 4) * d + m;
        }
      }
      return;
    }
    case tensor_type::q5_0: {
      const auto* x = static_cast<const block_q5_0*>(src);
      for (int64_t i = 0; i < nb; ++i, y += 32) {
        const float d = fp16_to_fp32(x[i].d);
        uint32_t qh;
        std::memcpy(&qh, x[i].qh, 4);
        for (int j = 0; j < 16; ++j) {
          const int h0 = ((qh >> j) & 1) << 4, h1 = ((qh >> (j + 16)) & 1) << 4;
          y[j] = (((x[i].qs[j] & 0xf) | h0) - 16) * d;
          y[j + 16] = (((x[i].qs[j] >> 4) | h1) - 16) * d;
        }
      }
      return;
    }
    case tensor_type::q5_1: {
      const auto* x = static_cast<const block_q5_1*>(src);
      for (int64_t i = 0; i < nb; ++i, y += 32) {
        const float d = fp16_to_fp32(x[i].d), m = fp16_to_fp32(x[i].m);
        uint32_t qh;
        std::memcpy(&qh, x[i].qh, 4);
        for (int j = 0; j < 16; ++j) {
          const int h0 = ((qh >> j) & 1) << 4, h1 = ((qh >> (j + 16)) & 1) << 4;
          y[j] = ((x[i].qs[j] & 0xf) | h0) * d + m;
          y[j + 16] = ((x[i].qs[j] >> 4) | h1) * d + m;
        }
      }
      return;
    }
    case tensor_type::q8_0: {
      const auto* x = static_cast<const block_q8_0*>(src);
      for (int64_t i = 0; i < nb; ++i, y += 32) {
        const float d = fp16_to_fp32(x[i].d);
        for (int j = 0; j < 32; ++j) y[j] = x[i].qs[j] * d;
      }
      return;
    }
    case tensor_type::q8_1: {
      const auto* x = static_cast<const block_q8_1*>(src);
      for (int64_t i = 0; i < nb; ++i, y += 32) {
        const float d = fp16_to_fp32(x[i].d);
        for (int j = 0; j < 32; ++j) y[j] = x[i].qs[j] * d;
      }
      return;
    }
    case tensor_type::q4_k:
      dequantize_q4_k(static_cast<const block_q4_k*>(src), y, nb);
      return;
    case tensor_type::q5_k:
      dequantize_q5_k(static_cast<const block_q5_k*>(src), y, nb);
      return;
    case tensor_type::q6_k:
      dequantize_q6_k(static_cast<const block_q6_k*>(src), y, nb);
      return;
    case tensor_type::q2_k:
      dequantize_q2_k(static_cast<const block_q2_k*>(src), y, nb);
      return;
    case tensor_type::q3_k:
      dequantize_q3_k(static_cast<const block_q3_k*>(src), y, nb);
      return;
    case tensor_type::iq4_nl:
      dequantize_iq4_nl(static_cast<const block_iq4_nl*>(src), y, nb);
      return;
    case tensor_type::iq4_xs:
      dequantize_iq4_xs(static_cast<const block_iq4_xs*>(src), y, nb);
      return;
    case tensor_type::q8_k: {
      const auto* x = static_cast<const block_q8_k*>(src);
      for (int64_t i = 0; i < nb; ++i, y += qk_k) {
        for (int j = 0; j < qk_k; ++j) y[j] = x[i].qs[j] * x[i].d;
      }
      return;
    }
  }
  unsupported("dequantize_row_reference", type);
}

bool can_quantize(tensor_type type) {
  return traits_of(static_cast<uint32_t>(type)).has_value();
}

void quantize_row(tensor_type type, const float* x, void* dst, int64_t n) {
  const int64_t nb = n / traits_of(type).block_size;
  assert(n % traits_of(type).block_size == 0 && "row length must be a multiple of the block");
  switch (type) {
    case tensor_type::f32:
      std::memcpy(dst, x, n * sizeof(float));
      return;
    case tensor_type::f16: {
      auto* y = static_cast<fp16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) y[i] = fp32_to_fp16(x[i]);
      return;
    }
    case tensor_type::bf16: {
      auto* y = static_cast<bf16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) y[i] = fp32_to_bf16(x[i]);
      return;
    }
    case tensor_type::q4_0:
      return quantize_q4_0(x, static_cast<block_q4_0*>(dst), nb);
    case tensor_type::q4_1:
      return quantize_q4_1(x, static_cast<block_q4_1*>(dst), nb);
    case tensor_type::q5_0:
      return quantize_q5_0(x, static_cast<block_q5_0*>(dst), nb);
    case tensor_type::q5_1:
      return quantize_q5_1(x, static_cast<block_q5_1*>(dst), nb);
    case tensor_type::q8_0:
      return quantize_q8_0(x, static_cast<block_q8_0*>(dst), nb);
    case tensor_type::q8_1:
      return quantize_q8_1(x, static_cast<block_q8_1*>(dst), nb);
    case tensor_type::q4_k:
      return quantize_q4_k(x, static_cast<block_q4_k*>(dst), nb);
    case tensor_type::q5_k:
      return quantize_q5_k(x, static_cast<block_q5_k*>(dst), nb);
    case tensor_type::q6_k:
      return quantize_q6_k(x, static_cast<block_q6_k*>(dst), nb);
    case tensor_type::q8_k:
      return quantize_q8_k(x, static_cast<block_q8_k*>(dst), nb);
    case tensor_type::q2_k:
      return quantize_q2_k(x, static_cast<block_q2_k*>(dst), nb);
    case tensor_type::q3_k:
      return quantize_q3_k(x, static_cast<block_q3_k*>(dst), nb);
    case tensor_type::iq4_nl:
      return quantize_iq4_nl(x, static_cast<block_iq4_nl*>(dst), nb);
    case tensor_type::iq4_xs:
      return quantize_iq4_xs(x, static_cast<block_iq4_xs*>(dst), nb);
  }
  unsupported("quantize_row", type);
}

float dot_reference(tensor_type type, const void* w_row, const float* x, int64_t n) {
  std::vector<float> w(static_cast<size_t>(n));
  dequantize_row_reference(type, w_row, w.data(), n);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(w[i]) * x[i];
  return static_cast<float>(sum);
}

void scale_min_k4(int j, const uint8_t* q, uint8_t& sc, uint8_t& m) {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4);
    m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

}  // namespace rbee::engine
