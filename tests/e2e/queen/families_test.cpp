// The model families beyond llama and qwen2 through the whole service: the hive accepts them and
// a worker answers (the engine's own tests check their numbers).
#include <gtest/gtest.h>

#include "harness/scenario_fixture.h"

namespace rbee::e2e::scenario {
namespace {

class Families : public local_node_test {};

TEST_F(Families, EveryNewArchitectureIsServedThroughTheQueen) {
  q.start();
  for (const char* arch : {"qwen3", "gemma2", "gemma3", "phi3", "qwen2moe", "qwen3moe"}) {
    auto file = q.home().path() / (std::string(arch) + ".gguf");
    auto made = run_cli("rbee-engine", {"synth", "--arch", arch, "--shape", "tiny", "--type",
                                        "q8_0", "-o", file.string()});
    ASSERT_EQ(made.exit_code, 0) << arch << ": " << made.err;
    auto r =
        q.infer("file:" + file.string(), {"--max-tokens", "4", "--temperature", "0", "--json"});
    EXPECT_EQ(r.exit_code, 0) << arch << ": " << r.err << q.logs();
    EXPECT_EQ(nlohmann::json::parse(r.out, nullptr, false).value("tokens_out", 0), 4) << r.out;
  }
}

}  // namespace
}  // namespace rbee::e2e::scenario
