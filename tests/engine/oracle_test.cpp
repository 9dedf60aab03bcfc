// The independent oracle: Hugging Face transformers' logits for scaled-down models of each
// family (tests/engine/data/oracle/<family>.json, written on the GPU machine by
// tests/engine/oracle/make_oracle.py). The weights are not checked in: both sides fill them
// from the same counter-based generator, so this test writes the checkpoint again
// (config.json + model.safetensors), converts it with `rbee-engine convert --type f32` and
// runs the CPU engine on the prompt: logits of the chosen positions within a relative error
// per family, and greedy tokens equal over the prefix where transformers' top-2 gap is clear.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "engine/engine.h"
#include "engine_tool/engine_tool.h"

namespace rbee::engine {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

const fs::path oracle_dir = fs::path(RBEE_SOURCE_DIR) / "tests/engine/data/oracle";

// Largest relative L2 error of the logits of one position allowed per family (F32 weights on
// both sides, F32 KV cache: summation order only).
constexpr double logit_bound = 1e-3;
// Greedy steps are compared while transformers' top-2 gap is at least this.
constexpr double robust_gap = 1e-2;

uint64_t fnv1a64(const std::string& text) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (const unsigned char c : text) h = (h ^ c) * 0x100000001B3ull;
  return h;
}

// make_oracle.py's generated_values: mean + (2u - 1) * scale in float32, u from splitmix64.
std::vector<float> generated_values(const std::string& name, size_t n, float mean, float scale) {
  uint64_t state = fnv1a64(name);
  std::vector<float> out(n);
  for (float& v : out) {
    state += 0x9E3779B97F4A7C15ull;
    uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    const float u = static_cast<float>(z >> 40) / 16777216.0f;
    // Two roundings, as in Python: volatile keeps the compiler from fusing them into an FMA.
    const volatile float spread = (u * 2.0f - 1.0f) * scale;
    v = mean + spread;
  }
  return out;
}

void write_checkpoint(const json& doc, const fs::path& dir) {
  fs::create_directories(dir);
  std::ofstream(dir / "config.json") << doc.at("config").dump();
  json header = json::object();
  std::string data;
  for (const auto& t : doc.at("tensors")) {
    const auto shape = t.at("shape").get<std::vector<int64_t>>();
    size_t n = 1;
    for (const int64_t d : shape) n *= static_cast<size_t>(d);
    const auto name = t.at("name").get<std::string>();
    const auto v = generated_values(name, n, t.at("mean").get<float>(), t.at("scale").get<float>());
    const size_t begin = data.size();
    data.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
    header[name] = {{"dtype", "F32"}, {"shape", shape}, {"data_offsets", {begin, data.size()}}};
  }
  const std::string text = header.dump();
  std::ofstream out(dir / "model.safetensors", std::ios::binary);
  const uint64_t len = text.size();
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>(len >> (8 * i)));
  out << text << data;
}

// ||a - b|| / ||b||
double relative_error(std::span<const float> a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    den += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}

std::vector<fs::path> oracle_files() {
  std::vector<fs::path> files;
  if (fs::is_directory(oracle_dir))
    for (const auto& e : fs::directory_iterator(oracle_dir))
      if (e.path().extension() == ".json") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  return files;
}

TEST(transformers_oracle, every_family_matches_its_expected_logits_and_tokens) {
  const auto files = oracle_files();
  if (files.empty())
    GTEST_SKIP() << "no expectations in " << oracle_dir
                 << ": run tests/engine/oracle/make_oracle.py where torch is installed";
  const fs::path work =
      fs::temp_directory_path() / ("rbee-oracle-test-" + std::to_string(::getpid()));
  fs::create_directories(work);
  engine_tool::synth_options vocab;  // synth's 512-token vocabulary, as the configs use
  vocab.output = (work / "vocab.gguf").string();
  vocab.n_threads = 1;
  std::ostringstream log;
  engine_tool::synth(vocab, log);

  for (const auto& file : files) {
    std::ifstream in(file);
    const json doc = json::parse(in);
    const auto family = doc.at("family").get<std::string>();
    SCOPED_TRACE(family);
    engine_tool::convert_options conv;
    conv.input = (work / family).string();
    conv.output = (work / (family + ".gguf")).string();
    conv.type = "f32";
    conv.vocab_from = vocab.output;
    write_checkpoint(doc, conv.input);
    ASSERT_EQ(engine_tool::convert(conv, log), 0);

    model_params mp = model_default_params();
    mp.n_threads = 1;
    auto m = model_load(conv.output, mp);
    EXPECT_EQ(model_get_info(*m).architecture, family == "mixtral" ? "llama" : family);
    context_params cp = context_default_params();
    cp.n_ctx = 128;
    cp.kv_f16 = false;
    auto ctx = context_create(*m, cp);
    const auto prompt = doc.at("prompt").get<std::vector<token_id>>();
    std::vector<batch_entry> batch;
    for (size_t i = 0; i < prompt.size(); ++i)
      batch.push_back({prompt[i], static_cast<int32_t>(i), 0, true});
    decode(*ctx, batch);
    double worst = 0;
    for (const auto& [pos, expected] : doc.at("logits").items())
      worst = std::max(
          worst, relative_error(logits(*ctx, std::stoi(pos)), expected.get<std::vector<float>>()));
    std::printf("%s (transformers %s): worst relative logit error %.2e\n", family.c_str(),
                doc.at("transformers").get<std::string>().c_str(), worst);
    EXPECT_LT(worst, logit_bound);

    const auto greedy = doc.at("greedy").get<std::vector<token_id>>();
    const auto gaps = doc.at("greedy_top2_gap").get<std::vector<double>>();
    int pos = static_cast<int>(prompt.size()), row = pos - 1, compared = 0;
    for (size_t i = 0; i < greedy.size() && gaps[i] >= robust_gap; ++i, ++compared) {
      const auto l = logits(*ctx, row);
      const auto next = static_cast<token_id>(std::max_element(l.begin(), l.end()) - l.begin());
      ASSERT_EQ(next, greedy[i]) << "greedy step " << i;
      const batch_entry e{next, pos++, 0, true};
      decode(*ctx, std::span(&e, 1));
      row = 0;
    }
    std::printf("%s: %d greedy tokens compared\n", family.c_str(), compared);
  }
  fs::remove_all(work);
}

}  // namespace
}  // namespace rbee::engine
