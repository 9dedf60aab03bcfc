// spec/test-001.md section E, GGUF: scenarios 30-32 through the queen on `localhost`: metadata
// read from the file into the catalog, every tensor type of the test models generates, and
// broken files get a clear error while the hive stays up.
#include <gtest/gtest.h>

#include <cstring>

#include "harness/hub_server.h"
#include "harness/scenario_fixture.h"

namespace rbee::e2e::scenario {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

class Scenarios_E : public ::testing::Test {
 protected:
  void TearDown() override {
    EXPECT_TRUE(q.stop_all()) << "processes left after the queen stopped";
  }

  // A copy of stories260K with `edit` applied, in the scenario's own directory.
  fs::path broken_copy(const std::string& name, const std::function<void(std::string&)>& edit) {
    std::string bytes = slurp(stories_path());
    edit(bytes);
    auto path = q.home().path() / "broken" / name;
    fs::create_directories(path.parent_path());
    std::ofstream(path, std::ios::binary) << bytes;
    return path;
  }

  scenario_queen q;
};

TEST_F(Scenarios_E, S30_gguf_metadata) {
  hub_server hub;
  hub.add_file("rbee-test/stories260K-GGUF", "stories260K.gguf", stories_path());
  hub.add_file("rbee-test/synth-tiny-GGUF", "synth-tiny-Q4_K_M.gguf",
               models_dir() + "/synth-tiny-Q4_K_M.gguf");
  hub.start();
  q.set_env("HF_ENDPOINT", hub.url());
  q.start();
  for (const char* ref : {"hf:rbee-test/stories260K-GGUF:stories260K.gguf",
                          "hf:rbee-test/synth-tiny-GGUF:synth-tiny-Q4_K_M.gguf"}) {
    auto r = q.cli({"models", "download", "--node", "localhost", "--model", ref});
    ASSERT_EQ(r.exit_code, 0) << ref << ": " << r.err << q.logs();
  }
  auto list = q.cli({"models", "list", "--node", "localhost", "--json"});
  std::map<std::string, json> by_file;
  auto listed = json::parse(list.out);
  for (const auto& m : listed["models"]) by_file[m.value("file", "")] = m;
  ASSERT_EQ(by_file.size(), 2u) << list.out;

  // stories260K: llama, all F32, ~260K parameters (dim 64, 5 layers, vocab 512).
  const auto& s = by_file["stories260K.gguf"];
  EXPECT_EQ(s["architecture"], "llama");
  EXPECT_EQ(s["quantization"], "F32");
  EXPECT_GT(s["parameters"].get<int64_t>(), 200000);
  EXPECT_LT(s["parameters"].get<int64_t>(), 320000);
  EXPECT_GT(s["context_length"].get<int64_t>(), 0);
  // synth-tiny: llama, Q4_K_M, dim 256, 4 layers, FFN 768, vocab 512: about 3.4M parameters.
  const auto& t = by_file["synth-tiny-Q4_K_M.gguf"];
  EXPECT_EQ(t["architecture"], "llama");
  EXPECT_EQ(t["quantization"], "Q4_K_M");
  EXPECT_GT(t["parameters"].get<int64_t>(), 3000000);
  EXPECT_LT(t["parameters"].get<int64_t>(), 4000000);

  // Vocab size and EOS id come from the file too: the engine tool reads the same header, and
  // both readers agree on what they share.
  auto info = run_cli("rbee-engine", {"info", "--model", stories_path()});
  ASSERT_EQ(info.exit_code, 0) << info.out << info.err;
  EXPECT_TRUE(contains(info.out, "architecture:   llama")) << info.out;
  EXPECT_TRUE(contains(info.out, "vocab:          512 tokens")) << info.out;
  EXPECT_TRUE(contains(info.out, "eos 2")) << info.out;
  EXPECT_TRUE(
      contains(info.out, "context length: " + std::to_string(s["context_length"].get<int64_t>())))
      << info.out;
  EXPECT_TRUE(
      contains(info.out, "parameters:     " + std::to_string(s["parameters"].get<int64_t>())))
      << info.out;
  EXPECT_TRUE(contains(info.out, "quantization:   F32")) << info.out;
}

TEST_F(Scenarios_E, S31_every_tensor_type_generates) {
  q.start();
  // Greedy text of the real model matches llama.cpp byte for byte.
  auto stories = q.infer(stories_ref(), {"--max-tokens", "16", "--temperature", "0"});
  ASSERT_EQ(stories.exit_code, 0) << stories.err << q.logs();
  EXPECT_EQ(golden_continuation("Once upon a time").rfind(stories.text(), 0), 0u) << stories.out;
  // Each tensor type of the synthetic model loads and generates exactly the tokens asked for.
  for (const char* type :
       {"f16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K_M", "Q5_K_M", "Q6_K"}) {
    std::string ref = "file:" + models_dir() + "/synth-tiny-" + type + ".gguf";
    auto s = q.run_task({{"node", "localhost"},
                         {"model", ref},
                         {"prompt", "Once upon a time"},
                         {"max_tokens", 6},
                         {"temperature", 0}});
    ASSERT_EQ(s.status, 200) << type << ": " << s.error.body;
    EXPECT_FALSE(s.first("error")) << type << ": " << s.first("error")->dump();
    auto end = s.first("end");
    ASSERT_TRUE(end) << type;
    // Exactly max_tokens, unless the (random-weight) model produced EOS first. Token events
    // carry text, and byte tokens of one UTF-8 character arrive merged: count the end's tally.
    if (end->value("stop_reason", "") == "eos") {
      EXPECT_LE(end->value("tokens_out", 0), 6) << type;
    } else {
      EXPECT_EQ(end->value("tokens_out", 0), 6) << type << ": " << end->dump();
    }
    EXPECT_GE(s.count("token"), 1) << type;
    EXPECT_LE(s.count("token"), end->value("tokens_out", 0)) << type;
    // Workers are not reused across models: stop this one to keep memory low.
    for (const auto& w : q.workers()) {
      if (w["model_ref"] == ref) {
        q.cli({"workers", "shutdown", "--id", w["worker_id"].get<std::string>()});
      }
    }
  }
}

TEST_F(Scenarios_E, S32_broken_gguf_clear_error) {
  q.start();
  auto truncated = broken_copy("truncated.gguf", [](std::string& b) { b.resize(b.size() / 3); });
  auto corrupt =
      broken_copy("corrupt.gguf", [](std::string& b) { std::memcpy(b.data(), "XXXX", 4); });
  auto unknown_arch = broken_copy("unknown-arch.gguf", [](std::string& b) {
    // general.architecture's value: key, u32 type, u64 length, then "llama".
    auto key = b.find("general.architecture");
    ASSERT_NE(key, std::string::npos);
    auto value = key + std::strlen("general.architecture") + 4 + 8;
    ASSERT_EQ(b.compare(value, 5, "llama"), 0);
    b.replace(value, 5, "zzzzz");
  });
  auto bad_type = broken_copy("bad-tensor-type.gguf", [](std::string& b) {
    // The first tensor info: name, u32 n_dims, u64 dims[n_dims], u32 type.
    auto name = b.find("token_embd.weight");
    ASSERT_NE(name, std::string::npos);
    size_t pos = name + std::strlen("token_embd.weight");
    uint32_t n_dims = 0;
    std::memcpy(&n_dims, b.data() + pos, 4);
    ASSERT_LE(n_dims, 4u);
    uint32_t type = 99;  // no such ggml type
    std::memcpy(b.data() + pos + 4 + 8 * n_dims, &type, 4);
  });
  struct bad_case {
    fs::path file;
    std::vector<std::string> words;  // one of these must name the problem
  };
  std::vector<bad_case> cases = {{truncated, {"truncated", "Truncated", "end of file", "EOF"}},
                                 {corrupt, {"magic", "not a GGUF", "GGUF"}},
                                 {unknown_arch, {"zzzzz"}},
                                 {bad_type, {"99", "tensor type", "type"}}};
  for (const auto& c : cases) {
    auto r = q.infer("file:" + c.file.string(), {"--max-tokens", "2"});
    EXPECT_EQ(r.exit_code, 1) << c.file << ": " << r.out << r.err;
    bool named = false;
    for (const auto& w : c.words) named = named || contains(r.err, w);
    EXPECT_TRUE(named) << c.file.filename() << ": " << r.err;
    EXPECT_TRUE(q.hive_alive()) << "the hive must stay up after " << c.file.filename();
  }
  // ... and still serves good models.
  auto good = q.infer(stories_ref(), {"--max-tokens", "4"});
  EXPECT_EQ(good.exit_code, 0) << good.err;
}

}  // namespace
}  // namespace rbee::e2e::scenario
