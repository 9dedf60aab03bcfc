// Batching: one batched prefill equals token-by-token decoding, several sequences in one
// batch equal each sequence run alone, and the context limits are enforced.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <new>

#include <gtest/gtest.h>

#include "batched_sampling_case.h"
#include "engine/cpu/kernels.h"
#include "engine/engine.h"

// Counts heap allocations of this test binary, to show that decode does not allocate. The
// replacement new/delete pair is built on malloc/free, which GCC cannot see through.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
std::atomic<long> allocations{0};

void* operator new(std::size_t n) {
  allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}

namespace rbee::engine {
namespace {

const std::string models_dir = RBEE_SHARED_MODELS_DIR;

double relative_error(std::span<const float> a, std::span<const float> b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    den += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}

// Each batching test runs twice. With the AVX2 kernels (or scalar ones on a CPU without
// AVX2), a matmul of many tokens computes each token exactly as a matmul of one does, so the
// batching logic itself is checked to float rounding. With the CPU's best kernels the
// multi-token (gemm) and single-token (matvec) paths may quantize or round activations
// differently (AVX-512 does), so that run allows quantization-sized differences.
struct mode {
  bool same_kernels;
  double bound() const { return same_kernels ? 1e-4 : 2e-2; }
};

class isa_guard {
 public:
  explicit isa_guard(mode m)
      : saved_(cpu::set_active_isa(m.same_kernels ? cpu::isa::avx2 : cpu::detected_isa())) {}
  ~isa_guard() { cpu::set_active_isa(saved_); }

 private:
  cpu::isa saved_;
};

model_ptr load(const std::string& file, int n_threads = 2) {
  model_params mp = model_default_params();
  mp.n_threads = n_threads;
  return model_load(models_dir + "/" + file, mp);
}

std::vector<std::vector<float>> one_by_one(model& m, const std::vector<token_id>& tokens) {
  context_params cp = context_default_params();
  cp.n_ctx = 64;
  auto ctx = context_create(m, cp);
  std::vector<std::vector<float>> out;
  for (size_t i = 0; i < tokens.size(); ++i) {
    const batch_entry e{tokens[i], static_cast<int32_t>(i), 0, true};
    decode(*ctx, std::span(&e, 1));
    const auto l = logits(*ctx, 0);
    out.emplace_back(l.begin(), l.end());
  }
  return out;
}

class batching : public testing::TestWithParam<std::tuple<std::string, mode>> {};

TEST_P(batching, prefill_equals_token_by_token) {
  const auto& [file, md] = GetParam();
  const isa_guard isa(md);
  const double same = md.bound();
  auto m = load(file);
  const auto tokens = tokenize(*m, "Once upon a time, there was a little dog", true);
  const auto expected = one_by_one(*m, tokens);
  context_params cp = context_default_params();
  cp.n_ctx = 64;
  auto ctx = context_create(*m, cp);
  std::vector<batch_entry> batch;
  for (size_t i = 0; i < tokens.size(); ++i)
    batch.push_back({tokens[i], static_cast<int32_t>(i), 0, true});
  decode(*ctx, batch);
  for (size_t i = 0; i < tokens.size(); ++i)
    EXPECT_LT(relative_error(logits(*ctx, static_cast<int>(i)), expected[i]), same)
        << "position " << i;
}

TEST_P(batching, sequences_in_one_batch_equal_each_alone) {
  const auto& [file, md] = GetParam();
  const isa_guard isa(md);
  const double same = md.bound();
  auto m = load(file);
  const std::vector<std::vector<token_id>> prompts{
      tokenize(*m, "Once upon a time, there was", true),
      tokenize(*m, "The cat sat", true),
      tokenize(*m, "Lily and Tom went to the park to play", true),
  };
  std::vector<std::vector<std::vector<float>>> alone;
  for (const auto& p : prompts) alone.push_back(one_by_one(*m, p));

  context_params cp = context_default_params();
  cp.n_ctx = 64;
  cp.n_seq = 3;
  auto ctx = context_create(*m, cp);
  // Three rounds that cut each prompt differently, so sequences sit at different positions
  // and mix prefill with single-token steps (sequence 2 starts late).
  const std::vector<std::vector<int>> cuts{{3, 1, 0}, {1, 2, 4}, {100, 100, 100}};
  std::vector<int> done(prompts.size(), 0);
  for (const auto& cut : cuts) {
    std::vector<batch_entry> batch;
    std::vector<std::pair<int, int>> who;  // (seq, pos) per entry
    for (int s = 0; s < 3; ++s) {
      const auto& p = prompts[static_cast<size_t>(s)];
      const int end = std::min(static_cast<int>(p.size()),
                               done[static_cast<size_t>(s)] + cut[static_cast<size_t>(s)]);
      for (int pos = done[static_cast<size_t>(s)]; pos < end; ++pos) {
        batch.push_back({p[static_cast<size_t>(pos)], pos, s, true});
        who.emplace_back(s, pos);
      }
      done[static_cast<size_t>(s)] = end;
    }
    ASSERT_FALSE(batch.empty());
    decode(*ctx, batch);
    for (size_t i = 0; i < who.size(); ++i) {
      const auto [s, pos] = who[i];
      EXPECT_LT(relative_error(logits(*ctx, static_cast<int>(i)),
                               alone[static_cast<size_t>(s)][static_cast<size_t>(pos)]),
                same)
          << "sequence " << s << " position " << pos;
    }
  }
  // A cleared sequence starts over and gives the same logits as at first.
  sequence_clear(*ctx, 1);
  const batch_entry e{prompts[1][0], 0, 1, true};
  decode(*ctx, std::span(&e, 1));
  EXPECT_LT(relative_error(logits(*ctx, 0), alone[1][0]), same);
}

INSTANTIATE_TEST_SUITE_P(shared_models, batching,
                         testing::Combine(testing::Values("stories260K.gguf",
                                                          "synth-tiny-Q4_K_M.gguf",
                                                          "synth-tiny-Q8_0.gguf"),
                                          testing::Values(mode{true}, mode{false})),
                         [](const auto& info) {
                           std::string name = std::get<0>(info.param);
                           name = name.substr(0, name.find('.'));
                           for (char& c : name)
                             if (c == '-') c = '_';
                           return name + (std::get<1>(info.param).same_kernels ? "_same_kernels"
                                                                               : "_best_kernels");
                         });

TEST(decode_loop, does_not_allocate_after_the_first_batch_of_a_size) {
  auto m = load("synth-tiny-Q4_K_M.gguf");
  context_params cp = context_default_params();
  cp.n_ctx = 64;
  cp.n_seq = 2;
  auto ctx = context_create(*m, cp);
  sampling_params sp = sampling_default_params();
  sp.presence_penalty = 0.5f;
  sp.frequency_penalty = 0.25f;
  sp.logit_bias = {{5, -100.0f}, {7, 2.0f}};
  sampler s(sp, model_get_info(*m).n_vocab);
  token_logprobs lp;
  std::vector<token_id> history{1, 2, 3, 4};
  history.reserve(64);
  const std::vector<batch_entry> prefill{
      {1, 0, 0, true}, {2, 1, 0, true}, {3, 0, 1, true}, {4, 1, 1, true}};
  decode(*ctx, prefill);  // the first batch of 4 outputs may size the logits
  const long before = allocations.load();
  for (int step = 0; step < 8; ++step) {
    const batch_entry two[2] = {{sample(*ctx, 0, s, history, 2), 2 + step, 0, true},
                                {s.sample(logits(*ctx, 1), history, 2), 2 + step, 1, true}};
    logprobs(*ctx, 0, two[0].token, max_top_logprobs, lp);
    history.push_back(two[0].token);
    decode(*ctx, two);
  }
  EXPECT_EQ(allocations.load() - before, 0);
}

TEST(sampling, many_rows_at_once_match_the_host_sampler_row_by_row) {
  auto m = load("synth-tiny-Q8_0.gguf");
  expect_batched_choices_match_the_host(*m);
}

// n > 1 choices share one prefill: a copied sequence continues exactly as the original.
TEST(sequence_copy, a_copy_continues_like_its_source) {
  auto m = load("stories260K.gguf");
  const auto prompt = tokenize(*m, "Once upon a time, there was", true);
  context_params cp = context_default_params();
  cp.n_ctx = 64;
  cp.n_seq = 3;
  auto ctx = context_create(*m, cp);
  // Sequence 2 holds something else first: the copy replaces it.
  const std::vector<batch_entry> other{{1, 0, 2, false}, {45, 1, 2, false}, {300, 2, 2, false}};
  decode(*ctx, other);
  std::vector<batch_entry> batch;
  for (size_t i = 0; i < prompt.size(); ++i)
    batch.push_back({prompt[i], static_cast<int32_t>(i), 0, i + 1 == prompt.size()});
  decode(*ctx, batch);
  sequence_copy(*ctx, 0, 1);
  sequence_copy(*ctx, 0, 2);
  const int32_t pos = static_cast<int32_t>(prompt.size());
  const token_id next = 403;
  const std::vector<batch_entry> three{
      {next, pos, 0, true}, {next, pos, 1, true}, {next, pos, 2, true}};
  decode(*ctx, three);
  // Rows of one batch may take different kernel paths (AVX-512 tiles): equal up to rounding.
  const auto want = logits(*ctx, 0);
  const std::vector<float> source(want.begin(), want.end());
  for (int i = 1; i < 3; ++i) {
    EXPECT_LT(relative_error(logits(*ctx, i), source), 1e-5) << "sequence " << i;
  }
  // The copy's positions continue the source's: anything else is refused.
  const batch_entry wrong{next, 0, 1, true};
  EXPECT_THROW(decode(*ctx, std::span(&wrong, 1)), engine_error);
}

// engine::logprobs on the CPU: the log-softmax of the row logits() gives.
TEST(engine_logprobs, are_the_log_softmax_of_the_batch_row) {
  auto m = load("stories260K.gguf");
  const auto prompt = tokenize(*m, "Once upon a time", true);
  context_params cp = context_default_params();
  cp.n_ctx = 64;
  auto ctx = context_create(*m, cp);
  std::vector<batch_entry> batch;
  for (size_t i = 0; i < prompt.size(); ++i)
    batch.push_back({prompt[i], static_cast<int32_t>(i), 0, true});
  decode(*ctx, batch);
  const int last = static_cast<int>(prompt.size()) - 1;
  const auto row = logits(*ctx, last);
  double sum = 0;
  for (float l : row) sum += std::exp(static_cast<double>(l));
  token_logprobs out;
  logprobs(*ctx, last, 261, 5, out);
  EXPECT_NEAR(out.logprob, row[261] - std::log(sum), 1e-4);
  ASSERT_EQ(out.n_top, 5);
  EXPECT_EQ(out.top[0].token, std::max_element(row.begin(), row.end()) - row.begin());
  for (int i = 1; i < out.n_top; ++i) EXPECT_LE(out.top[i].logprob, out.top[i - 1].logprob);
}

TEST(context_limits, position_past_the_context_is_an_error) {
  auto m = load("stories260K.gguf", 1);
  context_params cp = context_default_params();
  cp.n_ctx = 4;
  auto ctx = context_create(*m, cp);
  std::vector<batch_entry> batch;
  for (int i = 0; i < 4; ++i) batch.push_back({1, i, 0, i == 3});
  decode(*ctx, batch);
  const batch_entry e{1, 4, 0, true};
  try {
    decode(*ctx, std::span(&e, 1));
    FAIL() << "decode past n_ctx did not throw";
  } catch (const engine_error& err) {
    EXPECT_EQ(err.code, error_code::context_overflow);
  }
}

TEST(context_limits, batch_larger_than_n_batch_is_an_error) {
  auto m = load("stories260K.gguf", 1);
  context_params cp = context_default_params();
  cp.n_ctx = 16;
  cp.n_batch = 2;
  auto ctx = context_create(*m, cp);
  const std::vector<batch_entry> batch{{1, 0, 0, false}, {2, 1, 0, false}, {3, 2, 0, true}};
  try {
    decode(*ctx, batch);
    FAIL() << "oversized batch did not throw";
  } catch (const engine_error& err) {
    EXPECT_EQ(err.code, error_code::invalid_argument);
  }
}

TEST(context_limits, out_of_range_token_and_sequence_are_errors) {
  auto m = load("stories260K.gguf", 1);
  context_params cp = context_default_params();
  cp.n_ctx = 16;
  auto ctx = context_create(*m, cp);
  const batch_entry bad_token{100000, 0, 0, true};
  EXPECT_THROW(decode(*ctx, std::span(&bad_token, 1)), engine_error);
  const batch_entry bad_seq{1, 0, 5, true};
  EXPECT_THROW(decode(*ctx, std::span(&bad_seq, 1)), engine_error);
}

}  // namespace
}  // namespace rbee::engine
