#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "engine/cpu/dispatch.h"
#include "engine/quant.h"

namespace rbee::engine::cpu {

namespace {

// Rows per task: a few tasks per thread so a thread slowed by other load is balanced out,
// and a multiple of 8 so prefill tiles stay whole.
int64_t rows_per_task(int64_t n_rows, int n_threads) {
  const int64_t target_tasks = n_threads == 1 ? 1 : int64_t{n_threads} * 6;
  int64_t chunk = (n_rows + target_tasks - 1) / target_tasks;
  chunk = (chunk + 7) / 8 * 8;
  return std::max<int64_t>(chunk, 8);
}

}  // namespace

bool matmul_supports(tensor_type t) {
  return weight_slot_of(t) >= 0;
}

size_t matmul_scratch_bytes(tensor_type t, int64_t n_cols, int64_t n_tokens) {
  const act_format f = act_format_of(t);
  if (f == act_format::f32) return 0;
  return act_row_bytes(f, n_cols) * static_cast<size_t>(n_tokens);
}

void matmul(thread_pool& pool, tensor_type t, const void* w, int64_t n_rows, int64_t n_cols,
            const float* x, int64_t n_tokens, float* y, void* scratch) {
  const int slot = weight_slot_of(t);
  if (slot < 0) {
    std::fprintf(stderr, "matmul: unsupported weight type %s\n", std::string(to_string(t)).c_str());
    std::abort();
  }
  assert(n_cols % traits_of(t).block_size == 0 && "n_cols must be a multiple of the block size");
  const kernel_table& k = active_kernels();
  const act_format f = act_format_of(t);

  gemm_args base{};
  base.w_stride = row_size(t, n_cols);
  base.n = n_cols;
  base.y_stride = n_rows;
  base.n_tok = n_tokens;
  if (f == act_format::f32) {
    base.x = reinterpret_cast<const uint8_t*>(x);
    base.x_stride = n_cols * sizeof(float);
  } else {
    assert(scratch && "quantized weights need matmul_scratch_bytes() of scratch");
    auto* act = static_cast<uint8_t*>(scratch);
    const size_t stride = act_row_bytes(f, n_cols);
    const auto quantize = f == act_format::q8_32 ? k.quantize_q8_32 : k.quantize_q8_k;
    const auto quantize_token = [&](int tok, int) {
      quantize(x + tok * n_cols, n_cols, tok, n_tokens, act, stride);
    };
    pool.run(static_cast<int>(n_tokens), quantize_token);
    base.x = act;
    base.x_stride = stride;
  }

  const int64_t chunk = rows_per_task(n_rows, pool.size());
  const int n_tasks = static_cast<int>((n_rows + chunk - 1) / chunk);
  const gemm_fn gemm = k.gemm[slot];
  const auto* wb = static_cast<const uint8_t*>(w);
  pool.run(n_tasks, [&](int task, int) {
    gemm_args a = base;
    const int64_t r0 = task * chunk;
    a.n_rows = std::min(chunk, n_rows - r0);
    a.w = wb + r0 * base.w_stride;
    a.y = y + r0;
    gemm(a);
  });
}

void dequantize_row(tensor_type t, const void* src, float* dst, int64_t n) {
  if (t == tensor_type::f16) {
    active_kernels().f16_to_f32(static_cast<const fp16_t*>(src), dst, n);
    return;
  }
  dequantize_row_reference(t, src, dst, n);
}

void rmsnorm(const float* x, const float* weight, float* out, int64_t n, float eps) {
  active_kernels().rmsnorm(x, weight, out, n, eps);
}
void softmax(float* x, int64_t n) {
  active_kernels().softmax(x, n);
}
void silu_mul(const float* gate, const float* up, float* out, int64_t n) {
  active_kernels().silu_mul(gate, up, out, n);
}
float dot_f32(const float* a, const float* b, int64_t n) {
  return active_kernels().dot_f32(a, b, n);
}
float dot_f16(const fp16_t* a, const float* b, int64_t n) {
  return active_kernels().dot_f16(a, b, n);
}
void axpy_f32(float a, const float* x, float* y, int64_t n) {
  active_kernels().axpy_f32(a, x, y, n);
}
void axpy_f16(float a, const fp16_t* x, float* y, int64_t n) {
  active_kernels().axpy_f16(a, x, y, n);
}
void f32_to_f16(const float* x, fp16_t* y, int64_t n) {
  active_kernels().f32_to_f16(x, y, n);
}
void f16_to_f32(const fp16_t* x, float* y, int64_t n) {
  active_kernels().f16_to_f32(x, y, n);
}

void rope(float* x, int n_heads, int head_dim, int pos, float freq_base, bool neox) {
  const int half = head_dim / 2;
  for (int i = 0; i < half; ++i) {
    // Same angle formula as ggml (theta = pos * base^(-2i/d)), in double for accuracy at
    // long positions.
    const double theta = pos * std::pow(static_cast<double>(freq_base), -2.0 * i / head_dim);
    const float c = static_cast<float>(std::cos(theta));
    const float s = static_cast<float>(std::sin(theta));
    for (int h = 0; h < n_heads; ++h) {
      float* v = x + static_cast<int64_t>(h) * head_dim;
      const int i0 = neox ? i : 2 * i;
      const int i1 = neox ? i + half : 2 * i + 1;
      const float a = v[i0], b = v[i1];
      v[i0] = a * c - b * s;
      v[i1] = a * s + b * c;
    }
  }
}

}  // namespace rbee::engine::cpu
