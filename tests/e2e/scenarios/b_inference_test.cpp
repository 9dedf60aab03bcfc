// spec/test-001.md section B, inference on the built-in node `localhost`: scenarios 10, 11, 12,
// 14, 15 (9 and 13 need remote nodes: b_inference_ssh_test.cpp).
#include <gtest/gtest.h>

#include "harness/hub_server.h"
#include "harness/scenario_fixture.h"

namespace rbee::e2e::scenario {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const std::string hub_repo = "rbee-test/stories260K-GGUF";
const std::string hub_file = "stories260K.gguf";
const std::string hub_ref = "hf:" + hub_repo + ":" + hub_file;

class Scenarios_B : public ::testing::Test {
 protected:
  void SetUp() override {
    hub.add_file(hub_repo, hub_file, stories_path());
    hub.start();
    q.set_env("HF_ENDPOINT", hub.url());
    q.start();
  }
  void TearDown() override {
    EXPECT_TRUE(q.stop_all()) << "processes left after the queen stopped";
    hub.stop();
  }

  hub_server hub;
  scenario_queen q;
};

TEST_F(Scenarios_B, S10_warm_start) {
  auto cold = q.infer(stories_ref(), {"--max-tokens", "8", "--temperature", "0", "--json"});
  ASSERT_EQ(cold.exit_code, 0) << cold.err << q.logs();
  auto workers_before = q.workers();
  ASSERT_EQ(workers_before.size(), 1u) << workers_before.dump();
  pid_t hive_pid = 0;
  {
    auto pids =
        pids_with_cmdline("rbee-hive daemon --addr 127.0.0.1:" + std::to_string(q.hive_port()));
    ASSERT_EQ(pids.size(), 1u);
    hive_pid = pids[0];
  }

  auto warm = q.infer(stories_ref(), {"--max-tokens", "8", "--temperature", "0", "--json"});
  ASSERT_EQ(warm.exit_code, 0) << warm.err;
  EXPECT_EQ(json::parse(warm.out)["text"], json::parse(cold.out)["text"]);
  EXPECT_TRUE(cold.took_step("worker_spawn")) << cold.out;
  EXPECT_TRUE(warm.took_step("worker_selected")) << warm.out;
  for (const char* cold_only : {"hive_start", "download_start", "cold_start", "worker_spawn"}) {
    EXPECT_FALSE(warm.took_step(cold_only)) << cold_only << ": " << warm.out;
  }
  EXPECT_TRUE(contains(warm.err, "time to first token")) << warm.err;
  auto workers_after = q.workers();
  ASSERT_EQ(workers_after.size(), 1u);
  EXPECT_EQ(workers_after[0]["worker_id"], workers_before[0]["worker_id"]);
  auto pids =
      pids_with_cmdline("rbee-hive daemon --addr 127.0.0.1:" + std::to_string(q.hive_port()));
  ASSERT_EQ(pids.size(), 1u);
  EXPECT_EQ(pids[0], hive_pid) << "the hive was restarted";
}

TEST_F(Scenarios_B, S11_cold_start_localhost) {
  EXPECT_FALSE(q.hive_alive());
  auto r = q.infer(hub_ref, {"--max-tokens", "12", "--temperature", "0", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err << q.logs();
  // Every phase is narrated (stderr has the words; the JSON result lists the actions).
  for (const char* phase : {"hive_start", "hive_ready", "download_start", "download_complete",
                            "worker_spawn", "worker_ready"}) {
    EXPECT_TRUE(r.took_step(phase)) << phase << ": " << r.out;
  }
  EXPECT_TRUE(contains(r.err, hub_ref)) << "the narration names the model: " << r.err;
  auto out = json::parse(r.out, nullptr, false);
  ASSERT_TRUE(out.is_object()) << r.out;
  // Exactly --max-tokens tokens unless EOS came first.
  if (out["stop_reason"] == "max_tokens" || out["stop_reason"] == "length") {
    EXPECT_EQ(out["tokens_out"], 12);
  } else {
    EXPECT_EQ(out["stop_reason"], "eos");
    EXPECT_LE(out["tokens_out"].get<int>(), 12);
  }
  EXPECT_EQ(golden_continuation("Once upon a time").rfind(out["text"].get<std::string>(), 0), 0u)
      << out["text"];
  // The hub was asked for the file; the catalog has it now.
  EXPECT_FALSE(hub.downloads(hub_repo, hub_file).empty());
  EXPECT_TRUE(q.hive_alive());
  auto models = q.cli({"models", "list", "--node", "localhost", "--json"});
  ASSERT_EQ(models.exit_code, 0) << models.err;
  EXPECT_TRUE(contains(models.out, hub_ref)) << models.out;
}

TEST_F(Scenarios_B, S12_explicit_backend_device) {
  auto cpu = q.infer(stories_ref(), {"--backend", "cpu", "--max-tokens", "4"});
  EXPECT_EQ(cpu.exit_code, 0) << cpu.err << q.logs();
  EXPECT_FALSE(cpu.out.empty());
  auto listed = q.workers();
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0]["backend"], "cpu");

  auto cuda = q.infer(stories_ref(), {"--backend", "cuda", "--device", "5", "--max-tokens", "4"});
  EXPECT_EQ(cuda.exit_code, 1) << cuda.out << cuda.err;
  EXPECT_TRUE(contains(cuda.err, "Device not available")) << cuda.err;
  EXPECT_TRUE(contains(cuda.err, "Available: cpu")) << cuda.err;
  EXPECT_TRUE(cuda.out.empty()) << "no fallback to another device: " << cuda.out;
  // Still only the cpu worker: nothing was started on a fallback device.
  EXPECT_EQ(q.workers().size(), 1u);
}

TEST_F(Scenarios_B, S14_openai_api) {
  auto c = q.client();
  // Non-streaming chat.
  auto chat = c.post_json("/v1/chat/completions",
                          {{"model", stories_ref()},
                           {"messages", {{{"role", "user"}, {"content", "Once upon a time"}}}},
                           {"max_tokens", 6},
                           {"temperature", 0}});
  ASSERT_EQ(chat.status, 200) << chat.body << q.logs();
  auto cj = chat.json_body();
  EXPECT_EQ(cj["object"], "chat.completion");
  ASSERT_EQ(cj["choices"].size(), 1u);
  EXPECT_EQ(cj["choices"][0]["message"]["role"], "assistant");
  EXPECT_FALSE(cj["choices"][0]["message"]["content"].get<std::string>().empty());
  EXPECT_EQ(cj["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(cj["usage"]["completion_tokens"], 6);
  EXPECT_GT(cj["usage"]["prompt_tokens"].get<int>(), 0);
  EXPECT_EQ(cj["usage"]["total_tokens"].get<int>(),
            cj["usage"]["prompt_tokens"].get<int>() + cj["usage"]["completion_tokens"].get<int>());

  // Streaming chat with usage in the last chunk.
  std::vector<json> chunks;
  int status = c.post_sse("/v1/chat/completions",
                          {{"model", stories_ref()},
                           {"messages", {{{"role", "user"}, {"content", "Once upon a time"}}}},
                           {"max_tokens", 5},
                           {"temperature", 0},
                           {"stream", true},
                           {"stream_options", {{"include_usage", true}}}},
                          [&](const common::sse_event& ev) {
                            if (ev.is_done()) return false;
                            chunks.push_back(ev.json());
                            return true;
                          });
  ASSERT_EQ(status, 200);
  ASSERT_GE(chunks.size(), 2u);
  std::string streamed;
  json usage;
  std::string finish;
  for (const auto& ch : chunks) {
    EXPECT_EQ(ch["object"], "chat.completion.chunk");
    if (ch.contains("usage") && ch["usage"].is_object()) usage = ch["usage"];
    if (ch["choices"].empty()) continue;
    const auto& delta = ch["choices"][0]["delta"];
    if (delta.contains("content")) streamed += delta["content"].get<std::string>();
    if (ch["choices"][0]["finish_reason"].is_string()) finish = ch["choices"][0]["finish_reason"];
  }
  EXPECT_FALSE(streamed.empty());
  EXPECT_EQ(finish, "length");
  ASSERT_TRUE(usage.is_object());
  EXPECT_EQ(usage["completion_tokens"], 5);

  // Legacy completions: same text as the task API greedy continuation.
  auto comp = c.post_json("/v1/completions", {{"model", stories_ref()},
                                              {"prompt", "Once upon a time"},
                                              {"max_tokens", 6},
                                              {"temperature", 0}});
  ASSERT_EQ(comp.status, 200) << comp.body;
  auto pj = comp.json_body();
  EXPECT_EQ(pj["object"], "text_completion");
  EXPECT_EQ(pj["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(pj["usage"]["completion_tokens"], 6);
  EXPECT_EQ(
      golden_continuation("Once upon a time").rfind(pj["choices"][0]["text"].get<std::string>(), 0),
      0u)
      << pj.dump();

  // temperature 0 is exactly llama.cpp's greedy output: no hidden repeat penalty (OpenAI has no
  // field to turn one off). This golden case repeats itself, which a penalty would change.
  const std::string repeating = "Lily and Tom went to the park";
  const std::string golden = golden_continuation(repeating);
  auto greedy = c.post_json(
      "/v1/completions",
      {{"model", stories_ref()}, {"prompt", repeating}, {"max_tokens", 40}, {"temperature", 0}});
  ASSERT_EQ(greedy.status, 200) << greedy.body;
  const std::string greedy_text = greedy.json_body()["choices"][0]["text"];
  EXPECT_EQ(golden.rfind(greedy_text, 0), 0u) << greedy_text;
  EXPECT_GT(greedy_text.size(), golden.find("They wanted to play with the box"))
      << "long enough to reach the repetition: " << greedy_text;

  // The loaded model is listed.
  auto models = c.get("/v1/models");
  ASSERT_EQ(models.status, 200);
  auto mj = models.json_body();
  EXPECT_EQ(mj["object"], "list");
  bool listed = false;
  for (const auto& m : mj["data"]) listed = listed || m["id"] == stories_ref();
  EXPECT_TRUE(listed) << mj.dump();
}

TEST_F(Scenarios_B, S15_determinism) {
  std::vector<std::string> sampled = {"--max-tokens", "16", "--temperature", "0.9", "--seed", "42"};
  auto a = q.infer(stories_ref(), sampled);
  auto b = q.infer(stories_ref(), sampled);
  ASSERT_EQ(a.exit_code, 0) << a.err << q.logs();
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_FALSE(a.out.empty());
  EXPECT_EQ(a.out, b.out) << "same seed must give the same tokens";

  auto g1 = q.infer(stories_ref(), {"--max-tokens", "16", "--temperature", "0"});
  auto g2 = q.infer(stories_ref(), {"--max-tokens", "16", "--temperature", "0", "--seed", "7"});
  ASSERT_EQ(g1.exit_code, 0) << g1.err;
  ASSERT_EQ(g2.exit_code, 0) << g2.err;
  EXPECT_EQ(g1.out, g2.out) << "temperature 0 is greedy: the seed does not matter";
  EXPECT_EQ(golden_continuation("Once upon a time").rfind(g1.text(), 0), 0u) << g1.out;
}

}  // namespace
}  // namespace rbee::e2e::scenario
