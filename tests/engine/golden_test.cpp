// stories260K greedy decodes must reproduce llama.cpp's output byte for byte.
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "engine/engine.h"

namespace rbee::engine {
namespace {

const std::string models_dir = RBEE_SHARED_MODELS_DIR;

// BOS + prompt, one batched prefill, then greedy decoding token by token until n_predict
// tokens or EOS — what llama-simple does.
std::string greedy(model& m, const std::string& prompt, int n_predict) {
  const auto tokens = tokenize(m, prompt, true);
  context_params cp = context_default_params();
  cp.n_ctx = static_cast<int>(tokens.size()) + n_predict;
  auto ctx = context_create(m, cp);
  std::vector<batch_entry> batch;
  for (size_t i = 0; i < tokens.size(); ++i)
    batch.push_back({tokens[i], static_cast<int32_t>(i), 0, i + 1 == tokens.size()});
  decode(*ctx, batch);
  sampling_params sp = sampling_default_params();
  sp.temperature = 0;
  sp.repeat_penalty = 1;
  sampler s(sp, model_get_info(m).n_vocab);
  detokenizer detok(m);
  std::vector<token_id> history = tokens;
  std::string text;
  for (int i = 0; i < n_predict; ++i) {
    const token_id next = s.sample(logits(*ctx, static_cast<int>(batch.size()) - 1), history);
    if (token_is_end_of_generation(m, next)) break;
    text += detok.push(next);
    history.push_back(next);
    batch.assign(1, {next, static_cast<int32_t>(history.size() - 1), 0, true});
    if (i + 1 < n_predict) decode(*ctx, batch);
  }
  return text + detok.flush();
}

nlohmann::json golden_cases() {
  std::ifstream in(models_dir + "/golden-stories260K.json");
  if (!in) throw std::runtime_error("missing golden-stories260K.json");
  return nlohmann::json::parse(in)["cases"];
}

model_ptr load_stories(int n_threads) {
  model_params mp = model_default_params();
  mp.n_threads = n_threads;
  return model_load(models_dir + "/stories260K.gguf", mp);
}

TEST(golden, stories260k_greedy_matches_llama_cpp) {
  const auto cases = golden_cases();
  auto m = load_stories(1);
  ASSERT_GE(cases.size(), 3u);
  for (const auto& c : cases) {
    const std::string prompt = c["prompt"];
    EXPECT_EQ(greedy(*m, prompt, c["n_predict"].get<int>()), c["continuation"].get<std::string>())
        << "prompt: " << prompt;
  }
}

// Threads split rows and heads differently; the text must not change.
TEST(golden, two_threads_give_the_same_text) {
  const auto c = golden_cases().at(0);
  auto m = load_stories(2);
  EXPECT_EQ(greedy(*m, c["prompt"], c["n_predict"].get<int>()),
            c["continuation"].get<std::string>());
}

TEST(golden, prompt_tokenizes_as_llama_cpp) {
  auto m = load_stories(1);
  EXPECT_EQ(tokenize(*m, "Once upon a time", true), (std::vector<token_id>{1, 403, 407, 261, 378}));
}

}  // namespace
}  // namespace rbee::engine
