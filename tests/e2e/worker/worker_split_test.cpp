// llm-worker-rbee with its model split by layers or by tensors (--devices 0,0 --split layer or
// tensor: two parts on the host, docs/multi-gpu.md): it reports the devices and layers it
// holds and answers as the unsplit worker does; split settings it cannot run are a load error
// naming the problem.
#include <signal.h>

#include <thread>

#include "worker_fixture.h"

namespace rbee::e2e::worker_test {
namespace {

class WorkerSplit : public ::testing::Test {
 protected:
  void SetUp() override { ignore_sigpipe(); }

  // The greedy answer to the split tests' prompt from a worker of the whole model, which also
  // reports its one device and no parts.
  std::string whole_model_text() {
    worker_process whole(home_, {"--model", stories, "--threads", "1"});
    whole.wait_ready();
    auto client = whole.client();
    const json health = client.get("/v1/health").json_body();
    EXPECT_EQ(health["devices"], json::array({0})) << health.dump();
    EXPECT_FALSE(health.contains("parts"));
    const stream_result r = infer(client, greedy(prompt, 24));
    EXPECT_EQ(r.status, 200);
    EXPECT_FALSE(r.text.empty());
    return r.text;
  }

  // A worker started with `args` ends in the error state with `code`, its message naming
  // `names`.
  void expect_load_error(std::vector<std::string> args, const char* code, const char* names) {
    worker_process worker(home_, std::move(args));
    auto client = worker.client();
    const json ready = wait_for_error_state(client);
    ASSERT_EQ(ready["state"], "error") << ready.dump();
    EXPECT_EQ(ready["error"]["code"], code);
    EXPECT_NE(ready["error"].value("message", "").find(names), std::string::npos) << ready.dump();
  }

  static constexpr const char* prompt = "Once upon a time";
  temp_home home_;
};

TEST_F(WorkerSplit, ReportsItsPartsAndAnswersAsTheWholeModel) {
  const std::string whole_text = whole_model_text();
  worker_process split(home_, {"--model", stories, "--threads", "1", "--devices", "0,0", "--split",
                               "layer", "--tensor-split", "2,3"});
  split.wait_ready();
  auto client = split.client();
  const json health = client.get("/v1/health").json_body();
  EXPECT_EQ(health["devices"], json::array({0, 0})) << health.dump();
  EXPECT_EQ(health["split"], "layer");
  ASSERT_EQ(health["parts"].size(), 2u) << health.dump();
  // stories260K has 5 layers: 2 and 3 of them.
  EXPECT_EQ(health["parts"][0]["layers"], json::array({0, 2})) << health.dump();
  EXPECT_EQ(health["parts"][1]["layers"], json::array({2, 5})) << health.dump();
  const stream_result r = infer(client, greedy(prompt, 24));
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.text, whole_text);
}

TEST_F(WorkerSplit, ADeviceThatDoesNotExistIsABackendError) {
  expect_load_error({"--model", stories, "--devices", "0,1", "--split", "layer"},
                    "BACKEND_UNAVAILABLE", "device 1");
}

// Two slices of every layer on the host: every part runs all 5 layers; the greedy text is
// the whole model's.
TEST_F(WorkerSplit, SplitByTensorsReportsItsPartsAndAnswersAsTheWholeModel) {
  const std::string whole_text = whole_model_text();
  worker_process split(
      home_, {"--model", stories, "--threads", "2", "--devices", "0,0", "--split", "tensor"});
  split.wait_ready();
  auto client = split.client();
  const json health = client.get("/v1/health").json_body();
  EXPECT_EQ(health["devices"], json::array({0, 0})) << health.dump();
  EXPECT_EQ(health["split"], "tensor");
  ASSERT_EQ(health["parts"].size(), 2u) << health.dump();
  for (const json& part : health["parts"])
    EXPECT_EQ(part["layers"], json::array({0, 5})) << health.dump();
  const stream_result r = infer(client, greedy(prompt, 24));
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.text, whole_text);
}

// stories260K's 8 heads do not divide into 3 parts.
TEST_F(WorkerSplit, HeadsThatDoNotDivideAreALoadError) {
  expect_load_error({"--model", stories, "--devices", "0,0,0", "--split", "tensor"},
                    "MODEL_LOAD_FAILED", "do not divide into 3");
}

}  // namespace
}  // namespace rbee::e2e::worker_test
