// CUDA kernels against the CPU reference (engine/quant.h and plain loops): every weight type
// through the product routes (packed matrix x vector for decode; tensor cores on the packed
// weights and dequantize + cuBLAS for prefill), the
// dequantizers, norm, SwiGLU, q8 activations and rope + split attention, on fresh random
// inputs. Skips without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <span>
#include <utility>
#include <vector>

#include "engine/engine.h"
#include "engine/quant.h"
#include "engine/sampling.h"

#if RBEE_HAVE_CUDA
#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/ops.h"
#include "support/cuda_ops.h"

namespace rbee::engine::cuda {
namespace {

#define RBEE_REQUIRE_GPU() \
  if (device_count() == 0) GTEST_SKIP() << "no CUDA device"

const tensor_type all_types[] = {tensor_type::f32,  tensor_type::f16,  tensor_type::bf16,
                                 tensor_type::q4_0, tensor_type::q4_1, tensor_type::q5_0,
                                 tensor_type::q5_1, tensor_type::q8_0, tensor_type::iq4_nl,
                                 tensor_type::q2_k, tensor_type::q3_k, tensor_type::q4_k,
                                 tensor_type::q5_k, tensor_type::q6_k, tensor_type::iq4_xs};

std::vector<float> normal(std::mt19937& rng, size_t n, float sigma) {
  std::normal_distribution<float> dist(0.0f, sigma);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

std::vector<uint8_t> quantized(tensor_type t, const std::vector<float>& values, int64_t rows,
                               int64_t cols) {
  std::vector<uint8_t> out(row_size(t, cols) * static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r)
    quantize_row(t, values.data() + r * cols, out.data() + r * row_size(t, cols), cols);
  return out;
}

double norm(const float* v, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(v[i]) * v[i];
  return std::sqrt(s);
}

const char* route_name(testing::product_route route) {
  switch (route) {
    case testing::product_route::matvec:
      return "matvec";
    case testing::product_route::cublas:
      return "cublas";
    case testing::product_route::mma:
      return "mma";
    case testing::product_route::pipelined:
      return "pipelined";
    case testing::product_route::gemm:
      return "gemm";
  }
  return "?";
}

// Random weights (rows, cols) packed in t and activations (n_tok, cols).
struct product_inputs {
  tensor_type type;
  int64_t rows, cols;
  int n_tok;
  std::vector<uint8_t> w;
  std::vector<float> x;
};
product_inputs random_product(tensor_type t, int64_t rows, int64_t cols, int n_tok,
                              std::mt19937& rng) {
  auto w = quantized(t, normal(rng, static_cast<size_t>(rows * cols), 0.02f), rows, cols);
  return {t, rows, cols, n_tok, std::move(w), normal(rng, static_cast<size_t>(n_tok * cols), 1.0f)};
}

// The largest |y - want(row, token)| over the product, relative to |w_row| * |x| / sqrt(cols)
// (the size of a dot product of random vectors), so a layout mistake (an error of the size of
// the result) always shows. Fails at the first entry above `bound`.
template <class Want>
double worst_error(const product_inputs& p, const std::vector<float>& y, double bound,
                   const char* what, Want want) {
  const int64_t rows = p.rows, cols = p.cols;
  EXPECT_EQ(y.size(), static_cast<size_t>(rows * p.n_tok));
  if (y.size() != static_cast<size_t>(rows * p.n_tok)) return INFINITY;
  const size_t rb = row_size(p.type, cols);
  std::vector<float> wrow(static_cast<size_t>(cols));
  std::vector<double> x_norms;
  for (int tok = 0; tok < p.n_tok; ++tok) x_norms.push_back(norm(p.x.data() + tok * cols, cols));
  double worst = 0;
  for (int64_t r = 0; r < rows; ++r) {
    dequantize_row_reference(p.type, p.w.data() + r * rb, wrow.data(), cols);
    const double wn = norm(wrow.data(), cols);
    for (int tok = 0; tok < p.n_tok; ++tok) {
      const double scale =
          wn * x_norms[static_cast<size_t>(tok)] / std::sqrt(static_cast<double>(cols));
      const float got = y[static_cast<size_t>(tok * rows + r)];
      const double ref = want(r, tok);
      const double err = std::abs(got - ref) / scale;
      worst = std::max(worst, err);
      if (!(err <= bound)) {
        ADD_FAILURE() << to_string(p.type) << " " << what << " (" << rows << " x " << cols << ", "
                      << p.n_tok << " tokens) row " << r << " token " << tok << ": got " << got
                      << ", want " << ref;
        return worst;
      }
    }
  }
  return worst;
}

double reference_error(const product_inputs& p, const std::vector<float>& y, double bound,
                       const char* what) {
  const size_t rb = row_size(p.type, p.cols);
  return worst_error(p, y, bound, what, [&](int64_t r, int tok) {
    return dot_reference(p.type, p.w.data() + r * rb, p.x.data() + tok * p.cols, p.cols);
  });
}

bool integer_type(tensor_type t) {
  return t != tensor_type::f32 && t != tensor_type::f16 && t != tensor_type::bf16;
}

// Error bounds, relative to a dot's size: q8 activations (decode) cost ~0.1 at most; fp16
// rounding of the activations and weights (the batched routes) less; float weights in the
// decode route only summation order.
double bound_of(tensor_type t, testing::product_route route) {
  if (route != testing::product_route::matvec) return 0.02;
  return integer_type(t) ? 0.05 : 1e-4;
}

void check_product(tensor_type t, int64_t rows, int64_t cols, int n_tok,
                   testing::product_route route, std::mt19937& rng) {
  const product_inputs p = random_product(t, rows, cols, n_tok, rng);
  const auto y = testing::matmul(t, p.w, rows, cols, p.x, n_tok, route);
  const double worst = reference_error(p, y, bound_of(t, route), route_name(route));
  std::printf("  %-6s %-6s %4lld x %-5lld n_tok %3d: max error %.2e of a dot's size\n",
              std::string(to_string(t)).c_str(), route_name(route), static_cast<long long>(rows),
              static_cast<long long>(cols), n_tok, worst);
}

TEST(cuda_kernels, matvec_matches_reference_for_every_type) {
  RBEE_REQUIRE_GPU();
  std::mt19937 rng(1);
  for (tensor_type t : all_types) {
    for (int n_tok : {1, 2, 3, 5, 8})
      check_product(t, 67, 512, n_tok, testing::product_route::matvec, rng);
    // Rows of 2048 are 16-byte multiples in every type: the aligned vector loads.
    for (int n_tok : {1, 4}) check_product(t, 37, 2048, n_tok, testing::product_route::matvec, rng);
  }
}

TEST(cuda_kernels, cublas_gemm_matches_reference_for_every_type) {
  RBEE_REQUIRE_GPU();
  std::mt19937 rng(2);
  for (tensor_type t : all_types)
    for (int n_tok : {9, 40}) check_product(t, 96, 768, n_tok, testing::product_route::cublas, rng);
}

// The weight types of the tensor-core route: all but f32 and f16 (cuBLAS's).
std::vector<tensor_type> mma_types() {
  std::vector<tensor_type> out;
  for (tensor_type t : all_types)
    if (t != tensor_type::f32 && t != tensor_type::f16) out.push_back(t);
  return out;
}

// The tensor-core product with tiles of `tile` tokens (0: its own choice) against the
// reference and, with against_cublas, against dequantize + cuBLAS, which sees the same fp16
// weights and activations (bf16: fp32 ones): the two differ by summation order and, for
// bf16, the activations' fp16 rounding.
void check_mma(tensor_type t, int64_t rows, int64_t cols, int n_tok, int tile, bool against_cublas,
               std::mt19937& rng) {
  const product_inputs p = random_product(t, rows, cols, n_tok, rng);
  const auto y = testing::matmul(t, p.w, rows, cols, p.x, n_tok, testing::product_route::mma, tile);
  const double worst = reference_error(p, y, 0.02, "mma");
  double apart = 0;
  if (against_cublas) {
    const auto via_cublas =
        testing::matmul(t, p.w, rows, cols, p.x, n_tok, testing::product_route::cublas);
    apart = worst_error(p, y, 5e-3, "mma vs cublas", [&](int64_t r, int tok) {
      return via_cublas[static_cast<size_t>(tok * rows + r)];
    });
  }
  std::printf("  %-6s mma %3d %4lld x %-5lld n_tok %3d: max error %.2e, from cuBLAS %.2e\n",
              std::string(to_string(t)).c_str(), tile, static_cast<long long>(rows),
              static_cast<long long>(cols), n_tok, worst, apart);
}

const int mma_tiles[] = {16, 32, 64, 128};

// Every batch size through every tile shape and the kernel's own choice, on every type.
TEST(cuda_kernels, mma_matches_reference_for_every_type_and_batch) {
  RBEE_REQUIRE_GPU();
  std::mt19937 rng(12);
  for (tensor_type t : mma_types())
    for (int n_tok : {9, 16, 33, 64, 128, 512}) {
      check_mma(t, 96, 768, n_tok, 0, true, rng);
      for (int tile : mma_tiles) check_mma(t, 96, 768, n_tok, tile, false, rng);
    }
}

// Rows that are no multiple of a tile, rows of a number of chunks that is no multiple of a
// step (9 chunks of 32; K-quant rows are whole super-blocks of 8), bf16 rows of any length
// (172: no multiple of 8 either), and token counts past a tile's end, in every tile shape.
// Small, so that compute-sanitizer can run it.
TEST(cuda_kernels, mma_handles_odd_shapes) {
  RBEE_REQUIRE_GPU();
  std::mt19937 rng(13);
  for (tensor_type t : mma_types()) {
    const int64_t cols = traits_of(t).block_size == 256 ? 768 : t == tensor_type::bf16 ? 172 : 288;
    for (int tile : mma_tiles)
      for (int64_t rows : {1, 67, 130})
        for (int n_tok : {9, 47, 100}) check_mma(t, rows, cols, n_tok, tile, false, rng);
  }
  check_mma(tensor_type::bf16, 45, 200, 33, 32, false, rng);
}

// A matrix big enough that the kernel's own choice is the widest tile (128 x 128).
TEST(cuda_kernels, mma_wide_tiles_match_reference) {
  RBEE_REQUIRE_GPU();
  std::mt19937 rng(14);
  for (tensor_type t : mma_types()) check_mma(t, 4227, 256, 512, 0, true, rng);
}

// The pipelined tensor-core product with tile shape `tile` against the reference and against
// dequantize + cuBLAS, which sees the same fp16 weights and activations: the two differ by
// the order of the fp32 sums only.
void check_pipelined(tensor_type t, int64_t rows, int64_t cols, int n_tok, gemm_tile tile,
                     std::mt19937& rng) {
  const product_inputs p = random_product(t, rows, cols, n_tok, rng);
  const auto route = testing::product_route::pipelined;
  const auto y = testing::matmul(t, p.w, rows, cols, p.x, n_tok, route, static_cast<int>(tile));
  const double worst = reference_error(p, y, bound_of(t, route), "pipelined");
  const auto via_cublas =
      testing::matmul(t, p.w, rows, cols, p.x, n_tok, testing::product_route::cublas);
  const double apart = worst_error(p, y, 1e-4, "pipelined vs cublas", [&](int64_t r, int tok) {
    return via_cublas[static_cast<size_t>(tok * rows + r)];
  });
  std::printf("  %-6s pipelined %d %4lld x %-5lld n_tok %3d: max error %.2e, from cuBLAS %.2e\n",
              std::string(to_string(t)).c_str(), static_cast<int>(tile),
              static_cast<long long>(rows), static_cast<long long>(cols), n_tok, worst, apart);
}

std::vector<tensor_type> integer_types() {
  std::vector<tensor_type> out;
  for (tensor_type t : all_types)
    if (integer_type(t)) out.push_back(t);
  return out;
}

const gemm_tile pipelined_tiles[] = {gemm_tile::chosen, gemm_tile::rows64_tokens32,
                                     gemm_tile::rows64_tokens64};

// Every integer type and tile shape; rows no multiple of a tile (67, 130), token counts past
// a tile's end, and rows of several steps (768 columns: 3 steps of 256).
TEST(cuda_kernels, pipelined_matches_reference_and_cublas) {
  RBEE_REQUIRE_GPU();
  if (!gemm_pipelined_supported(tensor_type::q4_0, 256)) GTEST_SKIP() << "needs compute 8.0";
  std::mt19937 rng(16);
  for (tensor_type t : integer_types())
    for (gemm_tile tile : pipelined_tiles)
      for (int64_t rows : {67, 130})
        for (int n_tok : {9, 47, 100}) check_pipelined(t, rows, 768, n_tok, tile, rng);
}

// Small, for compute-sanitizer: each way of copying a step's raw blocks (16-byte copies for
// q4_0, 4-byte ones for q2_k, plain 2-byte loads for q3_k and q6_k's scale) in every tile.
TEST(cuda_kernels, pipelined_copies_every_block_layout) {
  RBEE_REQUIRE_GPU();
  if (!gemm_pipelined_supported(tensor_type::q4_0, 256)) GTEST_SKIP() << "needs compute 8.0";
  std::mt19937 rng(18);
  for (tensor_type t : {tensor_type::q4_0, tensor_type::q2_k, tensor_type::q3_k, tensor_type::q6_k})
    for (gemm_tile tile : pipelined_tiles) check_pipelined(t, 67, 512, 40, tile, rng);
}

// A matrix big enough for the 64-token tiles by the kernel's own choice, 512 tokens.
TEST(cuda_kernels, pipelined_wide_tiles_match_reference) {
  RBEE_REQUIRE_GPU();
  if (!gemm_pipelined_supported(tensor_type::q4_0, 256)) GTEST_SKIP() << "needs compute 8.0";
  std::mt19937 rng(17);
  for (tensor_type t : integer_types()) check_pipelined(t, 4227, 256, 512, gemm_tile::chosen, rng);
}

// gemm as a context calls it: the tensor-core routes up to their batch sizes, cuBLAS above,
// with the scratch gemm_scratch_bytes asks for.
TEST(cuda_kernels, gemm_routes_every_type_by_batch_size) {
  RBEE_REQUIRE_GPU();
  std::mt19937 rng(15);
  for (tensor_type t : all_types)
    for (int n_tok : {9, 40, 513})
      check_product(t, 40, 256, n_tok, testing::product_route::gemm, rng);
}

// Rows whose length is not a multiple of 8 (stories260K's FFN of 172) take the scalar path.
TEST(cuda_kernels, float_matvec_handles_odd_row_lengths) {
  RBEE_REQUIRE_GPU();
  std::mt19937 rng(3);
  for (tensor_type t : {tensor_type::f32, tensor_type::f16, tensor_type::bf16})
    for (int n_tok : {1, 4}) check_product(t, 33, 172, n_tok, testing::product_route::matvec, rng);
  check_product(tensor_type::f32, 33, 172, 12, testing::product_route::cublas, rng);
}

TEST(cuda_kernels, dequantize_matches_reference_for_every_type) {
  RBEE_REQUIRE_GPU();
  std::mt19937 rng(4);
  const int64_t rows = 7;
  for (int64_t cols : {512, 2048})
    for (tensor_type t : all_types) {
      const auto w = quantized(t, normal(rng, rows * cols, 0.5f), rows, cols);
      std::vector<float> ref(static_cast<size_t>(rows * cols));
      for (int64_t r = 0; r < rows; ++r)
        dequantize_row_reference(t, w.data() + r * row_size(t, cols), ref.data() + r * cols, cols);
      // Embedding lookup (fp32, exact up to the fp32 multiply) of rows in any order.
      const std::vector<int32_t> ids = {5, 0, 6, 5, 2};
      const auto got = testing::dequantize(t, w, rows, cols, ids);
      for (size_t i = 0; i < ids.size(); ++i)
        for (int64_t j = 0; j < cols; ++j) {
          const float want = ref[static_cast<size_t>(ids[i] * cols + j)];
          ASSERT_NEAR(got[i * cols + static_cast<size_t>(j)], want, 1e-6f * (1 + std::abs(want)))
              << to_string(t) << " row " << ids[i] << " col " << j;
        }
      // Whole matrix to fp16 (the prefill route), computed in half arithmetic (blocks.cuh:
      // chunk_to_half2): scale and minimum rounded to half, then one half multiply-add. Each
      // rounding is within 2^-11 of its term, and the terms are within the value and the
      // minimum, which is about the largest magnitude of the 32 values of its chunk.
      const auto all = testing::dequantize(t, w, rows, cols, {});
      for (size_t i = 0; i < ref.size(); ++i) {
        const size_t chunk = i / 32 * 32;
        float largest = 0;
        for (size_t j = chunk; j < chunk + 32; ++j) largest = std::max(largest, std::abs(ref[j]));
        ASSERT_NEAR(all[i], ref[i], 2e-3f * (std::abs(ref[i]) + largest) + 1e-7f)
            << to_string(t) << " at " << i;
      }
    }
}

TEST(cuda_kernels, add_rmsnorm_matches_reference) {
  RBEE_REQUIRE_GPU();
  std::mt19937 rng(5);
  for (int n : {64, 172, 2048, 3000, 4096, 5120, 8192, 20000}) {
    const int rows = 3;
    auto x = normal(rng, static_cast<size_t>(rows * n), 2.0f);
    const auto y = normal(rng, x.size(), 1.0f);
    const auto w = normal(rng, static_cast<size_t>(n), 1.0f);
    std::vector<float> sum(x.size());
    for (size_t i = 0; i < x.size(); ++i) sum[i] = x[i] + y[i];
    const auto out = testing::add_rmsnorm(x, y, w, rows, 1e-5f);
    for (int r = 0; r < rows; ++r) {
      double ss = 0;
      for (int i = 0; i < n; ++i) ss += static_cast<double>(sum[r * n + i]) * sum[r * n + i];
      const double inv = 1.0 / std::sqrt(ss / n + 1e-5);
      for (int i = 0; i < n; ++i) {
        const size_t at = static_cast<size_t>(r * n + i);
        ASSERT_FLOAT_EQ(x[at], sum[at]);
        ASSERT_NEAR(out[at], sum[at] * inv * w[static_cast<size_t>(i)],
                    1e-5 * (1 + std::abs(out[at])));
      }
    }
  }
}

TEST(cuda_kernels, silu_mul_matches_reference) {
  RBEE_REQUIRE_GPU();
  std::mt19937 rng(6);
  const auto g = normal(rng, 1000, 3.0f), u = normal(rng, 1000, 1.0f);
  const auto out = testing::silu_mul(g, u);
  for (size_t i = 0; i < g.size(); ++i) {
    const double want = g[i] / (1.0 + std::exp(-static_cast<double>(g[i]))) * u[i];
    ASSERT_NEAR(out[i], want, 1e-5 * (1 + std::abs(want)));
  }
}

TEST(cuda_kernels, q8_activations_round_within_half_a_step) {
  RBEE_REQUIRE_GPU();
  std::mt19937 rng(7);
  const auto x = normal(rng, 32 * 20, 1.0f);
  const auto q = testing::quantize_q8_roundtrip(x);
  for (size_t b = 0; b < x.size() / 32; ++b) {
    float amax = 0;
    for (size_t j = 0; j < 32; ++j) amax = std::max(amax, std::abs(x[b * 32 + j]));
    for (size_t j = 0; j < 32; ++j)
      ASSERT_LE(std::abs(q[b * 32 + j] - x[b * 32 + j]), amax / 127 * 0.5001f);
  }
}

// Plain causal attention with rope over positions 0..n_tok-1 of one sequence.
std::vector<float> attention_reference(const testing::attention_case& c, std::vector<float> q,
                                       std::vector<float> k, const std::vector<float>& v,
                                       int n_tok) {
  const int hd = c.head_dim, q_dim = c.n_head * hd, kv_dim = c.n_head_kv * hd;
  auto rope = [&](float* head, int pos) {
    for (int i = 0; i < hd / 2; ++i) {
      const double theta = pos * std::pow(static_cast<double>(c.freq_base), -2.0 * i / hd);
      const float cs = static_cast<float>(std::cos(theta)),
                  sn = static_cast<float>(std::sin(theta));
      const int a = c.halves ? i : 2 * i, b = c.halves ? i + hd / 2 : 2 * i + 1;
      const float v0 = head[a], v1 = head[b];
      head[a] = v0 * cs - v1 * sn;
      head[b] = v0 * sn + v1 * cs;
    }
  };
  for (int t = 0; t < n_tok; ++t) {
    for (int h = 0; h < c.n_head; ++h) rope(&q[static_cast<size_t>(t * q_dim + h * hd)], t);
    for (int h = 0; h < c.n_head_kv; ++h) rope(&k[static_cast<size_t>(t * kv_dim + h * hd)], t);
  }
  std::vector<float> out(static_cast<size_t>(n_tok * q_dim));
  for (int t = 0; t < n_tok; ++t)
    for (int h = 0; h < c.n_head; ++h) {
      const int kvh = h / (c.n_head / c.n_head_kv);
      std::vector<double> s(static_cast<size_t>(t + 1));
      double mx = -1e300;
      for (int p = 0; p <= t; ++p) {
        double dot = 0;
        for (int d = 0; d < hd; ++d)
          dot += static_cast<double>(q[static_cast<size_t>(t * q_dim + h * hd + d)]) *
                 k[static_cast<size_t>(p * kv_dim + kvh * hd + d)];
        s[static_cast<size_t>(p)] = dot / std::sqrt(static_cast<double>(hd));
        mx = std::max(mx, s[static_cast<size_t>(p)]);
      }
      double sum = 0;
      for (auto& e : s) sum += (e = std::exp(e - mx));
      for (int d = 0; d < hd; ++d) {
        double o = 0;
        for (int p = 0; p <= t; ++p)
          o += s[static_cast<size_t>(p)] * v[static_cast<size_t>(p * kv_dim + kvh * hd + d)];
        out[static_cast<size_t>(t * q_dim + h * hd + d)] = static_cast<float>(o / sum);
      }
    }
  return out;
}

// Each case on a contiguous cache and on a paged one whose blocks run backwards, against the
// plain causal reference; the worst relative error is printed. `flash`: the first half's batch
// through flash attention. The caches hold K and V as fp16 (relative rounding 2^-11); flash
// attention rounds the queries and the softmax weights too.
void check_rope_attention(std::span<const testing::attention_case> cases, bool flash,
                          std::mt19937& rng) {
  for (const auto& contiguous : cases) {
    for (const bool paged : {false, true}) {
      testing::attention_case c = contiguous;
      c.paged = paged;
      c.flash = flash;
      const int n_tok = c.n_ctx;
      const auto q = normal(rng, static_cast<size_t>(n_tok * c.n_head * c.head_dim), 1.0f);
      const auto k = normal(rng, static_cast<size_t>(n_tok * c.n_head_kv * c.head_dim), 1.0f);
      const auto v = normal(rng, k.size(), 1.0f);
      const auto got = testing::rope_attention(c, q, k, v, n_tok);
      const auto want = attention_reference(c, q, k, v, n_tok);
      double worst = 0;
      for (size_t i = 0; i < want.size(); ++i) {
        worst = std::max(worst,
                         static_cast<double>(std::abs(got[i] - want[i]) / (1 + std::abs(want[i]))));
        ASSERT_NEAR(got[i], want[i], 1e-2 * (1 + std::abs(want[i])))
            << "head_dim " << c.head_dim << (paged ? " paged" : "") << " at " << i;
      }
      std::printf("%s attention head_dim %d%s: max error %.2e\n", flash ? "flash" : "split",
                  c.head_dim, paged ? " paged" : "", worst);
    }
  }
}

// Host code, no device needed: a batch's rows become tiles of consecutive rows of one
// sequence, at most flash_tile_rows each; a sequence that comes back later in the batch starts
// a new tile.
TEST(cuda_host, attention_tiles_cut_runs_of_one_sequence) {
  std::vector<int32_t> seq;
  for (const auto& [id, rows] :
       std::vector<std::pair<int32_t, int>>{{0, 150}, {1, 1}, {2, 1}, {3, 77}, {0, 2}, {4, 64}})
    seq.insert(seq.end(), static_cast<size_t>(rows), id);
  std::vector<attention_tile> tiles(seq.size());
  const int n = attention_tiles(seq.data(), static_cast<int>(seq.size()), tiles.data());
  const std::vector<std::pair<int, int>> want = {
      {0, 64}, {64, 64}, {128, 22}, {150, 1}, {151, 1}, {152, 64}, {216, 13}, {229, 2}, {231, 64}};
  ASSERT_EQ(n, static_cast<int>(want.size()));
  for (int i = 0; i < n; ++i) {
    EXPECT_EQ(tiles[static_cast<size_t>(i)].first_row, want[static_cast<size_t>(i)].first) << i;
    EXPECT_EQ(tiles[static_cast<size_t>(i)].n_rows, want[static_cast<size_t>(i)].second) << i;
  }
  EXPECT_EQ(attention_tiles(seq.data(), 0, tiles.data()), 0);
}

TEST(cuda_kernels, rope_and_split_attention_match_reference) {
  RBEE_REQUIRE_GPU();
  std::mt19937 rng(8);
  // Head sizes of stories260K (8), synth-tiny (32) and 7B (128); 600 positions span three
  // splits of the context. Sizes that are not whole 16-byte rows take the kernel's other
  // paths: 12 (keys one position per thread) and 6 (values too).
  const testing::attention_case cases[] = {
      {8, 4, 8, 64, false, 10000.0f},     {8, 4, 32, 600, false, 10000.0f},
      {4, 1, 128, 600, true, 1000000.0f}, {2, 2, 64, 300, true, 10000.0f},
      {4, 2, 12, 300, false, 10000.0f},   {4, 2, 6, 200, true, 10000.0f}};
  check_rope_attention(cases, /*flash=*/false, rng);
}

// Flash attention (prefill on tensor cores): the first half of each sequence's positions as
// one batch through flash_attention, the rest decoded one at a time by the split kernel over
// the cache the batch wrote.
TEST(cuda_kernels, rope_and_flash_attention_match_reference) {
  RBEE_REQUIRE_GPU();
  if (!flash_attention_supported(64)) GTEST_SKIP() << "needs compute capability 8.0";
  std::mt19937 rng(18);
  // Head sizes of Qwen2 (64), Phi-3 (96), Llama (128) and Gemma (256); 300 and 200 positions
  // leave the last tile of 64 rows part full.
  const testing::attention_case cases[] = {{8, 2, 64, 300, false, 10000.0f},
                                           {4, 4, 96, 300, true, 10000.0f},
                                           {4, 1, 128, 600, true, 1000000.0f},
                                           {2, 1, 256, 200, true, 10000.0f}};
  check_rope_attention(cases, /*flash=*/true, rng);
}

// Flash attention against the split kernel on the same caches and queries, in batches a
// server makes: several sequences (each its own tiles; a long one cut into tiles of 64 rows,
// single rows of decoding ones among them) at positions deep into their contexts, GQA,
// sliding windows and Gemma's soft-capping, paged and ring caches.
TEST(cuda_kernels, flash_attention_matches_split_attention_on_mixed_batches) {
  RBEE_REQUIRE_GPU();
  struct mixed_case {
    testing::attention_case shape;
    int window;
    float softcap;
  };
  const mixed_case cases[] = {{{8, 2, 64, 1024, false, 10000.0f}, 0, 0.0f},
                              {{8, 8, 96, 1024, false, 10000.0f}, 0, 0.0f},
                              {{8, 2, 128, 1024, false, 10000.0f}, 0, 0.0f},
                              {{8, 2, 128, 1024, false, 10000.0f}, 100, 0.0f},
                              {{4, 2, 256, 1024, false, 10000.0f}, 200, 50.0f},
                              {{4, 4, 80, 1024, false, 10000.0f}, 0, 30.0f}};
  // Histories and rows per sequence: a prefill chunk deep into its context (not tile-aligned),
  // two decoding sequences, a prompt from position 0, another chunk.
  const int history[] = {700, 900, 5, 0, 300};
  const int rows[] = {150, 1, 1, 77, 64};
  uint32_t seed = 40;
  for (const auto& mc : cases) {
    if (!flash_attention_supported(mc.shape.head_dim)) GTEST_SKIP() << "needs compute 8.0";
    for (const bool paged : {false, true}) {
      testing::attention_case c = mc.shape;
      c.paged = paged;
      const auto got =
          testing::split_and_flash_attention(c, history, rows, mc.window, mc.softcap, ++seed);
      double worst = 0;
      for (size_t i = 0; i < got.split.size(); ++i) {
        const double want = got.split[i];
        worst = std::max(worst, std::abs(got.flash[i] - want) / (1 + std::abs(want)));
        ASSERT_NEAR(got.flash[i], want, 5e-3 * (1 + std::abs(want)))
            << "head_dim " << c.head_dim << " window " << mc.window << " softcap " << mc.softcap
            << (paged ? " paged" : "") << " at " << i;
      }
      std::printf("flash vs split head_dim %d window %d softcap %g%s: max error %.2e\n", c.head_dim,
                  mc.window, mc.softcap, paged ? " paged" : "", worst);
    }
  }
}

// The draw a fresh sampler with this seed makes for its first stochastic choice.
// Up to `draws` distinct random tokens, in order of first draw (as the sampler lists them).
std::vector<token_id> distinct_tokens(std::mt19937& rng, int n_vocab, int draws) {
  std::vector<token_id> out;
  for (int i = 0; i < draws; ++i) {
    const token_id t = static_cast<token_id>(rng() % n_vocab);
    if (std::find(out.begin(), out.end(), t) == out.end()) out.push_back(t);
  }
  return out;
}

// The sampler's parameters for a kernel's knobs; the repeat penalty covers the whole history.
sampling_params params_of(const sampling_knobs& k, uint64_t seed) {
  sampling_params p = sampling_default_params();
  p.temperature = k.temperature;
  p.top_k = k.top_k;
  p.top_p = k.top_p;
  p.min_p = k.min_p;
  p.repeat_penalty = k.repeat_penalty;
  p.repeat_last_n = -1;
  p.seed = seed;
  return p;
}

double first_draw(uint64_t seed) {
  rng gen(seed);
  gen.next();
  return gen.uniform();
}

TEST(cuda_kernels, sampling_picks_what_the_cpu_sampler_picks) {
  RBEE_REQUIRE_GPU();
  std::mt19937 rng(9);
  // temperature, top_k, top_p, min_p, repeat_penalty
  const sampling_knobs grid[] = {
      {0.0f, 40, 0.95f, 0.05f, 1.0f}, {0.0f, 40, 0.95f, 0.05f, 1.3f},
      {0.8f, 40, 0.95f, 0.05f, 1.1f}, {1.0f, 0, 1.0f, 0.0f, 1.0f},
      {1.5f, 0, 0.9f, 0.0f, 1.1f},    {0.7f, 1, 1.0f, 0.0f, 1.0f},
      {1.0f, 5000, 0.5f, 0.0f, 1.0f}, {2.0f, 0, 1.0f, 0.01f, 1.2f},
      {0.9f, 64, 1.0f, 0.0f, 1.1f},   {0.9f, 65, 1.0f, 0.0f, 1.0f},
  };
  int trials = 0;
  for (const int n_vocab : {1000, 32000, 151936}) {
    for (int round = 0; round < 4; ++round) {
      auto logits = normal(rng, static_cast<size_t>(n_vocab), 2.0f);
      // Exact ties, so that the order of equal logits (ascending ids) matters.
      for (int i = 0; i < 50; ++i) logits[static_cast<size_t>(rng() % n_vocab)] = logits[0];
      const std::vector<token_id> penalized = distinct_tokens(rng, n_vocab, 64);
      for (const sampling_knobs& k : grid) {
        sampling_params p = params_of(k, rng());
        // Every other case adds OpenAI's presence penalty on the (once generated) penalized
        // tokens and a logit_bias on one of them and on one token that is not.
        std::vector<token_offset> offsets;
        if (trials % 2 == 1) {
          token_id other = 0;
          while (std::find(penalized.begin(), penalized.end(), other) != penalized.end()) ++other;
          p.presence_penalty = 0.7f;
          p.logit_bias = {{penalized[0], 1.5f}, {other, 3.0f}};
          for (const token_id t : penalized)
            offsets.push_back({t, (t == penalized[0] ? 1.5f : 0.0f) - 0.7f});
          offsets.push_back({other, 3.0f});
        }
        sampler cpu(p, n_vocab);
        const token_id want = cpu.sample(logits, penalized);
        sampling_step a{.knobs = k, .penalized = penalized, .offsets = offsets, .allowed = {}};
        a.knobs.uniform = first_draw(p.seed);
        EXPECT_EQ(testing::sample(logits, a), want)
            << "vocab " << n_vocab << " round " << round << " temperature " << k.temperature
            << " top_k " << k.top_k << " top_p " << k.top_p << " min_p " << k.min_p;
        ++trials;
      }
    }
  }
  EXPECT_EQ(trials, 3 * 4 * 10);
}

// Constrained decoding: with an allowed-token mask (one token, fewer than top_k, sparse,
// half) the device picks what the CPU sampler picks among the allowed tokens.
TEST(cuda_kernels, constrained_sampling_picks_what_the_cpu_sampler_picks) {
  RBEE_REQUIRE_GPU();
  std::mt19937 rng(11);
  const sampling_knobs grid[] = {
      {0.0f, 40, 0.95f, 0.05f, 1.0f}, {0.0f, 40, 0.95f, 0.05f, 1.3f},
      {0.8f, 40, 0.95f, 0.05f, 1.1f}, {1.0f, 0, 1.0f, 0.0f, 1.0f},
      {1.5f, 0, 0.9f, 0.0f, 1.1f},    {0.9f, 64, 1.0f, 0.0f, 1.0f},
  };
  for (const int n_vocab : {1000, 32000}) {
    for (const int n_allowed : {1, 7, 300, n_vocab / 2}) {
      auto logits = normal(rng, static_cast<size_t>(n_vocab), 2.0f);
      std::vector<uint64_t> allowed(static_cast<size_t>(n_vocab + 63) / 64);
      for (int set = 0; set < n_allowed;) {
        const auto t = static_cast<size_t>(rng() % n_vocab);
        if (allowed[t / 64] >> (t % 64) & 1) continue;
        allowed[t / 64] |= uint64_t{1} << (t % 64);
        ++set;
      }
      const std::vector<token_id> penalized = distinct_tokens(rng, n_vocab, 64);
      for (const sampling_knobs& k : grid) {
        const sampling_params p = params_of(k, rng());
        sampler cpu(p, n_vocab);
        const token_id want = cpu.sample(logits, penalized, 0, allowed);
        ASSERT_TRUE(allowed[static_cast<size_t>(want) / 64] >> (want % 64) & 1);
        sampling_step a{.knobs = k, .penalized = penalized, .offsets = {}, .allowed = allowed};
        a.knobs.uniform = first_draw(p.seed);
        EXPECT_EQ(testing::sample(logits, a), want)
            << "vocab " << n_vocab << " allowed " << n_allowed << " temperature " << k.temperature
            << " top_k " << k.top_k;
      }
    }
  }
}

}  // namespace
}  // namespace rbee::engine::cuda

#else
TEST(cuda_kernels, skipped_without_cuda) {
  GTEST_SKIP() << "built without the CUDA backend";
}
#endif
