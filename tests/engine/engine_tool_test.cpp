// The rbee-engine tool, run as a real process: the exact command forms that tests and
// benchmarks rely on.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

#include <gtest/gtest.h>
#include <cstring>
#include <nlohmann/json.hpp>

#include "gguf/gguf.h"

namespace {

const std::string models_dir = RBEE_SHARED_MODELS_DIR;
const std::string tool = std::string(RBEE_BIN_DIR) + "/rbee-engine";

struct result {
  int exit_code = -1;
  std::string out;  // stdout only; stderr goes to the test log
};

std::string quote(const std::string& s) {
  std::string q(1, '\'');
  for (char c : s) {
    if (c == '\'') {
      q.append("'\\''");
    } else {
      q.push_back(c);
    }
  }
  q.push_back('\'');
  return q;
}

result run(const std::vector<std::string>& args) {
  std::string cmd = quote(tool);
  for (const auto& a : args) {
    cmd.push_back(' ');
    cmd.append(quote(a));
  }
  result r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

class engine_tool : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("rbee-engine-tool-test-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::filesystem::path dir_;
};

TEST_F(engine_tool, generate_prints_exactly_the_golden_text) {
  std::ifstream in(models_dir + "/golden-stories260K.json");
  ASSERT_TRUE(in);
  const auto c = nlohmann::json::parse(in)["cases"].at(0);
  const auto r =
      run({"generate", "-m", models_dir + "/stories260K.gguf", "-p", c["prompt"].get<std::string>(),
           "-n", std::to_string(c["n_predict"].get<int>()), "--threads", "1"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, c["continuation"].get<std::string>());
}

TEST_F(engine_tool, generate_split_by_layers_prints_the_golden_text) {
  std::ifstream in(models_dir + "/golden-stories260K.json");
  ASSERT_TRUE(in);
  const auto c = nlohmann::json::parse(in)["cases"].at(0);
  const auto r =
      run({"generate", "-m", models_dir + "/stories260K.gguf", "-p", c["prompt"].get<std::string>(),
           "-n", std::to_string(c["n_predict"].get<int>()), "--threads", "1", "--devices", "0,0",
           "--split", "layer", "--tensor-split", "1,3"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, c["continuation"].get<std::string>());
}

// Two slices of every layer on the host: the same greedy text as the whole model.
TEST_F(engine_tool, generate_split_by_tensors_prints_the_golden_text) {
  std::ifstream in(models_dir + "/golden-stories260K.json");
  ASSERT_TRUE(in);
  const auto c = nlohmann::json::parse(in)["cases"].at(0);
  const auto r =
      run({"generate", "-m", models_dir + "/stories260K.gguf", "-p", c["prompt"].get<std::string>(),
           "-n", std::to_string(c["n_predict"].get<int>()), "--threads", "2", "--devices", "0,0",
           "--split", "tensor"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, c["continuation"].get<std::string>());
}

TEST_F(engine_tool, split_options_that_cannot_run_are_refused) {
  const std::string model = models_dir + "/stories260K.gguf";
  // Not a split mode at all: a usage error.
  EXPECT_EQ(run({"generate", "-m", model, "-p", "a", "--split", "row"}).exit_code, 2);
  // Valid flags the engine refuses: heads that do not divide, a device the CPU lacks, bad
  // ratios.
  EXPECT_EQ(run({"generate", "-m", model, "-p", "a", "--devices", "0,0,0", "--split", "tensor"})
                .exit_code,
            1);
  EXPECT_EQ(
      run({"generate", "-m", model, "-p", "a", "--devices", "0,1", "--split", "layer"}).exit_code,
      1);
  EXPECT_EQ(
      run({"bench", "-m", model, "--devices", "0,0", "--split", "layer", "--tensor-split", "1,-1"})
          .exit_code,
      1);
  EXPECT_EQ(run({"generate", "-m", model, "-p", "a", "--devices", "0,0"}).exit_code, 1);
}

TEST_F(engine_tool, tokenize_prints_the_ids) {
  const auto r =
      run({"tokenize", "-m", models_dir + "/stories260K.gguf", "-p", "Once upon a time"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, "1 403 407 261 378\n");
  const auto no_bos = run(
      {"tokenize", "-m", models_dir + "/stories260K.gguf", "-p", "Once upon a time", "--no-bos"});
  EXPECT_EQ(no_bos.out, "403 407 261 378\n");
}

// llama.cpp's tokenizer test files hold a vocabulary and no tensor; their .inp/.out pairs are
// the texts and the ids the reference tokenizer gives them (no BOS).
TEST_F(engine_tool, tokenize_reads_vocabulary_only_files) {
  const std::string file = models_dir + "/tokenizer/ggml-vocab-llama-spm.gguf";
  const std::string separator = "\n__ggml_vocab_test__\n";
  std::ifstream inp(file + ".inp"), out(file + ".out");
  ASSERT_TRUE(inp && out);
  const std::string texts((std::istreambuf_iterator<char>(inp)), std::istreambuf_iterator<char>());
  int checked = 0;
  size_t start = 0;
  for (std::string ids; checked < 12 && std::getline(out, ids);) {
    const size_t end = texts.find(separator, start);
    ASSERT_NE(end, std::string::npos);
    const std::string text = texts.substr(start, end - start);
    start = end + separator.size();
    if (text.empty() || text.front() == '-') continue;  // not an option value
    const auto r = run({"tokenize", "-m", file, "-p", text, "--no-bos"});
    ASSERT_EQ(r.exit_code, 0) << r.out;
    EXPECT_EQ(r.out, ids.substr(ids.find_first_not_of(' ')) + "\n") << "text: '" << text << "'";
    ++checked;
  }
  EXPECT_EQ(checked, 12);
}

TEST_F(engine_tool, synth_tiny_then_info_and_generate) {
  const std::string model = path("tiny-q4_0.gguf");
  ASSERT_EQ(run({"synth", "--shape", "tiny", "--type", "q4_0", "-o", model}).exit_code, 0);
  const auto info = run({"info", "-m", model});
  EXPECT_EQ(info.exit_code, 0);
  EXPECT_NE(info.out.find("architecture:   llama"), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("random weights (rbee synth)"), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("q4_0 x29"), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("q6_k x1"), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("layers:         4"), std::string::npos) << info.out;
  const auto gen = run({"generate", "-m", model, "-p", "hello", "-n", "8", "-t", "1"});
  EXPECT_EQ(gen.exit_code, 0);
  // Same command, same text (greedy).
  EXPECT_EQ(run({"generate", "-m", model, "-p", "hello", "-n", "8", "-t", "1"}).out, gen.out);
}

TEST_F(engine_tool, synth_with_vocab_from_copies_the_tokenizer) {
  const std::string model = path("tiny-f16.gguf");
  ASSERT_EQ(run({"synth", "--shape", "tiny", "--type", "f16", "--vocab-from",
                 models_dir + "/stories260K.gguf", "-o", model})
                .exit_code,
            0);
  EXPECT_EQ(run({"tokenize", "-m", model, "-p", "Once upon a time"}).out, "1 403 407 261 378\n");
}

TEST_F(engine_tool, quantize_f16_to_q8_0_loads_and_generates) {
  const std::string q8 = path("q8_0.gguf");
  ASSERT_EQ(run({"quantize", models_dir + "/synth-tiny-f16.gguf", q8, "q8_0"}).exit_code, 0);
  const auto info = run({"info", "-m", q8});
  EXPECT_NE(info.out.find("quantization:   Q8_0"), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("q8_0 x30"), std::string::npos) << info.out;
  const auto gen = run({"generate", "-m", q8, "-p", "Once upon a time", "-n", "8", "-t", "1"});
  EXPECT_EQ(gen.exit_code, 0);
  EXPECT_FALSE(gen.out.empty());
}

// The shared synth-tiny-*.gguf files were quantized from synth-tiny-f16.gguf by llama.cpp's
// llama-quantize: ours must write the same tensor types and the same bytes.
class quantize_matches_llama_cpp
    : public engine_tool,
      public testing::WithParamInterface<std::pair<std::string, std::string>> {};

TEST_P(quantize_matches_llama_cpp, tensor_bytes) {
  const auto& [type, file] = GetParam();
  const std::string out = path(type + ".gguf");
  ASSERT_EQ(run({"quantize", models_dir + "/synth-tiny-f16.gguf", out, type}).exit_code, 0);
  const auto ours = rbee::gguf::file::open(out);
  const auto theirs = rbee::gguf::file::open(models_dir + "/" + file);
  ASSERT_EQ(ours.tensors().size(), theirs.tensors().size());
  for (const auto& t : theirs.tensors()) {
    const auto* o = ours.find_tensor(t.name);
    ASSERT_NE(o, nullptr) << t.name;
    EXPECT_EQ(o->type, t.type) << t.name;
    ASSERT_EQ(o->n_bytes, t.n_bytes) << t.name;
    EXPECT_EQ(std::memcmp(o->data, t.data, t.n_bytes), 0) << t.name << " differs";
  }
}

INSTANTIATE_TEST_SUITE_P(types, quantize_matches_llama_cpp,
                         testing::Values(std::pair{"q8_0", "synth-tiny-Q8_0.gguf"},
                                         std::pair{"q4_0", "synth-tiny-Q4_0.gguf"},
                                         std::pair{"q4_1", "synth-tiny-Q4_1.gguf"},
                                         std::pair{"q5_0", "synth-tiny-Q5_0.gguf"},
                                         std::pair{"q5_1", "synth-tiny-Q5_1.gguf"},
                                         std::pair{"q4_k_m", "synth-tiny-Q4_K_M.gguf"},
                                         std::pair{"q5_k_m", "synth-tiny-Q5_K_M.gguf"},
                                         std::pair{"q6_k", "synth-tiny-Q6_K.gguf"}),
                         [](const auto& info) { return info.param.first; });

// FNV-1a 64 of a tensor's bytes.
uint64_t fingerprint(const uint8_t* data, size_t n) {
  uint64_t h = 0xcbf29ce484222325u;
  for (size_t i = 0; i < n; ++i) h = (h ^ data[i]) * 0x100000001b3u;
  return h;
}

// The mixes without a shared llama.cpp file: llama-quantize's output is checked in as each
// tensor's type and fingerprint (tests/engine/data/llama_cpp_quantize/<mix>.txt).
class quantize_matches_llama_cpp_fingerprints
    : public engine_tool,
      public testing::WithParamInterface<std::pair<std::string, std::string>> {};

TEST_P(quantize_matches_llama_cpp_fingerprints, tensor_types_and_bytes) {
  const auto& [mix, label] = GetParam();
  const std::string out = path(mix + ".gguf");
  ASSERT_EQ(run({"quantize", models_dir + "/synth-tiny-f16.gguf", out, mix}).exit_code, 0);
  const auto ours = rbee::gguf::file::open(out);
  std::ifstream want(std::string(RBEE_SOURCE_DIR) + "/tests/engine/data/llama_cpp_quantize/" + mix +
                     ".txt");
  ASSERT_TRUE(want) << mix;
  size_t n_checked = 0;
  std::string line;
  while (std::getline(want, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    std::string name, type;
    uint64_t print = 0;
    fields >> name >> type >> std::hex >> print;
    const auto* t = ours.find_tensor(name);
    ASSERT_NE(t, nullptr) << name;
    EXPECT_EQ(rbee::gguf::to_string(t->type), type) << name;
    EXPECT_EQ(fingerprint(t->data, t->n_bytes), print) << name << " differs";
    ++n_checked;
  }
  EXPECT_EQ(n_checked, ours.tensors().size());
  const auto info = run({"info", "-m", out});
  EXPECT_NE(info.out.find("quantization:   " + label), std::string::npos) << info.out;
}

INSTANTIATE_TEST_SUITE_P(types, quantize_matches_llama_cpp_fingerprints,
                         testing::Values(std::pair{"q2_k", "Q2_K"}, std::pair{"q3_k_s", "Q3_K_S"},
                                         std::pair{"q3_k_m", "Q3_K_M"},
                                         std::pair{"q3_k_l", "Q3_K_L"},
                                         std::pair{"iq4_nl", "IQ4_NL"},
                                         std::pair{"iq4_xs", "IQ4_XS"}),
                         [](const auto& info) { return info.param.first; });

TEST_F(engine_tool, quantize_q4_k_m_uses_llama_cpp_s_mix) {
  const std::string out = path("q4_k_m.gguf");
  ASSERT_EQ(run({"quantize", models_dir + "/synth-tiny-f16.gguf", out, "q4_k_m"}).exit_code, 0);
  const auto info = run({"info", "-m", out});
  EXPECT_NE(info.out.find("q4_k x25"), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("q6_k x5"), std::string::npos) << info.out;
}

TEST_F(engine_tool, bench_json_has_the_tests) {
  const auto r = run({"bench", "-m", models_dir + "/synth-tiny-Q4_0.gguf", "-p", "16", "-n", "4",
                      "-r", "1", "-t", "1", "--json"});
  ASSERT_EQ(r.exit_code, 0);
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(j[0]["test"], "pp16");
  EXPECT_EQ(j[1]["test"], "tg4");
  for (const auto& t : j) {
    EXPECT_GT(t["avg_ts"].get<double>(), 0);
    EXPECT_GE(t["stddev_ts"].get<double>(), 0);
  }
}

TEST_F(engine_tool, bench_table_looks_like_llama_bench) {
  const auto r = run({"bench", "-m", models_dir + "/stories260K.gguf", "-p", "8", "-n", "4", "-r",
                      "2", "-t", "1"});
  ASSERT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("| model"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("pp8"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("tg4"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("±"), std::string::npos) << r.out;
}

TEST_F(engine_tool, bench_parallel_reports_each_sequence_count) {
  const auto r = run({"bench", "-m", models_dir + "/stories260K.gguf", "--parallel", "1,3,8", "-p",
                      "12", "-n", "4", "-b", "16", "-r", "1", "-t", "1", "--json"});
  ASSERT_EQ(r.exit_code, 0);
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j.size(), 3u);
  const int counts[] = {1, 3, 8};
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(j[i]["n_parallel"], counts[i]);
    EXPECT_EQ(j[i]["n_prompt"], 12);
    EXPECT_EQ(j[i]["n_gen"], 4);
    EXPECT_EQ(j[i]["n_kv"], counts[i] * 16);
    EXPECT_GT(j[i]["pp_avg_ts"].get<double>(), 0);
    EXPECT_GT(j[i]["tg_avg_ts"].get<double>(), 0);
    // Aggregate rates: N sequences' tokens over the phase's time (one repetition).
    EXPECT_NEAR(j[i]["pp_avg_ts"].get<double>() * j[i]["t_pp_s"].get<double>(), counts[i] * 12,
                1e-6 * counts[i] * 12);
    EXPECT_NEAR(j[i]["tg_avg_ts"].get<double>() * j[i]["t_tg_s"].get<double>(), counts[i] * 4,
                1e-6 * counts[i] * 4);
  }
}

TEST_F(engine_tool, bench_parallel_table_looks_like_llama_batched_bench) {
  const auto r = run({"bench", "-m", models_dir + "/stories260K.gguf", "--parallel", "2,4", "-p",
                      "8", "-n", "3", "-r", "1", "-t", "1"});
  ASSERT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("S_PP t/s"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("S_TG t/s"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("|      8 |      3 |    4 |      44 |"), std::string::npos) << r.out;
}

TEST_F(engine_tool, bench_parallel_rejects_bad_counts) {
  const std::string m = models_dir + "/stories260K.gguf";
  EXPECT_EQ(run({"bench", "-m", m, "--parallel", "0,4"}).exit_code, 1);
  EXPECT_EQ(run({"bench", "-m", m, "--parallel", "2", "-n", "0"}).exit_code, 1);
  EXPECT_EQ(run({"bench", "-m", m, "--parallel", "two"}).exit_code, 2);
}

TEST_F(engine_tool, version_names_the_backends_of_the_build) {
  const auto r = run({"--version"});
  ASSERT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out.rfind("rbee-engine ", 0), 0u) << r.out;
  // A CUDA build names its kernels' architectures.
  const bool cuda = r.out.find("cpu, cuda (sm ") != std::string::npos;
  EXPECT_TRUE(cuda || r.out.find("cpu, no cuda") != std::string::npos) << r.out;
}

TEST_F(engine_tool, errors_exit_1_with_a_message) {
  EXPECT_EQ(run({"generate", "-m", path("missing.gguf"), "-p", "x"}).exit_code, 1);
  const std::string junk = path("junk.gguf");
  std::ofstream(junk) << "not a gguf file";
  EXPECT_EQ(run({"info", "-m", junk}).exit_code, 1);
  EXPECT_EQ(run({"synth", "--shape", "huge", "-o", path("x.gguf")}).exit_code, 1);
  EXPECT_EQ(
      run({"quantize", models_dir + "/synth-tiny-f16.gguf", path("y.gguf"), "q7_k"}).exit_code, 1);
  EXPECT_EQ(run({"generate", "-m", models_dir + "/stories260K.gguf", "-p", "x", "--backend", "cuda",
                 "--device", "99"})
                .exit_code,
            1);  // no machine has a cuda:99
}

TEST_F(engine_tool, usage_errors_exit_2) {
  EXPECT_EQ(run({"generate"}).exit_code, 2);
  EXPECT_EQ(run({"frobnicate"}).exit_code, 2);
}

}  // namespace
