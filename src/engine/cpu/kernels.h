#pragma once
// Fast CPU kernels of the engine: a persistent thread pool, quantized matmul for every
// weight type, and the small SIMD helpers a forward pass needs. Everything is chosen at run
// time for the best instruction set the CPU has (scalar, AVX2+FMA+F16C, AVX-512 with VNNI);
// RBEE_CPU_ISA=scalar|avx2|avx512 forces a lower level. The plain reference these kernels are
// tested against is engine/quant.h (dot_reference).
//
// Matmul convention (row-major, weights as stored in GGUF):
//   W (n_rows, n_cols) of type t, rows packed back to back (row_size(t, n_cols) bytes each)
//   X (n_tokens, n_cols) fp32  ->  Y (n_tokens, n_rows) fp32,  Y[tok][row] = W[row] · X[tok]
// Quantized weights multiply int8 activations: X is quantized once per call into `scratch`
// (matmul_scratch_bytes of it, 4-byte aligned, 64 is best); f32/f16/bf16 weights use X as is.
// No call allocates; matmul and the helpers never throw.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <thread>
#include <type_traits>
#include <vector>

#include "engine/tensor_types.h"

namespace rbee::engine::cpu {

// ---------------------------------------------------------------- instruction sets

enum class isa { scalar = 0, avx2 = 1, avx512 = 2 };
std::string_view to_string(isa level);

// The best level this CPU supports (avx2 needs AVX2+FMA+F16C; avx512 needs F/BW/VL/DQ+VNNI).
isa detected_isa();
// The level kernels use: detected_isa(), lowered by RBEE_CPU_ISA when set.
isa active_isa();
// Overrides the active level (clamped to detected_isa()); returns the previous one. For tests
// and benchmarks: not to be called while kernels run on other threads.
isa set_active_isa(isa level);

// ---------------------------------------------------------------- thread pool

// Persistent workers; run() hands out task indices [0, n_tasks) dynamically to the calling
// thread (thread index 0) and the workers (1..size()-1) and returns when all tasks are done.
// The caller never waits for a worker that has not started: on a busy machine it simply does
// the remaining tasks itself. Workers spin briefly for the next run, then sleep. run() does
// not allocate; n_tasks must be below 2^20; one caller at a time, never from inside a task.
class thread_pool {
 public:
  explicit thread_pool(int n_threads);
  ~thread_pool();
  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;

  int size() const { return n_threads_; }

  // fn(int task, int thread) is called once per task; calls must not throw.
  template <class F>
  void run(int n_tasks, F&& fn) {
    using fn_t = std::remove_reference_t<F>;
    run_impl(n_tasks, const_cast<void*>(static_cast<const void*>(&fn)),
             [](void* ctx, int task, int thread) { (*static_cast<fn_t*>(ctx))(task, thread); });
  }

 private:
  using call_t = void (*)(void*, int, int);
  void run_impl(int n_tasks, void* ctx, call_t call);
  void worker_main(int thread);
  // Claims and runs tasks of generation `gen` until none are left.
  void work(uint32_t gen, int thread);

  int n_threads_;
  std::vector<std::thread> workers_;
  void* ctx_ = nullptr;
  call_t call_ = nullptr;
  // generation (bits 40..63) | n_tasks (bits 20..39) | next task (bits 0..19): a worker that
  // wakes late sees another generation and claims nothing.
  alignas(64) std::atomic<uint64_t> job_{0};
  alignas(64) std::atomic<int> done_{0};
  alignas(64) std::atomic<uint32_t> generation_{0};
  std::atomic<bool> stop_{false};
};

// ---------------------------------------------------------------- matmul

// How a weight's rows lie in memory for matmul.
//  gguf:   row after row, as in the file.
//  rows16: repacked at load (repack_rows16) for kernels that give each row of a group of 16
//          a vector lane: block by block, the group's 16 scales, then its quants interleaved
//          (dispatch.h: q4_0_rows16_block, q8_0_rows16_block, q4_k_rows16_block). Rows past
//          the last whole group stay as in the file, after the groups; the weight keeps its
//          size. For q4_0, q8_0 and q4_k.
enum class weight_layout { gguf, rows16 };
// The layout matmul reads fastest at the active level for weights of type t.
weight_layout preferred_layout(tensor_type t);
// The n_rows rows of type t at src (the file's layout) into dst in the rows16 layout.
void repack_rows16(tensor_type t, const void* src, int64_t n_rows, int64_t n_cols, void* dst);

// Bytes of scratch matmul needs for this weight type and activation shape (0 for f32/f16/bf16).
size_t matmul_scratch_bytes(tensor_type t, int64_t n_cols, int64_t n_tokens);
// Whether matmul supports weights of type t (every type but q8_1 and q8_k, which are
// activation formats).
bool matmul_supports(tensor_type t);
// Y (n_tokens, n_rows) = X (n_tokens, n_cols) · W^T; see the top of this file.
// n_cols must be a multiple of t's block size.
void matmul(thread_pool& pool, tensor_type t, const void* w, int64_t n_rows, int64_t n_cols,
            const float* x, int64_t n_tokens, float* y, void* scratch,
            weight_layout layout = weight_layout::gguf);

// One weight of matmul_many: y (n_tokens, n_rows) = X · W^T.
struct matmul_op {
  tensor_type type;
  const void* w;
  int64_t n_rows;
  float* y;
  weight_layout layout = weight_layout::gguf;
};
// At most this many weights share one matmul_many call.
inline constexpr int max_matmul_ops = 4;
// Scratch for matmul_many over weights of these types (each activation format once).
size_t matmul_scratch_bytes(std::span<const tensor_type> types, int64_t n_cols, int64_t n_tokens);
// Several weights that read the same X (Q/K/V, gate/up): X is quantized once per activation
// format and all rows are shared out in a single pool run, so there is one hand-over between
// threads instead of one per weight. Work too small to pay for a hand-over (tiny models,
// short rows) runs on the calling thread.
void matmul_many(thread_pool& pool, std::span<const matmul_op> ops, int64_t n_cols, const float* x,
                 int64_t n_tokens, void* scratch);

// Row of n elements of type t to fp32 (embedding lookup).
void dequantize_row(tensor_type t, const void* src, float* dst, int64_t n);

// ---------------------------------------------------------------- forward-pass helpers

// out = x / sqrt(mean(x^2) + eps) * weight   (out may alias x)
void rmsnorm(const float* x, const float* weight, float* out, int64_t n, float eps);
// In place: x = exp(x - max) / sum
void softmax(float* x, int64_t n);
// out = silu(gate) * up   (out may alias gate or up)
void silu_mul(const float* gate, const float* up, float* out, int64_t n);
// Conversions for the KV cache.
void f32_to_f16(const float* x, fp16_t* y, int64_t n);
void f16_to_f32(const fp16_t* x, float* y, int64_t n);

// Rotary embedding in place on n_heads heads of head_dim values (x is n_heads*head_dim) at
// position pos. neox = false rotates adjacent pairs (2i, 2i+1) (llama); neox = true rotates
// (i, i + head_dim/2) (qwen2, "NEOX" in ggml). theta_i = pos * freq_base^(-2i/head_dim).
void rope(float* x, int n_heads, int head_dim, int pos, float freq_base, bool neox);

}  // namespace rbee::engine::cpu
