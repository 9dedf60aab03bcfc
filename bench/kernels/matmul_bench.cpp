// Matmul speed at the TinyLlama FFN shape (5632 x 2048): decode (1 token) in GB/s of weights
// streamed, prefill (128 tokens) in GFLOP/s. Weights cycle through copies larger than the
// last-level cache so decode reads memory as a real model does.
//   matmul_bench [--benchmark_filter=...]   (threads: RBEE_BENCH_THREADS, default 2)
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "engine/cpu/kernels.h"
#include "engine/quant.h"

namespace {

using rbee::engine::row_size;
using rbee::engine::tensor_type;
namespace cpu = rbee::engine::cpu;

constexpr int64_t n_rows = 5632, n_cols = 2048;
constexpr size_t copies_bytes = size_t{256} << 20;  // well past the L3

int bench_threads() {
  const char* env = std::getenv("RBEE_BENCH_THREADS");
  return env ? std::atoi(env) : 2;
}

cpu::thread_pool& pool() {
  static cpu::thread_pool p(bench_threads());
  return p;
}

struct matrices {
  std::vector<std::vector<uint8_t>> copies;
};

const matrices& weights_of(tensor_type t) {
  static std::vector<std::pair<tensor_type, matrices>> cache;
  for (auto& [type, m] : cache) {
    if (type == t) return m;
  }
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.0f, 0.02f);
  const size_t bytes = row_size(t, n_cols) * n_rows;
  std::vector<uint8_t> one(bytes);
  std::vector<float> row(n_cols);
  for (int64_t r = 0; r < n_rows; ++r) {
    for (auto& v : row) v = dist(rng);
    rbee::engine::quantize_row(t, row.data(), one.data() + r * row_size(t, n_cols), n_cols);
  }
  matrices m;
  const size_t n_copies = std::max<size_t>(1, copies_bytes / bytes);
  for (size_t i = 0; i < n_copies; ++i) m.copies.push_back(one);
  cache.emplace_back(t, std::move(m));
  return cache.back().second;
}

void run(benchmark::State& state, tensor_type t, int64_t n_tokens) {
  const matrices& w = weights_of(t);
  std::vector<float> x(n_cols * n_tokens, 0.5f), y(n_rows * n_tokens);
  std::vector<uint8_t> scratch(cpu::matmul_scratch_bytes(t, n_cols, n_tokens));
  size_t i = 0;
  for (auto _ : state) {
    const auto& m = w.copies[i++ % w.copies.size()];
    cpu::matmul(pool(), t, m.data(), n_rows, n_cols, x.data(), n_tokens, y.data(), scratch.data());
    benchmark::DoNotOptimize(y.data());
  }
  const double calls = static_cast<double>(state.iterations());
  // Rates are per real time, or per CPU time with one thread (UseRealTime below): on a
  // shared machine the CPU time of a single thread shows the kernel's own speed.
  if (n_tokens == 1) {
    state.counters["GB/s"] = benchmark::Counter(
        calls * static_cast<double>(w.copies[0].size()) / 1e9, benchmark::Counter::kIsRate);
  } else {
    state.counters["GFLOP/s"] = benchmark::Counter(calls * 2.0 * n_rows * n_cols * n_tokens / 1e9,
                                                   benchmark::Counter::kIsRate);
  }
  state.SetLabel(std::string(cpu::to_string(cpu::active_isa())));
}

void register_all() {
  const std::pair<const char*, tensor_type> types[] = {
      {"q4_0", tensor_type::q4_0},    {"q4_k", tensor_type::q4_k}, {"q5_k", tensor_type::q5_k},
      {"q6_k", tensor_type::q6_k},    {"q8_0", tensor_type::q8_0}, {"f16", tensor_type::f16},
      {"q2_k", tensor_type::q2_k},    {"q3_k", tensor_type::q3_k}, {"iq4_nl", tensor_type::iq4_nl},
      {"iq4_xs", tensor_type::iq4_xs}};
  for (const auto& [name, t] : types) {
    for (const int64_t tokens : {int64_t{1}, int64_t{128}}) {
      const std::string label = (tokens == 1 ? "decode/" : "prefill128/") + std::string(name);
      auto* b = benchmark::RegisterBenchmark(
          label.c_str(), [t = t, tokens](benchmark::State& s) { run(s, t, tokens); });
      b->MeasureProcessCPUTime()->Unit(tokens == 1 ? benchmark::kMicrosecond
                                                   : benchmark::kMillisecond);
      if (bench_threads() > 1) b->UseRealTime();
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
