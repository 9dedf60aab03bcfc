// Batched products of the integer weight types on tensor cores (mma.sync, compute capability
// 8.0 and up), reading the packed weights: the steps of many sequences decoding together
// (ops.h: max_pipelined_tokens says up to which size). A pipeline per block: each step copies the
// raw blocks of 256 columns of its weight rows and its tokens' fp16 activations into shared memory
// (cp.async, `stages` steps in flight), decodes the weights once with decode_chunk (the decode
// route's decoder) to fp16 rows in shared memory, and multiplies them with m16n8k16 fp16 products
// accumulating in fp32 (ldmatrix fragments). No whole-matrix dequantization: the weights are read
// in their packed size and decoded once per block for all of its tokens. (Integer products on q8
// activations were tried: rescaling every 32-column block's int32 result in fp32 cost more than the
// products and made them slower than dequantizing for cuBLAS.)
#include <algorithm>
#include <cassert>

#include "engine/cuda/blocks.cuh"
#include "engine/cuda/check.h"
#include "engine/cuda/launch.cuh"
#include "engine/cuda/tensor_core.cuh"

namespace rbee::engine::cuda {

namespace {

constexpr int step_chunks = 8;  // 256 columns: one K-quant super-block, eight 32-blocks
constexpr int step_cols = 32 * step_chunks;
// Shared fp16 rows of a step: 528 bytes, so the 8 rows ldmatrix reads at once start 4 banks
// apart.
constexpr int h_pitch = step_cols + 8;

// A step's raw bytes of one weight row in shared memory, laid out as a row of 256 columns
// (decode_chunk reads it with n_blocks = 8): the blocks as they are or, for the repacked
// types (ops.h), each field's part of them. Piece k of a step: its length, its place in that
// copy, and its offset in the row of n_blocks chunks at step s.
template <tensor_type T>
constexpr int raw_bytes = (block_traits<T>::bytes * step_chunks) / block_traits<T>::chunks;
template <tensor_type T>
constexpr int raw_pitch = (raw_bytes<T> + 15) / 16 * 16;
template <tensor_type T>
constexpr int pieces = T == tensor_type::q6_k                             ? 4
                       : T == tensor_type::q4_0 || T == tensor_type::q8_0 ? 2
                                                                          : 1;
template <tensor_type T>
__host__ __device__ constexpr int piece_bytes(int k) {
  if constexpr (T == tensor_type::q4_0 || T == tensor_type::q8_0) {
    constexpr int quants = T == tensor_type::q4_0 ? 16 : 32;  // per block
    return k == 0 ? quants * step_chunks : 2 * step_chunks;
  } else if constexpr (T == tensor_type::q6_k) {
    return k == 0 ? 128 : k == 1 ? 64 : k == 2 ? 16 : 2;  // ql, qh, scales, d
  } else {
    return raw_bytes<T>;
  }
}
template <tensor_type T>
__host__ __device__ constexpr int piece_place(int k) {
  int at = 0;
  for (int i = 0; i < k; ++i) at += piece_bytes<T>(i);
  return at;
}
template <tensor_type T>
__device__ __forceinline__ size_t piece_offset(int k, int s, int n_blocks) {
  const auto sz = static_cast<size_t>(s), nb = static_cast<size_t>(n_blocks);
  if constexpr (T == tensor_type::q4_0 || T == tensor_type::q8_0) {
    constexpr size_t quants = T == tensor_type::q4_0 ? 16 : 32;
    return k == 0 ? quants * step_chunks * sz : quants * nb + 2 * step_chunks * sz;
  } else if constexpr (T == tensor_type::q6_k) {
    const size_t nsb = nb / 8;
    return k == 0   ? 128 * sz
           : k == 1 ? 128 * nsb + 64 * sz
           : k == 2 ? 192 * nsb + 16 * sz
                    : 208 * nsb + 2 * sz;
  } else {
    return static_cast<size_t>(raw_bytes<T>) * sz;
  }
}

// A block computes bm weight rows x bn tokens with warps_m x warps_n warps, each a tile of
// frags_m 16-row by frags_n 8-token fragments; `stages` steps of copies are in flight.
template <int BM, int BN, int WM, int WN, int STAGES, int MIN_BLOCKS>
struct pipeline_tile {
  static constexpr int bm = BM, bn = BN, warps_m = WM, stages = STAGES, min_blocks = MIN_BLOCKS;
  static constexpr int threads = 32 * WM * WN;
  static constexpr int frags_m = BM / WM / 16, frags_n = BN / WN / 8;
  static_assert(BM % (WM * 16) == 0 && BN % (WN * 16) == 0, "B fragments load in pairs");
};
// Tokens per tile: 32 (two blocks per multiprocessor), or 64 where the grid still fills the
// device (each weight tile decoded once for twice the tokens).
using tile_64x32 = pipeline_tile<64, 32, 4, 2, 3, 2>;
using tile_64x64 = pipeline_tile<64, 64, 4, 2, 3, 1>;

// Shared memory of a block: per stage the raw weights and the activations, then the decoded
// weights.
template <tensor_type T, class S>
struct pipeline_shared {
  static constexpr size_t raw = static_cast<size_t>(S::stages) * S::bm * raw_pitch<T>;
  static constexpr size_t act = static_cast<size_t>(S::stages) * S::bn * h_pitch * 2;
  static constexpr size_t w_h = static_cast<size_t>(S::bm) * h_pitch * 2;
  static constexpr size_t bytes = raw + act + w_h;
};

// cp.async of 16 or 4 bytes; with `fill` false the destination gets zeros and src is not read.
__device__ __forceinline__ void copy16(void* dst, const void* src, bool fill) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared_address(dst)),
               "l"(src), "r"(fill ? 16 : 0));
}
__device__ __forceinline__ void copy4(void* dst, const void* src, bool fill) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(shared_address(dst)),
               "l"(src), "r"(fill ? 4 : 0));
}
__device__ __forceinline__ void commit_copies() {
  asm volatile("cp.async.commit_group;\n" ::);
}
// Waits until at most N of this thread's committed groups are still in flight.
template <int N>
__device__ __forceinline__ void wait_copies() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// len (<= 16, even) bytes: one 16-byte copy, 4-byte copies, or (the 2-byte aligned pieces of
// q2_k, q3_k and q6_k rows) plain loads.
__device__ __forceinline__ void copy_bytes(uint8_t* dst, const uint8_t* src, int len, bool fill) {
  const auto a = reinterpret_cast<uintptr_t>(src) | static_cast<uintptr_t>(len);
  if ((a & 15) == 0) {
    copy16(dst, src, fill);
  } else if ((a & 3) == 0) {
    for (int k = 0; k < len; k += 4) copy4(dst + k, src + k, fill);
  } else {
    for (int k = 0; k < len; k += 2)
      *reinterpret_cast<uint16_t*>(dst + k) = fill ? load_u16(src + k) : uint16_t{0};
  }
}

// Step s of the block's weight rows into `dst` (bm rows of raw_pitch); rows past the matrix
// become zeros, whose blocks decode to zero scales.
template <tensor_type T, class S>
__device__ __forceinline__ void copy_weight_step(const uint8_t* w, size_t row_bytes, int rows,
                                                 int row0, int n_blocks, int s, uint8_t* dst) {
#pragma unroll
  for (int k = 0; k < pieces<T>; ++k) {
    const int len = piece_bytes<T>(k), segments = (len + 15) / 16;
    const size_t offset = piece_offset<T>(k, s, n_blocks);
    for (int i = threadIdx.x; i < S::bm * segments; i += S::threads) {
      const int r = i / segments, at = 16 * (i % segments);
      const bool in = row0 + r < rows;
      const uint8_t* src = w + static_cast<size_t>(in ? row0 + r : 0) * row_bytes + offset + at;
      copy_bytes(dst + r * raw_pitch<T> + piece_place<T>(k) + at, src, std::min(16, len - at), in);
    }
  }
}

// Step s of the block's tokens' activations: 256 fp16 values per token; tokens past the
// batch become zeros.
template <class S>
__device__ __forceinline__ void copy_activation_step(const __half* x, int n_tok, int tok0, int cols,
                                                     int s, __half* dst) {
  constexpr int per_token = step_cols * 2 / 16;
  for (int i = threadIdx.x; i < S::bn * per_token; i += S::threads) {
    const int t = i / per_token, j = i % per_token;
    const bool in = tok0 + t < n_tok;
    const __half* src = x + static_cast<size_t>(in ? tok0 + t : 0) * cols + step_cols * s + 8 * j;
    copy16(dst + t * h_pitch + 8 * j, src, in);
  }
}

// The step's raw weights -> fp16 rows (w_h), one chunk per thread at a time.
template <tensor_type T, class S>
__device__ __forceinline__ void decode_step(const uint8_t* raw, __half* w_h) {
  for (int i = threadIdx.x; i < S::bm * step_chunks; i += S::threads) {
    const int r = i / step_chunks, c = i % step_chunks;
    __align__(16) __half2 h[16];
    chunk_to_half2(decode_chunk<T>(raw + r * raw_pitch<T>, c, step_chunks), h);
    auto* dst = reinterpret_cast<uint4*>(w_h + r * h_pitch + 32 * c);
    const auto* src = reinterpret_cast<const uint4*>(h);
#pragma unroll
    for (int k = 0; k < 4; ++k) dst[k] = src[k];
  }
}

// One step's products: each warp's frags_m x frags_n fragments over the step's 256 columns,
// 16 at a time. ldmatrix gives A's four 8x8 pieces and two 8-token B fragments at once
// (tensor_core.cuh: the fragment layout; B's columns are tokens).
template <class S>
__device__ __forceinline__ void multiply_step(const __half* w_h, const __half* act, int wm, int wn,
                                              float (&acc)[S::frags_m][S::frags_n][4]) {
  const int lane = threadIdx.x % 32;
  const int row_base = wm * S::frags_m * 16, tok_base = wn * S::frags_n * 8;
#pragma unroll 4
  for (int k = 0; k < step_cols; k += 16) {
    uint32_t a[S::frags_m][4], b[S::frags_n][2];
#pragma unroll
    for (int i = 0; i < S::frags_m; ++i) {
      const int r = row_base + 16 * i + lane % 8 + 8 * (lane / 8 % 2);
      load_matrices(a[i], w_h + r * h_pitch + k + 8 * (lane / 16));
    }
#pragma unroll
    for (int j = 0; j < S::frags_n; j += 2) {
      uint32_t m[4];
      const int tok = tok_base + 8 * j + lane % 8 + 8 * (lane / 16);
      load_matrices(m, act + tok * h_pitch + k + 8 * (lane / 8 % 2));
      b[j][0] = m[0], b[j][1] = m[1], b[j + 1][0] = m[2], b[j + 1][1] = m[3];
    }
#pragma unroll
    for (int i = 0; i < S::frags_m; ++i)
#pragma unroll
      for (int j = 0; j < S::frags_n; ++j) mma_16x8x16(acc[i][j], a[i], b[j][0], b[j][1]);
  }
}

// y (n_tok, rows) = x (n_tok, cols) @ W^T for the token tile blockIdx.x * bn.., the row tile
// blockIdx.y * bm.. (consecutive blocks share a row tile: its weights are read from memory
// once and from L2 by the others) and the column part blockIdx.z: steps z * part_steps..
// With several parts, part z's sums go to `parts` (its own n_tok x rows) for sum_parts.
template <tensor_type T, class S>
__global__ void __launch_bounds__(S::threads, S::min_blocks)
    gemm_pipelined_kernel(const uint8_t* __restrict__ w, size_t row_bytes, int rows, int cols,
                          const __half* __restrict__ x, int n_tok, int part_steps,
                          float* __restrict__ parts, float* __restrict__ y) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  using M = pipeline_shared<T, S>;
  extern __shared__ __align__(16) unsigned char shared[];
  uint8_t* raw = shared;
  auto* act = reinterpret_cast<__half*>(shared + M::raw);
  auto* w_h = reinterpret_cast<__half*>(shared + M::raw + M::act);

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int wm = warp % S::warps_m, wn = warp / S::warps_m;
  const int tok0 = blockIdx.x * S::bn, row0 = blockIdx.y * S::bm;
  const int n_blocks = cols / 32;
  const int first = blockIdx.z * part_steps;
  const int steps = min(cols / step_cols - first, part_steps);  // this part's
  const auto issue = [&](int s) {  // s counts from the part's first step
    const int stage = s % S::stages;
    copy_weight_step<T, S>(w, row_bytes, rows, row0, n_blocks, first + s,
                           raw + stage * S::bm * raw_pitch<T>);
    copy_activation_step<S>(x, n_tok, tok0, cols, first + s, act + stage * S::bn * h_pitch);
  };

  float acc[S::frags_m][S::frags_n][4] = {};
#pragma unroll
  for (int s = 0; s < S::stages - 1; ++s) {
    if (s < steps) issue(s);
    commit_copies();
  }
  for (int s = 0; s < steps; ++s) {
    wait_copies<S::stages - 2>();  // this thread's copies of step s have landed
    __syncthreads();               // everyone's; and the previous step's products are done with w_h
    if (s + S::stages - 1 < steps) issue(s + S::stages - 1);
    commit_copies();
    const int stage = s % S::stages;
    decode_step<T, S>(raw + stage * S::bm * raw_pitch<T>, w_h);
    __syncthreads();
    multiply_step<S>(w_h, act + stage * S::bn * h_pitch, wm, wn, acc);
  }

  float* out = gridDim.z == 1 ? y : parts + static_cast<size_t>(blockIdx.z) * n_tok * rows;
  const int g = lane / 4, t = lane % 4;
#pragma unroll
  for (int i = 0; i < S::frags_m; ++i)
#pragma unroll
    for (int j = 0; j < S::frags_n; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = row0 + wm * S::frags_m * 16 + 16 * i + g + 8 * (e / 2);
        const int tok = tok0 + wn * S::frags_n * 8 + 8 * j + 2 * t + e % 2;
        if (r < rows && tok < n_tok) out[static_cast<size_t>(tok) * rows + r] = acc[i][j][e];
      }
#else
  __trap();  // gemm_pipelined_supported() keeps older devices on the other routes
#endif
}

// y (n,) = the sum of the n_parts arrays of n floats at parts, in part order.
__global__ void sum_parts_kernel(const float* __restrict__ parts, int n_parts, int64_t n,
                                 float* __restrict__ y) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  float sum = parts[i];
  for (int p = 1; p < n_parts; ++p) sum += parts[static_cast<int64_t>(p) * n + i];
  y[i] = sum;
}

// How a product is cut: its tile shape, and into how many column parts (each part_steps
// steps). With several parts, parts times tiles stays within max_part_blocks, which bounds
// their sums' scratch (gemm_pipelined_parts_bytes).
struct pipeline_plan {
  gemm_tile shape;
  int parts, part_steps;
};
constexpr int max_parts = 8;
int64_t max_part_blocks() {  // two waves of two blocks per multiprocessor
  return 4 * static_cast<int64_t>(multiprocessor_count());
}

template <class S>
int64_t tiles_of(int rows, int n_tok) {
  return static_cast<int64_t>((rows + S::bm - 1) / S::bm) * ((n_tok + S::bn - 1) / S::bn);
}

// The column parts that finish soonest: a grid runs in waves of `slots` blocks, each block as
// long as its steps, so a last wave left part empty wastes the rest of it. Cutting the columns
// into more parts makes shorter blocks that fill the waves better, at the cost of summing the
// parts (counted as a step each). Fewest parts among equals.
int parts_for(int64_t tiles, int steps, int64_t slots) {
  int best = 1;
  int64_t best_cost = 0;
  for (int parts = 1;
       parts <= std::min(steps, max_parts) && (parts == 1 || tiles * parts <= max_part_blocks());
       ++parts) {
    const int64_t waves = (tiles * parts + slots - 1) / slots;
    const int64_t cost = waves * ((steps + parts - 1) / parts) + (parts > 1 ? parts : 0);
    if (parts == 1 || cost < best_cost) best = parts, best_cost = cost;
  }
  return best;
}

// The tile shape `shape`, or with gemm_tile::chosen the biggest whose grid still gives most
// multiprocessors a block without leaving more than half a token tile empty.
pipeline_plan plan_for(int rows, int cols, int n_tok, gemm_tile shape) {
  const int sms = multiprocessor_count();
  if (shape == gemm_tile::chosen) {
    const int64_t enough = sms * 3 / 4;
    const auto fills = [&](int64_t tiles, int bn) { return n_tok > bn / 2 && tiles >= enough; };
    shape = fills(tiles_of<tile_64x64>(rows, n_tok), tile_64x64::bn) ? gemm_tile::rows64_tokens64
                                                                     : gemm_tile::rows64_tokens32;
  }
  const bool wide = shape == gemm_tile::rows64_tokens64;
  const int64_t tiles =
      wide ? tiles_of<tile_64x64>(rows, n_tok) : tiles_of<tile_64x32>(rows, n_tok);
  const int64_t slots =
      static_cast<int64_t>(sms) * (wide ? tile_64x64::min_blocks : tile_64x32::min_blocks);
  const int steps = cols / step_cols;
  const int parts = parts_for(tiles, steps, slots);
  const int part_steps = (steps + parts - 1) / parts;
  return {shape, (steps + part_steps - 1) / part_steps, part_steps};  // no part empty
}

template <tensor_type T, class S>
void launch(const uint8_t* w, size_t row_bytes, int rows, int cols, const __half* x, int n_tok,
            const pipeline_plan& plan, float* parts, float* y, cudaStream_t stream) {
  constexpr size_t bytes = pipeline_shared<T, S>::bytes;
  RBEE_CUDA_CHECK(cudaFuncSetAttribute(gemm_pipelined_kernel<T, S>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
  const dim3 grid(static_cast<unsigned>((n_tok + S::bn - 1) / S::bn),
                  static_cast<unsigned>((rows + S::bm - 1) / S::bm),
                  static_cast<unsigned>(plan.parts));
  gemm_pipelined_kernel<T, S><<<grid, S::threads, bytes, stream>>>(
      w, row_bytes, rows, cols, x, n_tok, plan.part_steps, parts, y);
  RBEE_CUDA_CHECK_LAUNCH();
  if (plan.parts > 1) {
    const int64_t n = static_cast<int64_t>(n_tok) * rows;
    sum_parts_kernel<<<static_cast<unsigned>((n + 255) / 256), 256, 0, stream>>>(parts, plan.parts,
                                                                                 n, y);
    RBEE_CUDA_CHECK_LAUNCH();
  }
}

template <tensor_type T>
void launch_for_batch(const uint8_t* w, size_t row_bytes, int rows, int cols, const __half* x,
                      int n_tok, gemm_tile shape, float* parts, float* y, cudaStream_t stream) {
  const pipeline_plan plan = plan_for(rows, cols, n_tok, shape);
  switch (plan.shape) {
    case gemm_tile::rows64_tokens32:
      return launch<T, tile_64x32>(w, row_bytes, rows, cols, x, n_tok, plan, parts, y, stream);
    case gemm_tile::rows64_tokens64:
      return launch<T, tile_64x64>(w, row_bytes, rows, cols, x, n_tok, plan, parts, y, stream);
    case gemm_tile::chosen:
      break;
  }
}

}  // namespace

bool gemm_pipelined_supported(tensor_type type, int64_t cols) {
  if (!uses_q8(type) || cols % step_cols != 0) return false;
  int device = 0, major = 0;
  RBEE_CUDA_CHECK(cudaGetDevice(&device));
  RBEE_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  return major >= 8;
}

size_t gemm_pipelined_parts_bytes() {
  // Parts x tiles <= max_part_blocks, each of at most 64 x 64 outputs.
  return static_cast<size_t>(max_part_blocks()) * tile_64x64::bm * tile_64x64::bn * sizeof(float);
}

void gemm_pipelined(tensor_type type, const void* w, int64_t rows, int64_t cols,
                    const __half* x_f16, int n_tok, float* y, float* parts, cudaStream_t stream,
                    gemm_tile shape) {
  assert(uses_q8(type) && cols % step_cols == 0 && n_tok >= 1 &&
         "gemm_pipelined: see gemm_pipelined_supported");
  const auto* wb = static_cast<const uint8_t*>(w);
  const size_t rb = row_size(type, cols);
  const int nr = static_cast<int>(rows), nc = static_cast<int>(cols);
  const bool known = with_integer_type(type, [&](auto t) {
    launch_for_batch<decltype(t)::value>(wb, rb, nr, nc, x_f16, n_tok, shape, parts, y, stream);
  });
  assert(known && "gemm_pipelined: an integer weight type");
  (void)known;
}

}  // namespace rbee::engine::cuda
