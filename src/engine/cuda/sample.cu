// Sampling on the device, step for step the CPU sampler's (sampling.cpp): repeat penalty,
// the additive offsets (logit_bias, presence and frequency penalties), then argmax, or the
// candidates in (logit desc, id asc) order and one block that walks them through top-k, softmax,
// top-p, min-p and temperature to the drawn token. A small top-k (the usual 40) needs only the best
// k: a tournament of sorted tiles finds them; otherwise CUB sorts the whole vocabulary.
// Probabilities are computed as the CPU computes them (float exp, double sums), so both
// backends pick the same token from the same logits. Log-probabilities (logprobs_row) come
// from the raw logits with the same tournament for their top k.
#include <climits>
#include <tuple>
#include <utility>

#include <cub/device/device_radix_sort.cuh>

#include "engine/cuda/check.h"
#include "engine/cuda/common.cuh"
#include "engine/cuda/launch.cuh"

namespace rbee::engine::cuda {

namespace {

constexpr int pick_threads = 1024;
// Candidates one block sorts in shared memory, and the largest top-k the tournament serves.
constexpr int tile = 1024;
constexpr int tournament_max_k = 64;

// Constrained decoding: bit i of `allowed` (null: every token) says token i may be chosen.
__device__ __forceinline__ bool is_allowed(const uint64_t* __restrict__ allowed, int i) {
  return !allowed || ((allowed[i >> 6] >> (i & 63)) & 1) != 0;
}

// Tokens outside `allowed` get -inf: they sort after every allowed one and weigh nothing.
__global__ void copy_with_ids_kernel(const float* __restrict__ logits, int n,
                                     const uint64_t* __restrict__ allowed, float* __restrict__ keys,
                                     int32_t* __restrict__ ids) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) {
    keys[i] = is_allowed(allowed, i) ? logits[i] : -INFINITY;
    ids[i] = i;
  }
}

// The penalized tokens are distinct, so each thread owns its key.
__global__ void apply_penalty_kernel(const float* __restrict__ logits,
                                     const int32_t* __restrict__ penalized, int n_pen,
                                     float penalty, const uint64_t* __restrict__ allowed,
                                     float* __restrict__ keys) {
  wait_for_previous_kernel();
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= n_pen) return;
  const int32_t t = penalized[j];
  if (!is_allowed(allowed, t)) return;
  const float l = logits[t];
  keys[t] = l > 0 ? l / penalty : l * penalty;
}

// The offsets' tokens are distinct too; runs after the penalty, which may write the same keys.
__global__ void add_offsets_kernel(const token_offset* __restrict__ offsets, int n_off,
                                   float* __restrict__ keys) {
  wait_for_previous_kernel();
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= n_off) return;
  keys[offsets[j].token] += offsets[j].offset;
}

// (value, index) with the larger value, the smaller index among equals.
__device__ __forceinline__ void better(float& v, int& i, float ov, int oi) {
  if (ov > v || (ov == v && oi < i)) {
    v = ov;
    i = oi;
  }
}

__global__ void __launch_bounds__(pick_threads)
    argmax_kernel(const float* __restrict__ x, int n, const uint64_t* __restrict__ allowed,
                  int32_t* __restrict__ out) {
  wait_for_previous_kernel();
  __shared__ float vals[32];
  __shared__ int idxs[32];
  float v = -INFINITY;
  int idx = n;
  // Unrolled so that a thread's loads are in flight together, not one latency each.
#pragma unroll 8
  for (int i = threadIdx.x; i < n; i += blockDim.x)
    if (is_allowed(allowed, i)) better(v, idx, x[i], i);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    better(v, idx, __shfl_xor_sync(0xffffffffu, v, o), __shfl_xor_sync(0xffffffffu, idx, o));
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) {
    vals[warp] = v;
    idxs[warp] = idx;
  }
  __syncthreads();
  if (warp != 0) return;
  v = lane < static_cast<int>(blockDim.x / 32) ? vals[lane] : -INFINITY;
  idx = lane < static_cast<int>(blockDim.x / 32) ? idxs[lane] : n;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    better(v, idx, __shfl_xor_sync(0xffffffffu, v, o), __shfl_xor_sync(0xffffffffu, idx, o));
  // All equal to -inf (or NaN): the first token, as the CPU's loop gives.
  if (lane == 0) *out = idx < n ? idx : 0;
}

// The CPU sampler's candidate order: larger logit first, then smaller id.
__device__ __forceinline__ bool goes_before(float ka, int ia, float kb, int ib) {
  return ka > kb || (ka == kb && ia < ib);
}

// Bitonic sort of tile (key, id) pairs in shared memory into goes_before order, by blockDim.x
// = tile / 2 threads (one compare-exchange each per step).
__device__ void sort_tile(float* k, int* id) {
  for (int size = 2; size <= tile; size <<= 1) {
    for (int stride = size / 2; stride > 0; stride >>= 1) {
      __syncthreads();
      const int t = threadIdx.x;
      const int i = 2 * t - (t & (stride - 1)), j = i + stride;  // the pair t compares
      const bool in_order = (i & size) == 0;  // this run ascends in goes_before order
      const bool swap =
          in_order ? goes_before(k[j], id[j], k[i], id[i]) : goes_before(k[i], id[i], k[j], id[j]);
      if (swap) {
        const float tk = k[i];
        k[i] = k[j];
        k[j] = tk;
        const int ti = id[i];
        id[i] = id[j];
        id[j] = ti;
      }
    }
  }
  __syncthreads();
}

// Block b sorts candidates [b * tile, (b + 1) * tile) of (keys, ids) (ids null: the index)
// and writes its best k, in order, to out[b * k ...]: a round of the top-k tournament.
__global__ void __launch_bounds__(tile / 2)
    best_of_tiles_kernel(const float* __restrict__ keys, const int32_t* __restrict__ ids, int n,
                         int k, float* __restrict__ out_keys, int32_t* __restrict__ out_ids) {
  __shared__ float sk[tile];
  __shared__ int si[tile];
  wait_for_previous_kernel();
  const int base = blockIdx.x * tile;
  for (int j = threadIdx.x; j < tile; j += blockDim.x) {
    const int i = base + j;
    sk[j] = i < n ? keys[i] : -INFINITY;
    si[j] = i < n ? (ids ? ids[i] : i) : INT_MAX;  // padding sorts after every real entry
  }
  sort_tile(sk, si);
  for (int j = threadIdx.x; j < k; j += blockDim.x) {
    out_keys[static_cast<size_t>(blockIdx.x) * k + j] = sk[j];
    out_ids[static_cast<size_t>(blockIdx.x) * k + j] = si[j];
  }
}

// Inclusive prefix sum over the block in thread order; `shared` holds 32 doubles. Returns
// this thread's prefix; `total` gets the block's sum.
__device__ double block_scan_d(double v, double* shared, double& total) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const double up = __shfl_up_sync(0xffffffffu, v, o);
    if (lane >= o) v += up;
  }
  __syncthreads();
  if (lane == 31) shared[warp] = v;
  __syncthreads();
  double before = 0.0;
  total = 0.0;
  for (int w = 0; w < static_cast<int>(blockDim.x / 32); ++w) {
    if (w < warp) before += shared[w];
    total += shared[w];
  }
  return before + v;
}

// The smallest i < n (or n) for which `pred(prefix sum of f over 0..i)` holds, walking
// blocks of pick_threads candidates. Every thread gets the answer.
template <class F, class Pred>
__device__ int first_prefix(int n, F f, Pred pred, double* shared, int* found) {
  if (threadIdx.x == 0) *found = n;
  __syncthreads();
  double carry = 0.0;
  for (int base = 0; base < n; base += pick_threads) {
    const int i = base + static_cast<int>(threadIdx.x);
    double total;
    const double cum = carry + block_scan_d(i < n ? f(i) : 0.0, shared, total);
    if (i < n && pred(cum)) atomicMin(found, i);
    __syncthreads();
    if (*found < n) break;
    carry += total;
  }
  const int result = *found;
  __syncthreads();
  return result;
}

__global__ void __launch_bounds__(pick_threads)
    pick_kernel(const float* __restrict__ keys, const int32_t* __restrict__ ids, int n_vocab,
                sampling_knobs a, int32_t* __restrict__ out) {
  wait_for_previous_kernel();
  __shared__ double red[32];
  __shared__ int found;
  int n = a.top_k > 0 && a.top_k < n_vocab ? a.top_k : n_vocab;
  const float max_logit = keys[0];
  // exp in double, rounded once to float: the CPU's correctly rounded expf.
  auto weight = [&](int i) {
    return static_cast<float>(exp(static_cast<double>(keys[i] - max_logit)));
  };
  double sum = 0.0;
  for (int i = threadIdx.x; i < n; i += pick_threads) sum += weight(i);
  sum = block_sum(sum, red);
  auto prob = [&](int i) { return static_cast<float>(weight(i) / sum); };

  if (a.top_p < 1.0f) {
    const int last = first_prefix(
        n, [&](int i) { return static_cast<double>(prob(i)); },
        [&](double cum) { return cum >= a.top_p; }, red, &found);
    if (last < n) n = last + 1;
  }
  if (a.min_p > 0.0f) {
    // Probabilities fall along the sorted order: the survivors are a prefix.
    const float threshold = prob(0) * a.min_p;
    double kept = 0.0;
    for (int i = 1 + threadIdx.x; i < n; i += pick_threads) kept += prob(i) >= threshold ? 1 : 0;
    n = 1 + static_cast<int>(block_sum(kept, red));
  }
  const double inv_temperature = 1.0 / a.temperature;
  auto tempered = [&](int i) {
    return static_cast<double>(
        static_cast<float>(pow(static_cast<double>(prob(i)), inv_temperature)));
  };
  double total = 0.0;
  for (int i = threadIdx.x; i < n; i += pick_threads) total += tempered(i);
  total = block_sum(total, red);
  const double r = a.uniform * total;
  const int chosen = first_prefix(
      n, tempered, [&](double cum) { return r < cum; }, red, &found);
  if (threadIdx.x == 0) *out = ids[chosen < n ? chosen : n - 1];
}

// out[0] = log-softmax of the row at *token, out[1 + j] at the j-th best (top_keys are raw
// logits), out_ids[j] = top_ids[j]: the CPU's compute_logprobs, with its float max and its
// double exp and sum.
__global__ void __launch_bounds__(pick_threads)
    logprobs_kernel(const float* __restrict__ logits, int n, const int32_t* __restrict__ token,
                    const float* __restrict__ top_keys, const int32_t* __restrict__ top_ids,
                    int n_top, float* __restrict__ out, int32_t* __restrict__ out_ids) {
  wait_for_previous_kernel();
  __shared__ float red_max[32];
  __shared__ double red_sum[32];
  float m = -INFINITY;
  for (int i = threadIdx.x; i < n; i += pick_threads) m = fmaxf(m, logits[i]);
  m = block_max(m, red_max);
  double sum = 0.0;
  for (int i = threadIdx.x; i < n; i += pick_threads)
    sum += exp(static_cast<double>(logits[i] - m));
  sum = block_sum(sum, red_sum);
  const double log_normalizer = static_cast<double>(m) + log(sum);
  if (threadIdx.x == 0)
    out[0] = static_cast<float>(static_cast<double>(logits[*token]) - log_normalizer);
  for (int j = threadIdx.x; j < n_top; j += pick_threads) {
    out[1 + j] = static_cast<float>(static_cast<double>(top_keys[j]) - log_normalizer);
    out_ids[j] = top_ids[j];
  }
}

size_t align256(size_t n) {
  return (n + 255) / 256 * 256;
}

size_t sort_bytes(int n) {
  size_t bytes = 0;
  RBEE_CUDA_CHECK(cub::DeviceRadixSort::SortPairsDescending(
      nullptr, bytes, static_cast<const float*>(nullptr), static_cast<float*>(nullptr),
      static_cast<const int32_t*>(nullptr), static_cast<int32_t*>(nullptr), n));
  return bytes;
}

// The best k (<= tournament_max_k) of (keys, index) in goes_before order: rounds of
// best-k-of-each-tile until one tile holds every survivor. The two halves of the sorted
// arrays take turns as the rounds' output; returns the last round's.
std::pair<const float*, const int32_t*> best_k(const float* keys, int n, int k, float* sorted_keys,
                                               int32_t* sorted_ids, cudaStream_t stream) {
  const float* in_keys = keys;
  const int32_t* in_ids = nullptr;
  int count = n, turn = 0;
  for (;;) {
    const int blocks = (count + tile - 1) / tile;
    float* out_keys = sorted_keys + (turn % 2) * (n / 2);
    int32_t* out_ids = sorted_ids + (turn % 2) * (n / 2);
    launch_dependent(best_of_tiles_kernel, blocks, tile / 2, 0, stream, in_keys, in_ids, count, k,
                     out_keys, out_ids);
    in_keys = out_keys;
    in_ids = out_ids;
    count = blocks * k;
    ++turn;
    if (blocks == 1) return {in_keys, in_ids};
  }
}

struct sample_scratch {
  float *keys, *sorted_keys;
  int32_t *ids, *sorted_ids;
  void* sort;
};

sample_scratch carve(void* scratch, int n) {
  const size_t row = align256(static_cast<size_t>(n) * 4);
  auto* base = static_cast<uint8_t*>(scratch);
  return {reinterpret_cast<float*>(base), reinterpret_cast<float*>(base + row),
          reinterpret_cast<int32_t*>(base + 2 * row), reinterpret_cast<int32_t*>(base + 3 * row),
          base + 4 * row};
}

}  // namespace

size_t sample_scratch_bytes(int n) {
  return 4 * align256(static_cast<size_t>(n) * 4) + align256(sort_bytes(n));
}

void sample_row(const float* logits, int n, const uint64_t* allowed, int n_allowed,
                const int32_t* penalized, int n_pen, const token_offset* offsets, int n_off,
                const sampling_knobs& p, void* scratch, int32_t* token, cudaStream_t stream) {
  const bool greedy = p.temperature <= 0.0f;
  if (p.repeat_penalty == 1.0f) n_pen = 0;
  if (!allowed) n_allowed = n;
  if (greedy && n_pen == 0 && n_off == 0) {
    argmax_kernel<<<1, pick_threads, 0, stream>>>(logits, n, allowed, token);
    RBEE_CUDA_CHECK_LAUNCH();
    return;
  }
  const auto [keys, sorted_keys, ids, sorted_ids, sort_scratch] = carve(scratch, n);

  copy_with_ids_kernel<<<(n + 255) / 256, 256, 0, stream>>>(logits, n, allowed, keys, ids);
  RBEE_CUDA_CHECK_LAUNCH();
  if (n_pen > 0) {
    launch_dependent(apply_penalty_kernel, (n_pen + 255) / 256, 256, 0, stream, logits, penalized,
                     n_pen, p.repeat_penalty, allowed, keys);
  }
  if (n_off > 0) {
    launch_dependent(add_offsets_kernel, (n_off + 255) / 256, 256, 0, stream, offsets, n_off, keys);
  }
  if (greedy) {
    launch_dependent(argmax_kernel, 1, pick_threads, 0, stream, keys, n,
                     static_cast<const uint64_t*>(nullptr), token);
    return;
  }
  // The allowed tokens sort first: the candidates are the first n_allowed, as on the CPU.
  if (p.top_k > 0 && p.top_k <= tournament_max_k && p.top_k < n) {
    const auto [best_keys, best_ids] = best_k(keys, n, p.top_k, sorted_keys, sorted_ids, stream);
    launch_dependent(pick_kernel, 1, pick_threads, 0, stream, best_keys, best_ids,
                     p.top_k < n_allowed ? p.top_k : n_allowed, p, token);
    return;
  }
  // Stable: equal logits keep ascending ids, the CPU sampler's tie order.
  size_t sort_scratch_bytes = sort_bytes(n);
  RBEE_CUDA_CHECK(cub::DeviceRadixSort::SortPairsDescending(
      sort_scratch, sort_scratch_bytes, keys, sorted_keys, ids, sorted_ids, n, 0, 32, stream));
  launch_dependent(pick_kernel, 1, pick_threads, 0, stream, sorted_keys, sorted_ids, n_allowed, p,
                   token);
}

void logprobs_row(const float* logits, int n, const int32_t* token, int n_top, void* scratch,
                  float* out, int32_t* out_ids, cudaStream_t stream) {
  const sample_scratch s = carve(scratch, n);
  const float* top_keys = nullptr;
  const int32_t* top_ids = nullptr;
  if (n_top > 0)
    std::tie(top_keys, top_ids) = best_k(logits, n, n_top, s.sorted_keys, s.sorted_ids, stream);
  launch_dependent(logprobs_kernel, 1, pick_threads, 0, stream, logits, n, token, top_keys, top_ids,
                   n_top, out, out_ids);
}

}  // namespace rbee::engine::cuda
