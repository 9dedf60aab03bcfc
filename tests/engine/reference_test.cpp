// The oracle itself must be right: its greedy decode of stories260K reproduces llama.cpp's
// golden text, and it rejects what it cannot run.
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "engine/engine.h"
#include "support/reference.h"

namespace rbee::engine {
namespace {

const std::string models_dir = RBEE_SHARED_MODELS_DIR;

TEST(reference, greedy_decode_matches_the_golden_text) {
  std::ifstream in(models_dir + "/golden-stories260K.json");
  ASSERT_TRUE(in);
  const auto c = nlohmann::json::parse(in)["cases"].at(0);
  const std::string path = models_dir + "/stories260K.gguf";
  auto m = model_load(path, model_default_params());  // tokenizer only
  reference::transformer ref(path);
  const auto prompt = tokenize(*m, c["prompt"].get<std::string>(), true);
  std::vector<float> last;
  for (size_t i = 0; i < prompt.size(); ++i) last = ref.forward(prompt[i], static_cast<int>(i));
  detokenizer detok(*m);
  std::string text;
  int pos = static_cast<int>(prompt.size());
  for (int i = 0; i < c["n_predict"].get<int>(); ++i) {
    const token_id next =
        static_cast<token_id>(std::max_element(last.begin(), last.end()) - last.begin());
    if (token_is_end_of_generation(*m, next)) break;
    text += detok.push(next);
    last = ref.forward(next, pos++);
  }
  EXPECT_EQ(text + detok.flush(), c["continuation"].get<std::string>());
}

TEST(reference, positions_out_of_order_are_rejected) {
  reference::transformer ref(models_dir + "/stories260K.gguf");
  ref.forward(1, 0);
  EXPECT_THROW(ref.forward(1, 5), std::invalid_argument);
}

TEST(reference, hyperparameters_come_from_the_metadata) {
  reference::transformer ref(models_dir + "/stories260K.gguf");
  EXPECT_EQ(ref.hp().architecture, "llama");
  EXPECT_EQ(ref.hp().n_embd, 64);
  EXPECT_EQ(ref.hp().n_layer, 5);
  EXPECT_EQ(ref.hp().n_head, 8);
  EXPECT_EQ(ref.hp().n_head_kv, 4);
  EXPECT_EQ(ref.hp().n_vocab, 512);
}

}  // namespace
}  // namespace rbee::engine
