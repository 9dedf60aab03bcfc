#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "engine/cpu/dispatch.h"
#include "engine/quant.h"

namespace rbee::engine::cpu {

namespace {

// Rows per task: a few tasks per thread so a thread slowed by other load is balanced out,
// and a multiple of 16 so that repacked groups of rows (weight_layout::rows16) stay whole.
int64_t rows_per_task(int64_t n_rows, int n_threads) {
  const int64_t target_tasks = n_threads == 1 ? 1 : int64_t{n_threads} * 6;
  int64_t chunk = (n_rows + target_tasks - 1) / target_tasks;
  chunk = (chunk + rows16 - 1) / rows16 * rows16;
  return std::max<int64_t>(chunk, rows16);
}

// Below this many multiply-adds a matmul runs on the calling thread: handing work to the pool
// costs a few microseconds when the workers spin and a scheduler timeslice when the machine
// is oversubscribed, more than a small matmul takes (a 2048 x 128 decode is ~10 us).
constexpr int64_t parallel_matmul_work = int64_t{1} << 18;

}  // namespace

bool matmul_supports(tensor_type t) {
  return weight_slot_of(t) >= 0;
}

size_t matmul_scratch_bytes(tensor_type t, int64_t n_cols, int64_t n_tokens) {
  return matmul_scratch_bytes(std::span<const tensor_type>(&t, 1), n_cols, n_tokens);
}

size_t matmul_scratch_bytes(std::span<const tensor_type> types, int64_t n_cols, int64_t n_tokens) {
  size_t bytes = 0;
  for (const act_format f : {act_format::q8_32, act_format::q8_k}) {
    const bool used = std::any_of(types.begin(), types.end(),
                                  [&](tensor_type t) { return act_format_of(t) == f; });
    if (used) bytes += act_row_bytes(f, n_cols) * static_cast<size_t>(n_tokens);
  }
  return bytes;
}

weight_layout preferred_layout(tensor_type t) {
  const kernel_table& k = active_kernels();
  const int slot = weight_slot_of(t);
  return slot >= 0 && k.prefers_rows16 && k.gemm_rows16[slot] ? weight_layout::rows16
                                                              : weight_layout::gguf;
}

namespace {

// Row r of a group's block from the file's block: every byte written once, never read first
// (reading fresh pages first maps the zero page, and each write then copies it).
void set_rows16_row(q4_0_rows16_block& o, int r, const block_q4_0& b) {
  // Element j of the file's block: the low nibbles of qs hold 0..15, the high ones 16..31.
  const auto quant = [&](int j) { return j < 16 ? b.qs[j] & 15 : b.qs[j - 16] >> 4; };
  o.d[r] = b.d;
  for (int k = 0; k < 4; ++k)
    for (int i = 0; i < 4; ++i)
      o.qs[k][4 * r + i] = static_cast<uint8_t>(quant(8 * k + i) | quant(8 * k + 4 + i) << 4);
}
void set_rows16_row(q8_0_rows16_block& o, int r, const block_q8_0& b) {
  o.d[r] = b.d;
  for (int k = 0; k < 8; ++k) std::memcpy(&o.qs[k][4 * r], b.qs + 4 * k, 4);
}

// One block of a group: `rows` points at the group's first row's block, each next row's block
// lies nb blocks (a row) further.
template <class GroupBlock, class FileBlock>
void fill_group(GroupBlock& o, const FileBlock* rows, int64_t nb) {
  for (int r = 0; r < rows16; ++r) set_rows16_row(o, r, rows[r * nb]);
}
// q4_k: a super-block of 16 rows, whose scale and min sets (q4_k_rows16_block) gather bits of
// every row.
void fill_group(q4_k_rows16_block& o, const block_q4_k* rows, int64_t nb) {
  std::memset(&o, 0, sizeof o);
  for (int r = 0; r < rows16; ++r) {
    const block_q4_k& blk = rows[r * nb];
    o.d[r] = blk.d;
    o.dmin[r] = blk.dmin;
    for (int j = 0; j < 8; ++j) {
      uint8_t sc, m;
      scale_min_k4(j, blk.scales, sc, m);
      const auto add_to_set = [&](int set, uint8_t v) {
        o.set_low[set][r / 2] |= static_cast<uint8_t>((v & 15) << 4 * (r % 2));
        o.set_high[set] |= static_cast<uint32_t>(v >> 4) << 2 * r;
      };
      add_to_set(j, sc);
      add_to_set(8 + j, m);
      // Sub-block j's quants: the low (even j) or high (odd j) nibbles of 32 file bytes.
      const uint8_t* q = blk.qs + j / 2 * 32;
      const int shift = 4 * (j % 2);
      for (int k = 0; k < 4; ++k)
        for (int i = 0; i < 4; ++i)
          o.qs[j][k][4 * r + i] = static_cast<uint8_t>((q[8 * k + i] >> shift & 15) |
                                                       (q[8 * k + 4 + i] >> shift & 15) << 4);
    }
  }
}

template <class FileBlock, class GroupBlock>
void repack(const void* src, int64_t n_rows, int64_t nb, void* dst) {
  const int64_t groups = n_rows / rows16;
  const auto* in = static_cast<const FileBlock*>(src);
  auto* out = static_cast<GroupBlock*>(dst);
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t b = 0; b < nb; ++b) fill_group(out[g * nb + b], in + g * rows16 * nb + b, nb);
  std::copy_n(in + groups * rows16 * nb, (n_rows - groups * rows16) * nb,
              reinterpret_cast<FileBlock*>(out + groups * nb));
}

}  // namespace

void repack_rows16(tensor_type t, const void* src, int64_t n_rows, int64_t n_cols, void* dst) {
  assert(n_cols % traits_of(t).block_size == 0 && "whole blocks");
  switch (t) {
    case tensor_type::q4_0:
      return repack<block_q4_0, q4_0_rows16_block>(src, n_rows, n_cols / 32, dst);
    case tensor_type::q8_0:
      return repack<block_q8_0, q8_0_rows16_block>(src, n_rows, n_cols / 32, dst);
    case tensor_type::q4_k:
      return repack<block_q4_k, q4_k_rows16_block>(src, n_rows, n_cols / qk_k, dst);
    default:
      assert(false && "rows16 holds q4_0, q8_0 and q4_k rows");
  }
}

void matmul(thread_pool& pool, tensor_type t, const void* w, int64_t n_rows, int64_t n_cols,
            const float* x, int64_t n_tokens, float* y, void* scratch, weight_layout layout) {
  const matmul_op op{t, w, n_rows, y, layout};
  matmul_many(pool, std::span<const matmul_op>(&op, 1), n_cols, x, n_tokens, scratch);
}

void matmul_many(thread_pool& pool, std::span<const matmul_op> ops, int64_t n_cols, const float* x,
                 int64_t n_tokens, void* scratch) {
  assert(!ops.empty() && ops.size() <= max_matmul_ops && "matmul_many: 1..max_matmul_ops weights");
  const kernel_table& k = active_kernels();
  int slots[max_matmul_ops];
  int64_t total_rows = 0;
  for (size_t i = 0; i < ops.size(); ++i) {
    slots[i] = weight_slot_of(ops[i].type);
    if (slots[i] < 0) {
      std::fprintf(stderr, "matmul: unsupported weight type %s\n",
                   std::string(to_string(ops[i].type)).c_str());
      std::abort();
    }
    assert(n_cols % traits_of(ops[i].type).block_size == 0 &&
           "n_cols must be a multiple of the block size");
    total_rows += ops[i].n_rows;
  }
  const bool parallel = pool.size() > 1 && total_rows * n_cols * n_tokens >= parallel_matmul_work;

  // Activations of each format the weights want, one after the other in scratch.
  struct act_region {
    act_format format;
    uint8_t* data;
    size_t stride;
  };
  act_region regions[3];
  int n_regions = 0;
  auto* next = static_cast<uint8_t*>(scratch);
  for (const act_format f : {act_format::q8_32, act_format::q8_k}) {
    const bool used = std::any_of(ops.begin(), ops.end(),
                                  [&](const matmul_op& op) { return act_format_of(op.type) == f; });
    if (!used) continue;
    assert(scratch && "quantized weights need matmul_scratch_bytes() of scratch");
    regions[n_regions++] = {f, next, act_row_bytes(f, n_cols)};
    next += act_row_bytes(f, n_cols) * static_cast<size_t>(n_tokens);
  }
  if (n_regions > 0) {
    const auto quantize_token = [&](int task, int) {
      const act_region& r = regions[task / n_tokens];
      const auto quantize = r.format == act_format::q8_32 ? k.quantize_q8_32 : k.quantize_q8_k;
      const int64_t tok = task % n_tokens;
      quantize(x + tok * n_cols, n_cols, tok, n_tokens, r.data, r.stride);
    };
    const int n_tasks = static_cast<int>(n_regions * n_tokens);
    if (parallel) {
      pool.run(n_tasks, quantize_token);
    } else {
      for (int task = 0; task < n_tasks; ++task) quantize_token(task, 0);
    }
  }

  // Every weight is cut into chunks of the same row count; task i is chunk i of them all.
  const int64_t chunk = parallel ? rows_per_task(total_rows, pool.size()) : total_rows;
  int first_task[max_matmul_ops + 1];
  first_task[0] = 0;
  for (size_t i = 0; i < ops.size(); ++i)
    first_task[i + 1] = first_task[i] + static_cast<int>((ops[i].n_rows + chunk - 1) / chunk);
  const int n_tasks = first_task[ops.size()];
  const auto gemm_task = [&](int task, int) {
    size_t i = 0;
    while (task >= first_task[i + 1]) ++i;
    const matmul_op& op = ops[i];
    const act_format f = act_format_of(op.type);
    gemm_args a{};
    a.w_stride = row_size(op.type, n_cols);
    a.n = n_cols;
    a.y_stride = op.n_rows;
    a.n_tok = n_tokens;
    if (f == act_format::f32) {
      a.x = reinterpret_cast<const uint8_t*>(x);
      a.x_stride = n_cols * sizeof(float);
    } else {
      int j = 0;
      while (regions[j].format != f) ++j;
      const act_region& r = regions[j];
      a.x = r.data;
      a.x_stride = r.stride;
    }
    const int64_t r0 = (task - first_task[i]) * chunk;
    a.n_rows = std::min(chunk, op.n_rows - r0);
    a.w = static_cast<const uint8_t*>(op.w) + r0 * a.w_stride;
    a.y = op.y + r0;
    if (op.layout == weight_layout::rows16) {
      assert(k.gemm_rows16[slots[i]] && "rows16 weights of a type without rows16 kernels");
      k.gemm_rows16[slots[i]](a);
    } else {
      k.gemm[slots[i]](a);
    }
  };
  if (parallel) {
    pool.run(n_tasks, gemm_task);
  } else {
    for (int task = 0; task < n_tasks; ++task) gemm_task(task, 0);
  }
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
