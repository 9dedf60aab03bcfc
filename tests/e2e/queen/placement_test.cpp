// Placement on real binaries: a node whose hive lists a CUDA device with room gets the model on
// that device, not on its CPU, when the request names no backend. Without a GPU the device comes
// from a stand-in `nvidia-smi` on the hive's PATH (the hive, queen and CLI are the real ones); the
// worker then cannot start on CUDA here, which the client hears as a clear error.
#include <gtest/gtest.h>

#include "harness/scenario_fixture.h"

namespace rbee::e2e::scenario {
namespace {

class Placement : public local_node_test {};

TEST_F(Placement, AGpuWithRoomIsChosenOverTheCpu) {
  const bool real_gpu = have_cuda_device();
  if (!real_gpu) give_hive_a_stand_in_gpu(q, 61 * 1024);
  q.start();
  auto r = q.cli({"infer", "--model", stories_ref(), "--prompt", "Once upon a time", "--max-tokens",
                  "4", "--temperature", "0", "--json"});
  EXPECT_TRUE(contains(r.err, "cuda:0")) << r.err << q.logs();
  EXPECT_FALSE(contains(r.err, "cold start on localhost cpu")) << r.err;
  if (real_gpu) {
    EXPECT_EQ(r.exit_code, 0) << r.err;
    auto ws = q.workers();
    ASSERT_EQ(ws.size(), 1u) << ws.dump();
    EXPECT_EQ(ws[0]["backend"], "cuda");
  } else {
    // This build's worker has no CUDA backend: the failed load is the client's error.
    EXPECT_NE(r.exit_code, 0) << r.out;
  }
}

TEST_F(Placement, AGpuWithoutRoomLeavesTheModelToTheCpu) {
  if (have_cuda_device()) GTEST_SKIP() << "a real GPU has room for stories260K";
  give_hive_a_stand_in_gpu(q, 1);
  q.start();
  auto r = q.cli({"infer", "--model", stories_ref(), "--prompt", "Once upon a time", "--max-tokens",
                  "4", "--temperature", "0"});
  ASSERT_EQ(r.exit_code, 0) << r.err << q.logs();
  EXPECT_TRUE(contains(r.err, "on its CPU instead")) << r.err;
  auto ws = q.workers();
  ASSERT_FALSE(ws.empty());
  EXPECT_EQ(ws.back()["backend"], "cpu") << ws.dump();
}

}  // namespace
}  // namespace rbee::e2e::scenario

namespace rbee::e2e::scenario {
namespace {

// One file, one set of workers: the catalog id of a file and its file: reference are one model.
TEST_F(Placement, AnAliasAndThePathOfOneFileShareTheirWorker) {
  q.start();
  auto first = q.infer(stories_ref(), {"--max-tokens", "2"});
  ASSERT_EQ(first.exit_code, 0) << first.err << q.logs();
  auto list = q.cli({"models", "list", "--json"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  std::string alias;
  const auto listing = nlohmann::json::parse(list.out);
  for (const auto& m : listing["models"]) {
    if (m.value("file", "") == "stories260K.gguf") alias = m.value("id", "");
  }
  ASSERT_FALSE(alias.empty()) << list.out;
  auto again = q.cli(
      {"infer", "--model", alias, "--prompt", "Once upon a time", "--max-tokens", "2", "--json"});
  ASSERT_EQ(again.exit_code, 0) << again.err << q.logs();
  EXPECT_TRUE(again.took_step("worker_selected") && !again.took_step("worker_spawn")) << again.out;
  EXPECT_EQ(q.workers().size(), 1u);
}

// The command line sizes the worker a task starts (as Ollama's num_ctx and keep_alive); a warm
// worker then serves later tasks as it is.
TEST_F(Placement, TheCommandLineSizesTheWorkerATaskStarts) {
  q.start();
  auto r = q.infer(stories_ref(),
                   {"--max-tokens", "2", "--ctx", "512", "--slots", "2", "--keep-alive", "90s"});
  ASSERT_EQ(r.exit_code, 0) << r.err << q.logs();
  auto workers = q.workers();
  ASSERT_EQ(workers.size(), 1u);
  EXPECT_EQ(workers[0]["ctx"], 512) << workers[0].dump();
  EXPECT_EQ(workers[0]["slots_total"], 2) << workers[0].dump();
  EXPECT_EQ(workers[0]["keep_alive_s"], 90) << workers[0].dump();

  auto bad = q.cli({"infer", "--model", stories_ref(), "--prompt", "x", "--keep-alive", "5x"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_TRUE(contains(bad.err, "expected a duration")) << bad.err;
  auto refused =
      q.run_task(nlohmann::json{{"model", stories_ref()}, {"prompt", "x"}, {"slots", 0}});
  EXPECT_EQ(refused.status, 400);
  EXPECT_EQ(refused.error.json_body()["error"]["details"]["field"], "slots") << refused.error.body;
}

// `rbee infer --devices 0,0 --split layer` reaches the worker through the queen and the hive
// (two parts on the host: the CPU is device 0, named once per part); the worker's record names
// its devices, a task forcing the same devices takes it warm, and a device the node lacks or
// an unknown split is refused.
TEST_F(Placement, TheCommandLineSplitsTheWorkerATaskStartsAcrossDevices) {
  q.start();
  auto missing = q.cli({"infer", "--model", stories_ref(), "--prompt", "x", "--backend", "cpu",
                        "--devices", "0,1", "--split", "layer", "--json"});
  EXPECT_NE(missing.exit_code, 0);
  const auto error = nlohmann::json::parse(missing.out)["error"];
  EXPECT_EQ(error["code"], "BACKEND_UNAVAILABLE") << missing.out;
  EXPECT_EQ(error["details"]["field"], "devices") << missing.out;
  auto r = q.infer(stories_ref(), {"--max-tokens", "4", "--backend", "cpu", "--devices", "0,0",
                                   "--split", "layer"});
  ASSERT_EQ(r.exit_code, 0) << r.err << q.logs();
  auto workers = q.workers();
  ASSERT_EQ(workers.size(), 1u);
  EXPECT_EQ(workers[0]["devices"], nlohmann::json::array({0, 0})) << workers[0].dump();
  auto again = q.infer(stories_ref(), {"--max-tokens", "2", "--backend", "cpu", "--devices", "0,0",
                                       "--split", "layer", "--json"});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_TRUE(again.took_step("worker_selected") && !again.took_step("worker_spawn")) << again.out;

  auto refused = q.run_task(nlohmann::json{
      {"model", stories_ref()}, {"prompt", "x"}, {"devices", {0, 1}}, {"split", "row"}});
  EXPECT_EQ(refused.status, 400);
  EXPECT_EQ(refused.error.json_body()["error"]["details"]["field"], "split") << refused.error.body;
}

// `rbee infer --devices 0,0 --split tensor`: the worker the task starts holds a slice of
// every layer on each part, and its record says so.
TEST_F(Placement, TheCommandLineSplitsTheWorkerATaskStartsByTensors) {
  q.start();
  auto r = q.infer(stories_ref(), {"--max-tokens", "4", "--backend", "cpu", "--devices", "0,0",
                                   "--split", "tensor"});
  ASSERT_EQ(r.exit_code, 0) << r.err << q.logs();
  auto workers = q.workers();
  ASSERT_EQ(workers.size(), 1u);
  EXPECT_EQ(workers[0]["devices"], nlohmann::json::array({0, 0})) << workers[0].dump();
  EXPECT_EQ(workers[0]["split"], "tensor") << workers[0].dump();
  auto list = q.cli({"workers", "list"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_NE(list.out.find("cpu:0,0 tensor"), std::string::npos) << list.out;
}

}  // namespace
}  // namespace rbee::e2e::scenario
