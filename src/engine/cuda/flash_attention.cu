// Prefill attention on tensor cores (flash attention). A block takes a tile of up to
// flash_tile_rows consecutive batch rows of one sequence and one head; it walks the positions
// those rows see, bk at a time, and keeps per row a running maximum, sum and weighted sum of
// values, so the scores never leave the chip and each cached key and value row is read once
// per tile rather than once per query (the split kernel's cost, attention.cu). Q.K^T and P.V
// are m16n8k16 products of halves accumulating in floats: the queries and the weights P are
// rounded to half for them, as the keys and values already are in the cache.
#include <cassert>
#include <climits>
#include <cmath>

#include "engine/cuda/check.h"
#include "engine/cuda/common.cuh"
#include "engine/cuda/tensor_core.cuh"

namespace rbee::engine::cuda {

namespace {

constexpr int flash_threads = 128;  // 4 warps of 16 query rows: flash_tile_rows
static_assert(flash_threads / 32 * 16 == flash_tile_rows);

template <int HD>
struct flash_shape {
  static constexpr int bq = flash_tile_rows;
  // Positions per step: the score and output fragments of a warp stay in registers.
  static constexpr int bk = HD <= 128 ? 64 : 32;
  // Shared rows of HD halves plus 8: the 8 rows ldmatrix reads at once start 4 banks apart.
  static constexpr int ld = HD + 8;
  static constexpr int shared_bytes = (bq + 2 * bk) * ld * 2;
  static_assert(HD % 16 == 0 && bk % 16 == 0);
};

__device__ __forceinline__ uint32_t pack_halves(float lo, float hi) {
  const __half2 h = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&h);
}

__device__ __forceinline__ float quad_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
  return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
__device__ __forceinline__ float quad_sum(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

// Fragment layout (PTX m16n8k16): lane = 4g + t holds rows g and g + 8 of a 16-row fragment,
// columns 2t and 2t + 1 of each 8-column piece; a score fragment's two 8-key pieces are, in
// the same registers, the A fragment of the P.V product over those 16 keys.
template <int HD>
__global__ void __launch_bounds__(flash_threads)
    flash_kernel(const float* __restrict__ q, const __half* __restrict__ k_cache,
                 const __half* __restrict__ v_cache, const int32_t* __restrict__ pos,
                 const int32_t* __restrict__ seq, const attention_tile* __restrict__ tiles,
                 attention_shape s, float* __restrict__ out) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  using S = flash_shape<HD>;
  extern __shared__ __align__(16) unsigned char shared_raw[];
  __half* q_s = reinterpret_cast<__half*>(shared_raw);
  __half* k_s = q_s + S::bq * S::ld;
  __half* v_s = k_s + S::bk * S::ld;
  __shared__ int32_t row_pos[S::bq];  // -1 past the tile's rows: they see nothing
  __shared__ int32_t key_range[2];

  const attention_tile tile = tiles[blockIdx.x];
  const int h = blockIdx.y, n_head = s.n_head;
  const int kvh = h / (n_head / s.n_head_kv);
  const int sequence = seq[tile.first_row];
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  for (int r = tid; r < S::bq; r += flash_threads)
    row_pos[r] = r < tile.n_rows ? pos[tile.first_row + r] : -1;
  for (int i = tid; i < S::bq * HD / 4; i += flash_threads) {
    const int r = i / (HD / 4), d = i % (HD / 4) * 4;
    float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (r < tile.n_rows)
      v = *reinterpret_cast<const float4*>(
          q + (static_cast<size_t>(tile.first_row + r) * n_head + h) * HD + d);
    __half2* dst = reinterpret_cast<__half2*>(q_s + r * S::ld + d);
    dst[0] = __floats2half2_rn(v.x, v.y);
    dst[1] = __floats2half2_rn(v.z, v.w);
  }
  __syncthreads();
  const auto first_seen = [&](int p) { return s.window > 0 ? max(0, p - s.window + 1) : 0; };
  if (tid == 0) {
    int lo = INT_MAX, hi = -1;
    for (int r = 0; r < tile.n_rows; ++r) {
      lo = min(lo, first_seen(row_pos[r]));
      hi = max(hi, row_pos[r]);
    }
    key_range[0] = lo;
    key_range[1] = hi;
  }
  __syncthreads();
  const int lo = key_range[0], hi = key_range[1];

  // This lane's two rows, and the last position any row of its warp sees.
  const int row0 = warp * 16 + lane / 4, row1 = row0 + 8;
  const int pos0 = row_pos[row0], pos1 = row_pos[row1];
  const int first0 = first_seen(pos0), first1 = first_seen(pos1);
  int warp_last = -1;
  for (int r = warp * 16; r < warp * 16 + 16; ++r) warp_last = max(warp_last, row_pos[r]);

  const bool paged = s.block_table != nullptr;
  const int32_t* table =
      paged ? s.block_table + static_cast<size_t>(sequence) * s.max_blocks : nullptr;
  // Element offset of position p's key (and value) row of head kvh: in its pool block, or in
  // the sequence's ring.
  const auto cache_row = [&](int p) {
    if (!paged)
      return ((static_cast<size_t>(sequence) * s.n_head_kv + kvh) * s.rows + p % s.rows) * HD;
    return ((static_cast<size_t>(table[p / kv_block_size]) * s.n_head_kv + kvh) * kv_block_size +
            p % kv_block_size) *
           HD;
  };

  constexpr float log2e = 1.4426950408889634f;
  float o[HD / 8][4] = {};
  float m0 = -INFINITY, m1 = -INFINITY;  // running maxima (log2 units) of rows row0, row1
  float l0 = 0.0f, l1 = 0.0f;            // this lane's part of their running sums
  for (int k0 = lo; k0 <= hi; k0 += S::bk) {
    __syncthreads();  // every warp is done with the previous step's keys and values
    for (int i = tid; i < S::bk * HD / 8; i += flash_threads) {
      const int r = i / (HD / 8), d = i % (HD / 8) * 8;
      const int p = k0 + r;
      uint4 kv = make_uint4(0, 0, 0, 0), vv = kv;
      if (p <= hi) {
        const size_t at = cache_row(p) + d;
        kv = *reinterpret_cast<const uint4*>(k_cache + at);
        vv = *reinterpret_cast<const uint4*>(v_cache + at);
      }
      *reinterpret_cast<uint4*>(k_s + r * S::ld + d) = kv;
      *reinterpret_cast<uint4*>(v_s + r * S::ld + d) = vv;
    }
    __syncthreads();
    if (k0 > warp_last) continue;  // causal: all of this warp's rows end before these keys

    float sc[S::bk / 8][4] = {};
    for (int c = 0; c < HD / 16; ++c) {
      uint32_t a[4];
      load_matrices(
          a, q_s + (warp * 16 + lane % 8 + (lane / 8) % 2 * 8) * S::ld + c * 16 + lane / 16 * 8);
#pragma unroll
      for (int j = 0; j < S::bk / 8; j += 2) {
        uint32_t b[4];
        load_matrices(b,
                      k_s + ((j + lane / 16) * 8 + lane % 8) * S::ld + c * 16 + (lane / 8) % 2 * 8);
        mma_16x8x16(sc[j], a, b[0], b[1]);
        mma_16x8x16(sc[j + 1], a, b[2], b[3]);
      }
    }
    // Scaled, capped and masked scores in log2 units; the rows' new maxima.
    float max0 = -INFINITY, max1 = -INFINITY;
#pragma unroll
    for (int j = 0; j < S::bk / 8; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int p = k0 + j * 8 + lane % 4 * 2 + e % 2;
        const bool upper = e >= 2;
        float x = sc[j][e] * s.scale;
        if (s.softcap > 0.0f) x = s.softcap * tanhf(x / s.softcap);
        const bool seen = upper ? p >= first1 && p <= pos1 : p >= first0 && p <= pos0;
        x = seen ? x * log2e : -INFINITY;
        sc[j][e] = x;
        if (upper)
          max1 = fmaxf(max1, x);
        else
          max0 = fmaxf(max0, x);
      }
    }
    const float new0 = fmaxf(m0, quad_max(max0)), new1 = fmaxf(m1, quad_max(max1));
    // A row that has seen no position yet keeps -inf: its weights are 0 and nothing rescales.
    const float base0 = new0 == -INFINITY ? 0.0f : new0;
    const float base1 = new1 == -INFINITY ? 0.0f : new1;
    const float keep0 = exp2f(m0 - base0), keep1 = exp2f(m1 - base1);
    m0 = new0;
    m1 = new1;
    l0 *= keep0;
    l1 *= keep1;
#pragma unroll
    for (int j = 0; j < HD / 8; ++j) {
      o[j][0] *= keep0;
      o[j][1] *= keep0;
      o[j][2] *= keep1;
      o[j][3] *= keep1;
    }
#pragma unroll
    for (int j = 0; j < S::bk / 8; ++j) {
      sc[j][0] = exp2f(sc[j][0] - base0);
      sc[j][1] = exp2f(sc[j][1] - base0);
      sc[j][2] = exp2f(sc[j][2] - base1);
      sc[j][3] = exp2f(sc[j][3] - base1);
      l0 += sc[j][0] + sc[j][1];
      l1 += sc[j][2] + sc[j][3];
    }
    // Weighted values: 16 positions of P (two score pieces) against 16 value dimensions a step.
#pragma unroll
    for (int kc = 0; kc < S::bk / 16; ++kc) {
      const uint32_t a[4] = {pack_halves(sc[2 * kc][0], sc[2 * kc][1]),
                             pack_halves(sc[2 * kc][2], sc[2 * kc][3]),
                             pack_halves(sc[2 * kc + 1][0], sc[2 * kc + 1][1]),
                             pack_halves(sc[2 * kc + 1][2], sc[2 * kc + 1][3])};
#pragma unroll
      for (int dn = 0; dn < HD / 8; dn += 2) {
        uint32_t b[4];
        load_matrices_transposed(b, v_s + (kc * 16 + lane % 16) * S::ld + (dn + lane / 16) * 8);
        mma_16x8x16(o[dn], a, b[0], b[1]);
        mma_16x8x16(o[dn + 1], a, b[2], b[3]);
      }
    }
  }
  // Every row of the tile sees at least its own position, so its sum is positive.
  const float inv0 = 1.0f / quad_sum(l0), inv1 = 1.0f / quad_sum(l1);
  const auto store = [&](int r, int half_index, float inv) {
    if (r >= tile.n_rows) return;
    float* dst = out + (static_cast<size_t>(tile.first_row + r) * n_head + h) * HD + lane % 4 * 2;
#pragma unroll
    for (int j = 0; j < HD / 8; ++j)
      *reinterpret_cast<float2*>(dst + j * 8) =
          make_float2(o[j][half_index] * inv, o[j][half_index + 1] * inv);
  };
  store(row0, 0, inv0);
  store(row1, 2, inv1);
#else
  __trap();  // flash_attention_supported() keeps older devices on the split kernel
#endif
}

template <int HD>
void launch_flash(const float* q, const __half* k_cache, const __half* v_cache, const int32_t* pos,
                  const int32_t* seq, const attention_tile* tiles, int n_tiles,
                  const attention_shape& s, float* out, cudaStream_t stream) {
  using S = flash_shape<HD>;
  RBEE_CUDA_CHECK(cudaFuncSetAttribute(
      flash_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, S::shared_bytes));
  const dim3 grid(static_cast<unsigned>(n_tiles), static_cast<unsigned>(s.n_head));
  flash_kernel<HD><<<grid, flash_threads, S::shared_bytes, stream>>>(q, k_cache, v_cache, pos, seq,
                                                                     tiles, s, out);
  RBEE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

int attention_tiles(const int32_t* seq, int n, attention_tile* tiles) {
  int n_tiles = 0;
  for (int i = 0; i < n; ++i) {
    const bool joins =
        n_tiles > 0 && seq[i] == seq[i - 1] && tiles[n_tiles - 1].n_rows < flash_tile_rows;
    if (joins) {
      ++tiles[n_tiles - 1].n_rows;
    } else {
      tiles[n_tiles++] = attention_tile{i, 1};
    }
  }
  return n_tiles;
}

bool flash_attention_supported(int head_dim) {
  if (head_dim != 64 && head_dim != 80 && head_dim != 96 && head_dim != 128 && head_dim != 256)
    return false;
  int device = 0, major = 0;
  RBEE_CUDA_CHECK(cudaGetDevice(&device));
  RBEE_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  return major >= 8;
}

void flash_attention(const float* q, const __half* k_cache, const __half* v_cache,
                     const int32_t* pos, const int32_t* seq, const attention_tile* tiles,
                     int n_tiles, const attention_shape& s, float* out, cudaStream_t stream) {
  switch (s.head_dim) {
    case 64:
      return launch_flash<64>(q, k_cache, v_cache, pos, seq, tiles, n_tiles, s, out, stream);
    case 80:
      return launch_flash<80>(q, k_cache, v_cache, pos, seq, tiles, n_tiles, s, out, stream);
    case 96:
      return launch_flash<96>(q, k_cache, v_cache, pos, seq, tiles, n_tiles, s, out, stream);
    case 128:
      return launch_flash<128>(q, k_cache, v_cache, pos, seq, tiles, n_tiles, s, out, stream);
    case 256:
      return launch_flash<256>(q, k_cache, v_cache, pos, seq, tiles, n_tiles, s, out, stream);
    default:
      assert(false && "flash_attention: head size without a kernel (flash_attention_supported)");
  }
}

}  // namespace rbee::engine::cuda
