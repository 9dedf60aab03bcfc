// Fast CPU kernels against the plain reference (engine/quant.h): every weight type at every
// instruction-set level this CPU has, on fresh random inputs of several shapes.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "engine/cpu/dispatch.h"
#include "engine/cpu/kernels.h"
#include "engine/kv_block_size.h"
#include "engine/quant.h"

namespace rbee::engine::cpu {
namespace {

std::vector<isa> levels() {
  std::vector<isa> out;
  for (int l = 0; l <= static_cast<int>(detected_isa()); ++l) out.push_back(static_cast<isa>(l));
  return out;
}

// Restores the active level when a test ends.
struct isa_scope {
  explicit isa_scope(isa level) : previous(set_active_isa(level)) {}
  ~isa_scope() { set_active_isa(previous); }
  isa previous;
};

struct weights {
  std::vector<uint8_t> bytes;
  int64_t n_rows, n_cols;
};

weights random_weights(std::mt19937& rng, tensor_type t, int64_t n_rows, int64_t n_cols) {
  std::normal_distribution<float> dist(0.0f, 0.02f);
  weights w{std::vector<uint8_t>(row_size(t, n_cols) * n_rows), n_rows, n_cols};
  std::vector<float> row(n_cols);
  for (int64_t r = 0; r < n_rows; ++r) {
    for (auto& v : row) v = dist(rng);
    quantize_row(t, row.data(), w.bytes.data() + r * row_size(t, n_cols), n_cols);
  }
  return w;
}

std::vector<float> random_activations(std::mt19937& rng, int64_t n) {
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(n);
  for (auto& v : x) v = dist(rng);
  return x;
}

// Relative RMS error of y against dot_reference over all outputs. Quantized weights multiply
// int8 activations (one scale per 32 or per 256 values), which costs ~0.5-1 % of the result;
// float weights only differ in summation order.
double bound_for(tensor_type t) {
  switch (t) {
    case tensor_type::f32:
    case tensor_type::f16:
    case tensor_type::bf16:
      return 1e-5;
    case tensor_type::q2_k:
    case tensor_type::q3_k:
    case tensor_type::q4_k:
    case tensor_type::q5_k:
    case tensor_type::q6_k:
    case tensor_type::iq4_xs:
      return 0.02;
    default:
      return 0.012;
  }
}

const tensor_type all_types[] = {tensor_type::f32,  tensor_type::f16,  tensor_type::bf16,
                                 tensor_type::q4_0, tensor_type::q4_1, tensor_type::q5_0,
                                 tensor_type::q5_1, tensor_type::q8_0, tensor_type::iq4_nl,
                                 tensor_type::q2_k, tensor_type::q3_k, tensor_type::q4_k,
                                 tensor_type::q5_k, tensor_type::q6_k, tensor_type::iq4_xs};

// A product of `rows` weight rows of `cols` columns with `tokens` activation rows.
struct shape {
  int64_t rows, cols, tokens;
};

TEST(cpu_matmul, matches_reference_for_every_type_level_and_shape) {
  const uint32_t seed = std::random_device{}();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937 rng(seed);
  thread_pool pool(2);
  // Odd block counts (96, 800 columns) only for the 32-element types.
  const shape shapes[] = {{37, 256, 1}, {64, 512, 3}, {24, 768, 8}, {19, 1024, 17},
                          {8, 256, 9},  {33, 96, 5},  {6, 800, 10}, {40, 800, 1}};
  for (const isa level : levels()) {
    const isa_scope scope(level);
    for (const tensor_type t : all_types) {
      ASSERT_TRUE(matmul_supports(t));
      double worst = 0;
      for (const shape& s : shapes) {
        if (s.cols % traits_of(t).block_size != 0) continue;
        const weights w = random_weights(rng, t, s.rows, s.cols);
        const std::vector<float> x = random_activations(rng, s.cols * s.tokens);
        std::vector<float> y(s.rows * s.tokens, NAN);
        std::vector<uint8_t> scratch(matmul_scratch_bytes(t, s.cols, s.tokens) + 64);
        matmul(pool, t, w.bytes.data(), s.rows, s.cols, x.data(), s.tokens, y.data(),
               scratch.data());
        double num = 0, den = 0;
        for (int64_t tok = 0; tok < s.tokens; ++tok) {
          for (int64_t r = 0; r < s.rows; ++r) {
            const double want = dot_reference(t, w.bytes.data() + r * row_size(t, s.cols),
                                              x.data() + tok * s.cols, s.cols);
            const double got = y[tok * s.rows + r];
            ASSERT_TRUE(std::isfinite(got));
            num += (got - want) * (got - want);
            den += want * want;
          }
        }
        const double err = std::sqrt(num / den);
        EXPECT_LT(err, bound_for(t)) << to_string(level) << " " << to_string(t) << " " << s.rows
                                     << "x" << s.cols << " tokens " << s.tokens;
        worst = std::max(worst, err);
      }
      std::printf("  %-6s %-5s worst relative RMS error vs reference %.2e\n",
                  std::string(to_string(level)).c_str(), std::string(to_string(t)).c_str(), worst);
    }
  }
}

// Activations whose every block of 32 holds ±127 steps of one power-of-two step, all values
// whole steps: their int8 form is exact, so the kernels must equal the reference
// dequantize-then-dot up to float rounding (no activation error to hide a wrong level,
// scale or offset).
TEST(cpu_matmul, equals_dequantize_then_dot_when_activations_are_exact) {
  const uint32_t seed = std::random_device{}();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937 rng(seed);
  thread_pool pool(2);
  const int64_t rows = 29, cols = 1024;
  const float step = 1.0f / 64;
  std::uniform_int_distribution<int> level(-127, 127);
  for (const isa level_set : levels()) {
    const isa_scope scope(level_set);
    for (const tensor_type t : all_types) {
      if (t == tensor_type::f32 || t == tensor_type::f16 || t == tensor_type::bf16) continue;
      for (const int64_t tokens : {1, 5}) {
        std::vector<float> x(cols * tokens);
        for (int64_t i = 0; i < cols * tokens; ++i)
          x[i] = step * static_cast<float>(i % 32 == 7 ? (i % 64 < 32 ? 127 : -127) : level(rng));
        const weights w = random_weights(rng, t, rows, cols);
        std::vector<float> y(rows * tokens);
        std::vector<uint8_t> scratch(matmul_scratch_bytes(t, cols, tokens));
        matmul(pool, t, w.bytes.data(), rows, cols, x.data(), tokens, y.data(), scratch.data());
        double num = 0, den = 0;
        for (int64_t tok = 0; tok < tokens; ++tok) {
          for (int64_t r = 0; r < rows; ++r) {
            const double want = dot_reference(t, w.bytes.data() + r * row_size(t, cols),
                                              x.data() + tok * cols, cols);
            const double got = y[tok * rows + r];
            num += (got - want) * (got - want);
            den += want * want;
          }
        }
        EXPECT_LT(std::sqrt(num / den), 1e-5)
            << to_string(level_set) << " " << to_string(t) << " tokens " << tokens;
      }
    }
  }
}

// The SIMD levels quantize activations exactly as the scalar level does, so their integer
// dot products are identical and results differ only by float summation order: a much
// tighter check than the comparison with the fp32 reference above.
TEST(cpu_matmul, simd_levels_agree_with_the_scalar_level) {
  const uint32_t seed = std::random_device{}();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937 rng(seed);
  thread_pool pool(2);
  const int64_t rows = 21, cols = 1536, tokens = 11;
  for (const tensor_type t : all_types) {
    const weights w = random_weights(rng, t, rows, cols);
    const std::vector<float> x = random_activations(rng, cols * tokens);
    std::vector<uint8_t> scratch(matmul_scratch_bytes(t, cols, tokens));
    std::vector<float> want(rows * tokens);
    {
      const isa_scope scope(isa::scalar);
      matmul(pool, t, w.bytes.data(), rows, cols, x.data(), tokens, want.data(), scratch.data());
    }
    for (const isa level : levels()) {
      const isa_scope scope(level);
      std::vector<float> got(rows * tokens);
      matmul(pool, t, w.bytes.data(), rows, cols, x.data(), tokens, got.data(), scratch.data());
      double num = 0, den = 0;
      for (size_t i = 0; i < got.size(); ++i) {
        num += (got[i] - want[i]) * (got[i] - want[i]);
        den += want[i] * want[i];
      }
      EXPECT_LT(std::sqrt(num / den), 1e-5) << to_string(level) << " " << to_string(t);
    }
  }
}

TEST(cpu_matmul, single_thread_pool_and_many_rows_give_the_same_result) {
  const uint32_t seed = std::random_device{}();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937 rng(seed);
  thread_pool one(1), two(2);
  const int64_t rows = 1000, cols = 512, tokens = 2;
  const weights w = random_weights(rng, tensor_type::q4_0, rows, cols);
  const std::vector<float> x = random_activations(rng, cols * tokens);
  std::vector<uint8_t> scratch(matmul_scratch_bytes(tensor_type::q4_0, cols, tokens));
  std::vector<float> y1(rows * tokens), y2(rows * tokens);
  matmul(one, tensor_type::q4_0, w.bytes.data(), rows, cols, x.data(), tokens, y1.data(),
         scratch.data());
  matmul(two, tensor_type::q4_0, w.bytes.data(), rows, cols, x.data(), tokens, y2.data(),
         scratch.data());
  EXPECT_EQ(y1, y2);  // rows are independent: splitting them changes nothing
}

// One run over several weights (each activation format once, small work on the calling
// thread) gives exactly what one matmul per weight gives.
TEST(cpu_matmul, matmul_many_matches_one_matmul_per_weight) {
  const uint32_t seed = std::random_device{}();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937 rng(seed);
  thread_pool pool(2);
  const int64_t cols = 512;
  const std::vector<tensor_type> types = {tensor_type::q4_0, tensor_type::q8_0, tensor_type::q6_k,
                                          tensor_type::f16};
  const std::vector<int64_t> rows = {37, 8, 300, 5};
  std::vector<weights> ws;
  for (size_t i = 0; i < types.size(); ++i)
    ws.push_back(random_weights(rng, types[i], rows[i], cols));
  for (const isa level : levels()) {
    const isa_scope scope(level);
    for (const int64_t tokens : {1, 2, 3, 11}) {
      const std::vector<float> x = random_activations(rng, cols * tokens);
      std::vector<uint8_t> scratch(matmul_scratch_bytes(types, cols, tokens));
      std::vector<std::vector<float>> want(types.size()), got(types.size());
      std::vector<matmul_op> ops;
      for (size_t i = 0; i < types.size(); ++i) {
        want[i].resize(rows[i] * tokens);
        got[i].resize(rows[i] * tokens);
        matmul(pool, types[i], ws[i].bytes.data(), rows[i], cols, x.data(), tokens, want[i].data(),
               scratch.data());
        ops.push_back({types[i], ws[i].bytes.data(), rows[i], got[i].data()});
      }
      matmul_many(pool, ops, cols, x.data(), tokens, scratch.data());
      for (size_t i = 0; i < types.size(); ++i)
        EXPECT_EQ(got[i], want[i])
            << to_string(level) << " " << to_string(types[i]) << " " << tokens << " tokens";
    }
  }
}

// q4_0, q8_0 and q4_k weights repacked in groups of 16 rows (weight_layout::rows16) at every level:
// against the reference, and against the file layout's kernel of the same level (exactly at the
// scalar level, whose rows16 kernel keeps that kernel's arithmetic). Row counts with and
// without a partial group, odd block counts (the activations' padding), token counts that fill
// tiles and leave tails, and a pool that splits the rows between its threads.
TEST(cpu_matmul, repacked_rows16_weights_match_the_file_layout) {
  const uint32_t seed = std::random_device{}();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937 rng(seed);
  thread_pool pool(2);
  // Odd block counts (96 columns) only for the 32-column types.
  const shape shapes[] = {{16, 256, 1}, {48, 96, 8},  {37, 512, 11},
                          {5, 64, 3},   {48, 768, 8}, {1000, 512, 2}};
  for (const isa level : levels()) {
    const isa_scope scope(level);
    for (const tensor_type t : {tensor_type::q4_0, tensor_type::q8_0, tensor_type::q4_k}) {
      // The error against the reference over all shapes: that of a few outputs alone (5 x 64)
      // can exceed the bound by chance, the file layout's kernel's too.
      double num = 0, den = 0;
      for (const shape& s : shapes) {
        if (s.cols % traits_of(t).block_size != 0) continue;
        SCOPED_TRACE(::testing::Message()
                     << to_string(level) << " " << to_string(t) << " " << s.rows << "x" << s.cols
                     << ", " << s.tokens << " tokens");
        const weights w = random_weights(rng, t, s.rows, s.cols);
        std::vector<uint8_t> packed(w.bytes.size());
        repack_rows16(t, w.bytes.data(), s.rows, s.cols, packed.data());
        const std::vector<float> x = random_activations(rng, s.cols * s.tokens);
        std::vector<uint8_t> scratch(matmul_scratch_bytes(t, s.cols, s.tokens) + 64);
        std::vector<float> y_file(s.rows * s.tokens), y_rows16(s.rows * s.tokens, NAN);
        matmul(pool, t, w.bytes.data(), s.rows, s.cols, x.data(), s.tokens, y_file.data(),
               scratch.data());
        matmul(pool, t, packed.data(), s.rows, s.cols, x.data(), s.tokens, y_rows16.data(),
               scratch.data(), weight_layout::rows16);
        if (level == isa::scalar) {
          EXPECT_EQ(y_rows16, y_file);
          continue;
        }
        for (int64_t tok = 0; tok < s.tokens; ++tok) {
          for (int64_t r = 0; r < s.rows; ++r) {
            const double want = dot_reference(t, w.bytes.data() + r * row_size(t, s.cols),
                                              x.data() + tok * s.cols, s.cols);
            const double got = y_rows16[tok * s.rows + r];
            ASSERT_TRUE(std::isfinite(got)) << "row " << r << " token " << tok;
            // Both layouts multiply the same int8 activations: only float rounding differs.
            ASSERT_NEAR(got, y_file[tok * s.rows + r], 1e-4 * (1 + std::fabs(want)))
                << "row " << r << " token " << tok;
            num += (got - want) * (got - want);
            den += want * want;
          }
        }
      }
      if (level != isa::scalar) {
        EXPECT_LT(std::sqrt(num / den), bound_for(t)) << to_string(level) << " " << to_string(t);
      }
    }
  }
}

TEST(cpu_thread_pool, runs_every_task_exactly_once) {
  thread_pool pool(3);
  EXPECT_EQ(pool.size(), 3);
  std::vector<std::atomic<int>> hits(257);
  std::atomic<int> bad_thread{0};
  for (int round = 0; round < 200; ++round) {
    const int n = 1 + round % 257;
    pool.run(n, [&](int task, int thread) {
      hits[task].fetch_add(1, std::memory_order_relaxed);
      if (thread < 0 || thread >= 3) bad_thread.fetch_add(1);
    });
  }
  int total = 0;
  for (auto& h : hits) total += h.load();
  int want = 0;
  for (int round = 0; round < 200; ++round) want += 1 + round % 257;
  EXPECT_EQ(total, want);
  EXPECT_EQ(bad_thread.load(), 0);
  pool.run(0, [&](int, int) { bad_thread.fetch_add(1); });
  EXPECT_EQ(bad_thread.load(), 0);
}

TEST(cpu_dequantize_row, matches_reference) {
  const uint32_t seed = std::random_device{}();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937 rng(seed);
  for (const isa level : levels()) {
    const isa_scope scope(level);
    for (const tensor_type t : all_types) {
      const weights w = random_weights(rng, t, 1, 512);
      std::vector<float> fast(512), ref(512);
      dequantize_row(t, w.bytes.data(), fast.data(), 512);
      dequantize_row_reference(t, w.bytes.data(), ref.data(), 512);
      EXPECT_EQ(fast, ref) << to_string(level) << " " << to_string(t);
    }
  }
}

TEST(cpu_helpers, match_plain_formulas_at_every_level) {
  const uint32_t seed = std::random_device{}();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937 rng(seed);
  const int64_t n = 203;  // not a multiple of any vector width
  const std::vector<float> a = random_activations(rng, n), b = random_activations(rng, n);
  const std::vector<float> w = random_activations(rng, n);
  std::vector<fp16_t> a16(n);
  for (int64_t i = 0; i < n; ++i) a16[i] = fp32_to_fp16(a[i]);

  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += a[i] * a[i];
  const double inv_rms = 1 / std::sqrt(ss / n + 1e-5);

  for (const isa level : levels()) {
    const isa_scope scope(level);
    SCOPED_TRACE(std::string(to_string(level)));
    std::vector<float> out(n);
    rmsnorm(a.data(), w.data(), out.data(), n, 1e-5f);
    for (int64_t i = 0; i < n; ++i) ASSERT_NEAR(out[i], a[i] * inv_rms * w[i], 1e-4);

    std::vector<float> sm = a;
    softmax(sm.data(), n);
    double max = a[0], total = 0;
    for (float v : a) max = std::max<double>(max, v);
    for (float v : a) total += std::exp(v - max);
    for (int64_t i = 0; i < n; ++i) ASSERT_NEAR(sm[i], std::exp(a[i] - max) / total, 1e-6);

    silu_mul(a.data(), b.data(), out.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_NEAR(out[i], a[i] / (1 + std::exp(-a[i])) * b[i], 1e-5 * (1 + std::fabs(b[i])));
    }

    std::vector<fp16_t> h(n);
    f32_to_f16(a.data(), h.data(), n);
    EXPECT_EQ(h, a16);
    std::vector<float> back(n);
    f16_to_f32(h.data(), back.data(), n);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(back[i], fp16_to_fp32(a16[i]));
  }
}

// The attention tile kernels (dispatch.h) of f16 and f32 caches against the plain formulas:
// query head counts that fill the kernels' head groups and leave tails, head sizes that are
// and are not whole vectors (80: five 512-bit vectors; 5: odd), part-tiles of values and a
// score stride wider than the rows.
TEST(cpu_attention_tiles, match_plain_formulas_at_every_level) {
  const uint32_t seed = std::random_device{}();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937 rng(seed);
  for (const int hd : {64, 8, 12, 6, 80, 5}) {
    for (const int n_q : {1, 3, 4, 7, 8, 9, 13}) {
      SCOPED_TRACE(::testing::Message() << "head size " << hd << ", " << n_q << " query heads");
      const int n_rows = 11;
      const int64_t p_stride = 19;
      const std::vector<float> q = random_activations(rng, int64_t{n_q} * hd);
      const std::vector<float> keys = random_activations(rng, int64_t{hd} * kv_block_size);
      const std::vector<float> values = random_activations(rng, int64_t{n_rows} * hd);
      const std::vector<float> p = random_activations(rng, n_q * p_stride);
      const std::vector<float> out0 = random_activations(rng, int64_t{n_q} * hd);
      for (const bool f16 : {true, false}) {
        // The cache's elements, and the values the kernels see (rounded to fp16 or not).
        std::vector<uint8_t> k_bytes(keys.size() * (f16 ? 2 : 4)),
            v_bytes(values.size() * (f16 ? 2 : 4));
        const auto store = [&](const std::vector<float>& from, std::vector<uint8_t>& to) {
          std::vector<float> seen(from.size());
          for (size_t i = 0; i < from.size(); ++i) {
            if (f16) {
              const fp16_t h = fp32_to_fp16(from[i]);
              reinterpret_cast<fp16_t*>(to.data())[i] = h;
              seen[i] = fp16_to_fp32(h);
            } else {
              reinterpret_cast<float*>(to.data())[i] = seen[i] = from[i];
            }
          }
          return seen;
        };
        const std::vector<float> k_seen = store(keys, k_bytes), v_seen = store(values, v_bytes);
        for (const isa level : levels()) {
          const isa_scope scope(level);
          SCOPED_TRACE(std::string(to_string(level)) + (f16 ? " f16" : " f32"));
          const kernel_table& kt = active_kernels();
          std::vector<float> scores(static_cast<size_t>(n_q) * kv_block_size);
          (f16 ? kt.tile_scores_f16 : kt.tile_scores_f32)(k_bytes.data(), q.data(), n_q, hd,
                                                          scores.data());
          std::vector<float> out = out0;
          (f16 ? kt.weighted_rows_f16 : kt.weighted_rows_f32)(
              p.data(), p_stride, n_q, v_bytes.data(), n_rows, hd, out.data());
          for (int g = 0; g < n_q; ++g) {
            for (int j = 0; j < kv_block_size; ++j) {
              double want = 0;
              for (int d = 0; d < hd; ++d) want += q[g * hd + d] * k_seen[d * kv_block_size + j];
              ASSERT_NEAR(scores[g * kv_block_size + j], want, 1e-4 * hd)
                  << "score " << g << "," << j;
            }
            for (int d = 0; d < hd; ++d) {
              double want = out0[g * hd + d];
              for (int j = 0; j < n_rows; ++j) want += p[g * p_stride + j] * v_seen[j * hd + d];
              ASSERT_NEAR(out[g * hd + d], want, 1e-4 * n_rows) << "output " << g << "," << d;
            }
          }
        }
      }
    }
  }
}

TEST(cpu_rope, rotates_pairs_by_position_dependent_angles) {
  const int heads = 2, dim = 8, pos = 3;
  const float base = 10000.0f;
  std::vector<float> x(heads * dim), y;
  for (size_t i = 0; i < x.size(); ++i) x[i] = 0.1f * static_cast<float>(i + 1);
  for (const bool neox : {false, true}) {
    y = x;
    rope(y.data(), heads, dim, pos, base, neox);
    for (int h = 0; h < heads; ++h) {
      for (int i = 0; i < dim / 2; ++i) {
        const double theta = pos * std::pow(base, -2.0 * i / dim);
        const int i0 = h * dim + (neox ? i : 2 * i);
        const int i1 = h * dim + (neox ? i + dim / 2 : 2 * i + 1);
        EXPECT_NEAR(y[i0], x[i0] * std::cos(theta) - x[i1] * std::sin(theta), 1e-6);
        EXPECT_NEAR(y[i1], x[i0] * std::sin(theta) + x[i1] * std::cos(theta), 1e-6);
      }
    }
  }
  y = x;
  rope(y.data(), heads, dim, 0, base, false);
  EXPECT_EQ(y, x);  // position 0 is the identity
}

TEST(cpu_isa, forcing_a_level_is_clamped_to_the_cpu) {
  const isa_scope scope(isa::scalar);
  EXPECT_EQ(active_isa(), isa::scalar);
  set_active_isa(isa::avx512);
  EXPECT_EQ(active_isa(), detected_isa() < isa::avx512 ? detected_isa() : isa::avx512);
  std::printf("  detected instruction set: %s\n", std::string(to_string(detected_isa())).c_str());
}

}  // namespace
}  // namespace rbee::engine::cpu
