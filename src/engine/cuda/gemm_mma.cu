// Prefill products on tensor cores for batches of 9..max_mma_tokens tokens, reading the packed
// weights directly: each block decodes a tile of weight rows (decode_chunk, the same per-type
// decoder as the matrix x vector route) to fp16 in shared memory, next to a tile of the fp16
// activations, and multiplies them with WMMA 16x16x16 fragments accumulating in fp32. No
// whole-matrix dequantization: the weights are read once per token tile, in their packed size.
#include <mma.h>

#include <cassert>

#include "engine/cuda/blocks.cuh"
#include "engine/cuda/check.h"
#include "engine/cuda/launch.cuh"

namespace rbee::engine::cuda {

namespace {

// A block computes a tile of bm weight rows x bn tokens, stepping bk columns at a time. Its
// warps form a warps_m x warps_n grid over the tile; with warps_k > 1 each also takes every
// warps_k-th 16-column slice of a step (small tiles: more warps share the same outputs) and
// the partial sums are added at the end. Each thread decodes one 32-column chunk per step.
template <int BM, int BN, int BK, int WM, int WN, int WK, int MIN_BLOCKS>
struct tile_shape {
  static constexpr int bm = BM, bn = BN, bk = BK;
  static constexpr int min_blocks = MIN_BLOCKS;  // per multiprocessor: caps the registers
  static constexpr int warps_m = WM, warps_k = WK;
  static constexpr int warps_mn = WM * WN, warps = warps_mn * WK, threads = 32 * warps;
  static constexpr int frags_m = BM / WM / 16, frags_n = BN / WN / 16;
  // Shared rows of bk halves plus 8: consecutive rows start 4 banks apart (no conflicts when
  // a fragment's 16 rows are read) and fragments stay 32-byte aligned, as WMMA requires.
  static constexpr int ld = BK + 8;
  static constexpr int chunks_per_row = BK / 32;
  static constexpr int x_vectors = BN * BK / 8 / threads;  // 8 halves per thread and step
  static constexpr int tile_bytes = (BM + BN) * ld * 2;
  // After the main loop: the partial sums of warps with wk > 0, then a 16x16 staging tile per
  // warp for the bounds-checked stores.
  static constexpr int partial_floats = (WK - 1) * warps_mn * frags_m * frags_n * 256;
  static constexpr int epilogue_bytes = (partial_floats + warps * 256) * 4;
  static constexpr int shared_bytes = tile_bytes > epilogue_bytes ? tile_bytes : epilogue_bytes;
  static_assert(BM * BK / 32 == threads, "one weight chunk per thread and step");
  static_assert(BN * BK / 8 % threads == 0, "whole activation vectors per thread");
  static_assert(BM % (WM * 16) == 0 && BN % (WN * 16) == 0 && (BK / 16) % WK == 0);
};

// Per batch size (tokens per block tile): small batches are bound by reading the weights, so
// their blocks cover few rows (more blocks in flight); big ones by the multiplies, so their
// tiles are bigger (more products per decoded weight). launch_for_batch chooses.
using tile_16 = tile_shape<32, 16, 128, 2, 1, 2, 4>;
using tile_32 = tile_shape<64, 32, 64, 2, 2, 1, 4>;
using tile_64 = tile_shape<64, 64, 64, 2, 2, 1, 3>;
using tile_128 = tile_shape<128, 128, 64, 2, 4, 1, 1>;

// 32 columns of a weight row (chunk u of n_chunks) as fp16 pairs; zeros past the row's end.
template <tensor_type T>
__device__ __forceinline__ void load_weight_chunk(const uint8_t* row, int u, int n_chunks, int cols,
                                                  __half2 (&h)[16]) {
  if (u >= n_chunks) {
#pragma unroll
    for (int j = 0; j < 16; ++j) h[j] = __float2half2_rn(0.0f);
    return;
  }
  if constexpr (T == tensor_type::bf16) {
    // Rows of any length: element by element at the end of a row that is not whole chunks.
    const auto* v = reinterpret_cast<const uint16_t*>(row) + 32 * static_cast<size_t>(u);
    const int left = cols - 32 * u;
#pragma unroll
    for (int j = 0; j < 16; ++j) {
      const float a = 2 * j < left ? bf2f(v[2 * j]) : 0.0f;
      const float b = 2 * j + 1 < left ? bf2f(v[2 * j + 1]) : 0.0f;
      h[j] = __floats2half2_rn(a, b);
    }
  } else {
    chunk_to_half2(decode_chunk<T>(row, u, n_chunks), h);
  }
}

// 8 fp16 activations of token t from column k (zeros past the batch or the row).
__device__ __forceinline__ uint4 load_x8(const __half* x, int n_tok, int cols, int t, int k,
                                         bool vector_rows) {
  if (t >= n_tok || k >= cols) return make_uint4(0, 0, 0, 0);
  const __half* p = x + static_cast<size_t>(t) * cols + k;
  if (vector_rows) return *reinterpret_cast<const uint4*>(p);
  __align__(16) __half v[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) v[i] = k + i < cols ? p[i] : __float2half(0.0f);
  return *reinterpret_cast<const uint4*>(v);
}

// y (n_tok, rows) = x (n_tok, cols) @ W^T for the tile of rows blockIdx.x * bm.. and tokens
// blockIdx.y * bn... The next step's weight chunk and activations are loaded into registers
// while the tensor cores work on the current step in shared memory.
template <tensor_type T, class S>
__global__ void __launch_bounds__(S::threads, S::min_blocks)
    gemm_mma_kernel(const uint8_t* __restrict__ w, size_t row_bytes, int rows, int cols,
                    const __half* __restrict__ x, int n_tok, float* __restrict__ y) {
  using namespace nvcuda;
  __shared__ __align__(128) unsigned char shared[S::shared_bytes];
  __half* w_tile = reinterpret_cast<__half*>(shared);  // (bm, ld): rows of W
  __half* x_tile = w_tile + S::bm * S::ld;             // (bn, ld): tokens of x

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int row0 = blockIdx.x * S::bm, tok0 = blockIdx.y * S::bn;
  const int n_chunks = (cols + 31) / 32;
  const int steps = (cols + S::bk - 1) / S::bk;
  const bool vector_rows = cols % 8 == 0;

  // This thread's weight chunk in every step: row w_row of the tile, chunk w_col of the step.
  const int w_row = tid / S::chunks_per_row, w_col = tid % S::chunks_per_row;
  const bool row_in = row0 + w_row < rows;
  const uint8_t* row = w + static_cast<size_t>(row_in ? row0 + w_row : 0) * row_bytes;
  const int wk = warp % S::warps_k, wm = warp / S::warps_k % S::warps_m,
            wn = warp / S::warps_k / S::warps_m;

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[S::frags_m][S::frags_n];
#pragma unroll
  for (int i = 0; i < S::frags_m; ++i)
#pragma unroll
    for (int j = 0; j < S::frags_n; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

  __align__(16) __half2 w_next[16];
  uint4 x_next[S::x_vectors];
  auto load_step = [&](int s) {
    const int u = row_in ? s * S::chunks_per_row + w_col : n_chunks;  // out of range: zeros
    load_weight_chunk<T>(row, u, n_chunks, cols, w_next);
#pragma unroll
    for (int i = 0; i < S::x_vectors; ++i) {
      const int v = tid + i * S::threads, t = v / (S::bk / 8), k = v % (S::bk / 8) * 8;
      x_next[i] = load_x8(x, n_tok, cols, tok0 + t, s * S::bk + k, vector_rows);
    }
  };
  load_step(0);
  for (int s = 0; s < steps; ++s) {
    uint4* w_dst = reinterpret_cast<uint4*>(w_tile + w_row * S::ld + w_col * 32);
    const uint4* w_src = reinterpret_cast<const uint4*>(w_next);
#pragma unroll
    for (int i = 0; i < 4; ++i) w_dst[i] = w_src[i];
#pragma unroll
    for (int i = 0; i < S::x_vectors; ++i) {
      const int v = tid + i * S::threads, t = v / (S::bk / 8), k = v % (S::bk / 8) * 8;
      *reinterpret_cast<uint4*>(x_tile + t * S::ld + k) = x_next[i];
    }
    __syncthreads();
    if (s + 1 < steps) load_step(s + 1);
#pragma unroll
    for (int q = 0; q < S::bk / 16 / S::warps_k; ++q) {
      const int kk = (q * S::warps_k + wk) * 16;
      wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a[S::frags_m];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> b[S::frags_n];
#pragma unroll
      for (int i = 0; i < S::frags_m; ++i)
        wmma::load_matrix_sync(a[i], w_tile + (wm * S::frags_m + i) * 16 * S::ld + kk, S::ld);
#pragma unroll
      for (int j = 0; j < S::frags_n; ++j)
        wmma::load_matrix_sync(b[j], x_tile + (wn * S::frags_n + j) * 16 * S::ld + kk, S::ld);
#pragma unroll
      for (int i = 0; i < S::frags_m; ++i)
#pragma unroll
        for (int j = 0; j < S::frags_n; ++j) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }

  // Fragments of the same shape share one element layout: partial sums add element-wise.
  auto* partial = reinterpret_cast<float*>(shared);
  if constexpr (S::warps_k > 1) {
    constexpr int frags = S::frags_m * S::frags_n;
    const int owner = wm + S::warps_m * wn;  // the (wm, wn) slot of this warp's outputs
    if (wk > 0)
#pragma unroll
      for (int i = 0; i < S::frags_m; ++i)
#pragma unroll
        for (int j = 0; j < S::frags_n; ++j) {
          const int slot = ((wk - 1) * S::warps_mn + owner) * frags + i * S::frags_n + j;
          wmma::store_matrix_sync(partial + slot * 256, acc[i][j], 16, wmma::mem_col_major);
        }
    __syncthreads();
    if (wk > 0) return;
#pragma unroll
    for (int i = 0; i < S::frags_m; ++i)
#pragma unroll
      for (int j = 0; j < S::frags_n; ++j)
        for (int p = 1; p < S::warps_k; ++p) {
          const int slot = ((p - 1) * S::warps_mn + owner) * frags + i * S::frags_n + j;
          wmma::fragment<wmma::accumulator, 16, 16, 16, float> part;
          wmma::load_matrix_sync(part, partial + slot * 256, 16, wmma::mem_col_major);
#pragma unroll
          for (int e = 0; e < part.num_elements; ++e) acc[i][j].x[e] += part.x[e];
        }
  }
  // Each fragment through this warp's staging tile, column-major (a token's 16 rows are
  // contiguous, as in y), then stored where it lies inside the matrix.
  float* stage = partial + S::partial_floats + warp * 256;
#pragma unroll
  for (int i = 0; i < S::frags_m; ++i)
#pragma unroll
    for (int j = 0; j < S::frags_n; ++j) {
      wmma::store_matrix_sync(stage, acc[i][j], 16, wmma::mem_col_major);
      __syncwarp();
      const int r0 = row0 + (wm * S::frags_m + i) * 16, t0 = tok0 + (wn * S::frags_n + j) * 16;
#pragma unroll
      for (int e = lane; e < 256; e += 32) {
        const int r = r0 + e % 16, t = t0 + e / 16;
        if (r < rows && t < n_tok) y[static_cast<size_t>(t) * rows + r] = stage[e];
      }
      __syncwarp();
    }
}

template <tensor_type T, class S>
void launch(const uint8_t* w, size_t row_bytes, int rows, int cols, const __half* x, int n_tok,
            float* y, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((rows + S::bm - 1) / S::bm),
                  static_cast<unsigned>((n_tok + S::bn - 1) / S::bn));
  gemm_mma_kernel<T, S><<<grid, S::threads, 0, stream>>>(w, row_bytes, rows, cols, x, n_tok, y);
  RBEE_CUDA_CHECK_LAUNCH();
}

// The tile of tokens_per_tile tokens (16, 32, 64 or 128), or with 0 the biggest whose grid
// still keeps the device busy (at least 3/4 of the multiprocessors get a block: a 4096-row
// matrix has only 32 row tiles of 128) without leaving more than half a token tile empty;
// else the smallest, which has the most blocks.
template <tensor_type T>
void launch_for_batch(const uint8_t* w, size_t row_bytes, int rows, int cols, const __half* x,
                      int n_tok, float* y, int tokens_per_tile, cudaStream_t stream) {
  if (tokens_per_tile == 0) {
    const int64_t enough = multiprocessor_count() * 3 / 4;
    const auto fills = [&](int bm, int bn) {
      const int64_t tiles = static_cast<int64_t>((rows + bm - 1) / bm) * ((n_tok + bn - 1) / bn);
      return n_tok > bn / 2 && tiles >= enough;
    };
    tokens_per_tile = fills(tile_128::bm, tile_128::bn) ? 128
                      : fills(tile_64::bm, tile_64::bn) ? 64
                      : fills(tile_32::bm, tile_32::bn) ? 32
                                                        : 16;
  }
  switch (tokens_per_tile) {
    case 16:
      launch<T, tile_16>(w, row_bytes, rows, cols, x, n_tok, y, stream);
      break;
    case 32:
      launch<T, tile_32>(w, row_bytes, rows, cols, x, n_tok, y, stream);
      break;
    case 64:
      launch<T, tile_64>(w, row_bytes, rows, cols, x, n_tok, y, stream);
      break;
    case 128:
      launch<T, tile_128>(w, row_bytes, rows, cols, x, n_tok, y, stream);
      break;
    default:
      assert(false && "gemm_mma: tiles of 16, 32, 64 or 128 tokens");
  }
}

__global__ void to_f16_kernel(const float* __restrict__ x, int64_t n, __half* __restrict__ out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = __float2half(x[i]);
}

}  // namespace

bool mma_type(tensor_type type) {
  return uses_q8(type) || type == tensor_type::bf16;
}

void to_f16(const float* x, int64_t n, __half* out, cudaStream_t stream) {
  if (n == 0) return;
  to_f16_kernel<<<static_cast<unsigned>((n + 255) / 256), 256, 0, stream>>>(x, n, out);
  RBEE_CUDA_CHECK_LAUNCH();
}

void gemm_mma(tensor_type type, const void* w, int64_t rows, int64_t cols, const __half* x_f16,
              int n_tok, float* y, cudaStream_t stream, int tokens_per_tile) {
  assert(mma_type(type) && n_tok >= 1 && "gemm_mma: an integer or bf16 weight type");
  const auto* wb = static_cast<const uint8_t*>(w);
  const size_t rb = row_size(type, cols);
  const int nr = static_cast<int>(rows), nc = static_cast<int>(cols);
  const auto run = [&](auto t) {
    launch_for_batch<decltype(t)::value>(wb, rb, nr, nc, x_f16, n_tok, y, tokens_per_tile, stream);
  };
  if (!with_integer_type(type, run)) run(std::integral_constant<tensor_type, tensor_type::bf16>{});
}

}  // namespace rbee::engine::cuda
