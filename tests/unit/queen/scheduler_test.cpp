#include "queen/scheduler.h"

#include <gtest/gtest.h>

#include "queen/http_edge.h"

#include <atomic>
#include <future>
#include <thread>
#include <vector>

#include "api/requests.h"
#include "common/clock.h"
#include "common/errors.h"

namespace rbee::queen {
namespace {

using namespace std::chrono_literals;

worker_info make_worker(std::string id, std::string node, std::string model,
                        worker_state state = worker_state::idle, int slots = 1) {
  worker_info w;
  w.worker_id = std::move(id);
  w.node = std::move(node);
  w.model_ref = std::move(model);
  w.url = "http://127.0.0.1:8001";
  w.state = state;
  w.slots_total = slots;
  return w;
}

worker_view view(worker_info info, int in_flight = 0) {
  worker_view v;
  v.info = std::move(info);
  v.in_flight = in_flight;
  return v;
}

task_key key(std::string model, std::optional<std::string> node = std::nullopt) {
  task_key k;
  k.model = std::move(model);
  k.node = std::move(node);
  return k;
}

// A CPU-only node with `ram_free` bytes free (nullopt: unknown).
node_capacity node(std::string name, bool reachable, std::optional<uint64_t> ram_free) {
  node_capacity n;
  n.node = std::move(name);
  n.reachable = reachable;
  n.ram_free_bytes = ram_free;
  return n;
}

TEST(Decide, IdleWorkerWithTheModelIsWarm) {
  std::vector<worker_view> workers = {view(make_worker("w1", "a", "m1")),
                                      view(make_worker("w2", "b", "m2"))};
  std::vector<node_capacity> nodes = {node("a", true, 1000), node("b", true, 1000)};
  auto d = decide(key("m2"), workers, nodes, scheduler_options{});
  EXPECT_EQ(d.kind, decision_kind::warm);
  EXPECT_EQ(d.worker_id, "w2");
}

TEST(Decide, PrefersTheWorkerWithMostFreeSlots) {
  std::vector<worker_view> workers = {view(make_worker("w1", "a", "m", worker_state::busy, 4), 3),
                                      view(make_worker("w2", "a", "m", worker_state::idle, 4), 1)};
  auto d = decide(key("m"), workers, {node("a", true, 1000)}, scheduler_options{});
  EXPECT_EQ(d.kind, decision_kind::warm);
  EXPECT_EQ(d.worker_id, "w2");
}

TEST(Decide, BusyWorkerAtTheLimitMeansWait) {
  std::vector<worker_view> workers = {view(make_worker("w1", "a", "m"), 1)};
  auto d = decide(key("m"), workers, {node("a", true, 1000)}, scheduler_options{});
  EXPECT_EQ(d.kind, decision_kind::wait);
}

TEST(Decide, AReplicaStartsElsewhereOnceTheQueueReachesTheThreshold) {
  std::vector<worker_view> workers = {view(make_worker("w1", "a", "m"), 1)};
  std::vector<node_capacity> nodes = {node("a", true, 1000), node("b", true, 1000)};
  scheduler_options o;
  o.max_replicas = 2;
  o.replica_queue_threshold = 3;
  EXPECT_EQ(decide(key("m"), workers, nodes, o, 1).kind, decision_kind::wait)
      << "two waiting tasks are below the threshold";
  auto d = decide(key("m"), workers, nodes, o, 2);
  EXPECT_EQ(d.kind, decision_kind::cold);
  EXPECT_EQ(d.node, "b") << "node a's CPU holds the model's worker already";
  EXPECT_NE(d.reason.find("replica 2 of 2"), std::string::npos) << d.reason;
  // At the cap, tasks wait however long the queue.
  workers.push_back(view(make_worker("w2", "b", "m"), 1));
  EXPECT_EQ(decide(key("m"), workers, nodes, o, 50).kind, decision_kind::wait);
  // One start at a time: a replica being started is waited for.
  workers.pop_back();
  auto starting = make_worker("p1", "b", "m", worker_state::spawning);
  workers.push_back(view(starting, 1));
  o.max_replicas = 3;
  EXPECT_EQ(decide(key("m"), workers, nodes, o, 50).kind, decision_kind::wait);
}

TEST(Decide, LoadingWorkerIsWaitedFor) {
  std::vector<worker_view> workers = {view(make_worker("w1", "a", "m", worker_state::loading))};
  auto d = decide(key("m"), workers, {node("a", true, 1000)}, scheduler_options{});
  EXPECT_EQ(d.kind, decision_kind::wait);
}

TEST(Decide, ColdStartGoesToTheNodeWithMostFreeMemoryThatFits) {
  std::vector<node_capacity> nodes = {node("small", true, 100), node("big", true, 5000),
                                      node("medium", true, 2000), node("down", false, 9000)};
  auto k = key("m");
  k.model_bytes = 1500;
  auto d = decide(k, {}, nodes, scheduler_options{});
  EXPECT_EQ(d.kind, decision_kind::cold);
  EXPECT_EQ(d.node, "big");
}

TEST(Decide, NothingFitsGoesToTheHivesPreflightForItsPreciseAnswer) {
  auto k = key("m");
  k.model_bytes = 10'000;
  auto d = decide(k, {}, {node("a", true, 100), node("b", true, 500)}, scheduler_options{});
  EXPECT_EQ(d.kind, decision_kind::cold);
  EXPECT_EQ(d.node, "b");
  EXPECT_NE(d.reason.find("preflight"), std::string::npos) << d.reason;
  // Only the first worker: with one running, the others wait for it.
  std::vector<worker_view> workers = {view(make_worker("w1", "b", "m"), 1)};
  EXPECT_EQ(decide(k, workers, {node("a", true, 100)}, scheduler_options{}, 5).kind,
            decision_kind::wait);
}

// A worker of the model on the only device, loaded without the split a task asks for, keeps
// the device: the reason names it and what to do, rather than "no node may start a worker".
TEST(Decide, ADeviceHeldByAnotherWorkerOfTheModelIsNamed) {
  auto whole = make_worker("w-whole", "a", "m", worker_state::idle, 4);
  task_key k = key("m");
  k.devices = {0, 0};
  k.split = "tensor";
  auto d = decide(k, {view(whole)}, {node("a", true, 1000)}, scheduler_options{});
  EXPECT_EQ(d.kind, decision_kind::none);
  EXPECT_NE(d.reason.find("a cpu (w-whole)"), std::string::npos) << d.reason;
  EXPECT_NE(d.reason.find("--max-workers-per-model"), std::string::npos) << d.reason;
}

TEST(Decide, NamedNodeIsRespected) {
  std::vector<worker_view> workers = {view(make_worker("w1", "a", "m"))};
  auto d = decide(key("m", "b"), workers, {node("a", true, 1000), node("b", true, 10)},
                  scheduler_options{});
  EXPECT_EQ(d.kind, decision_kind::cold);
  EXPECT_EQ(d.node, "b");
}

TEST(Decide, BackendFilterExcludesOtherBackends) {
  auto w = make_worker("w1", "a", "m");
  w.backend = "cpu";
  auto k = key("m");
  k.backend = "cuda";
  auto cpu_only = decide(k, {view(w)}, {node("a", true, 1000)}, scheduler_options{});
  EXPECT_EQ(cpu_only.kind, decision_kind::cold) << "the hive tells which devices it has";
  EXPECT_EQ(cpu_only.backend, "cuda");
  EXPECT_NE(cpu_only.reason.find("preflight"), std::string::npos) << cpu_only.reason;
  auto with_gpu = node("a", true, 1000);
  with_gpu.gpus = {{.device = 1, .free_bytes = 5000}};
  auto d = decide(k, {view(w)}, {with_gpu}, scheduler_options{});
  EXPECT_EQ(d.kind, decision_kind::cold);
  EXPECT_EQ(d.backend, "cuda");
  EXPECT_EQ(d.device, 1);
}

TEST(Decide, AForcedLayerSplitTakesOnlyAWorkerOnTheSameDevices) {
  auto single = make_worker("w1", "a", "m");
  single.backend = "cuda";
  auto split = make_worker("w2", "a", "m");
  split.backend = "cuda";
  split.devices = {0, 1};
  split.split = "layer";
  auto k = key("m");
  k.devices = {0, 1};
  k.split = "layer";
  k.device = 0;
  auto d = decide(k, {view(single), view(split)}, {node("a", true, 1000)}, scheduler_options{});
  EXPECT_EQ(d.kind, decision_kind::warm);
  EXPECT_EQ(d.worker_id, "w2");
  auto cold = decide(k, {view(single)}, {node("a", true, 1000)}, scheduler_options{});
  EXPECT_NE(cold.kind, decision_kind::warm) << "the single-device worker does not serve it";
  auto tensor = k;
  tensor.split = "tensor";
  EXPECT_NE(decide(tensor, {view(split)}, {node("a", true, 1000)}, scheduler_options{}).kind,
            decision_kind::warm)
      << "a layer split on the same devices does not serve a tensor split";
  // A task that forces nothing takes the split worker as it is.
  EXPECT_EQ(decide(key("m"), {view(split)}, {node("a", true, 1000)}, scheduler_options{}).kind,
            decision_kind::warm);
}

class SchedulerTest : public ::testing::Test {
 protected:
  common::manual_clock clock;
  scheduler_options options() {
    scheduler_options o;
    o.queue_size = 2;
    o.queue_timeout = 10s;
    o.retry_after_s = 3;
    return o;
  }
};

TEST_F(SchedulerTest, WarmLeaseHoldsTheSlotUntilReleased) {
  scheduler s(options(), clock);
  s.set_nodes({node("a", true, std::nullopt)});
  s.update_node_workers("a", {make_worker("w1", "a", "m")});
  auto first = s.admit(key("m"));
  ASSERT_TRUE(first.placed);
  EXPECT_EQ(first.placed->kind, decision_kind::warm);
  auto second = s.admit(key("m"));
  EXPECT_FALSE(second.placed);
  EXPECT_EQ(second.position, 1u);
  EXPECT_EQ(s.queue_depth(), 1u);
  s.release("w1");
  auto lease = s.wait(second);
  ASSERT_TRUE(lease);
  EXPECT_EQ(lease->worker.worker_id, "w1");
  EXPECT_EQ(s.queue_depth(), 0u);
}

TEST_F(SchedulerTest, FullQueueIs503WithRetryAfter) {
  scheduler s(options(), clock);
  s.set_nodes({node("a", true, std::nullopt)});
  s.update_node_workers("a", {make_worker("w1", "a", "m")});
  auto running = s.admit(key("m"));
  auto q1 = s.admit(key("m"));
  auto q2 = s.admit(key("m"));
  try {
    s.admit(key("m"));
    FAIL() << "expected QUEUE_FULL";
  } catch (const error& e) {
    EXPECT_EQ(to_http_error(e).status, 503);
    EXPECT_EQ(e.code, "QUEUE_FULL");
    ASSERT_TRUE(e.retry_after_s);
    EXPECT_EQ(*e.retry_after_s, 3);
  }
  s.abandon(q1);
  s.abandon(q2);
  EXPECT_EQ(s.queue_depth(), 0u);
}

TEST_F(SchedulerTest, QueuedTasksAreServedInOrder) {
  auto o = options();
  o.queue_size = 8;
  scheduler s(o, clock);
  s.set_nodes({node("a", true, std::nullopt)});
  s.update_node_workers("a", {make_worker("w1", "a", "m")});
  auto running = s.admit(key("m"));
  ASSERT_TRUE(running.placed);
  std::vector<admission> waiting;
  for (int i = 0; i < 3; ++i) waiting.push_back(s.admit(key("m")));
  std::mutex mutex;
  std::vector<int> order;
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back([&, i] {
      auto l = s.wait(waiting[i]);
      ASSERT_TRUE(l);
      {
        std::lock_guard lock(mutex);
        order.push_back(i);
      }
      std::this_thread::sleep_for(20ms);
      s.release(l->worker.worker_id);
    });
  }
  std::this_thread::sleep_for(50ms);
  s.release("w1");
  for (auto& t : threads) t.join();
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2}));
}

TEST_F(SchedulerTest, QueueDeadlineComesFromTheInjectedClock) {
  scheduler s(options(), clock);
  s.set_nodes({node("a", true, std::nullopt)});
  s.update_node_workers("a", {make_worker("w1", "a", "m")});
  auto running = s.admit(key("m"));
  auto waiting = s.admit(key("m"));
  auto result = std::async(std::launch::async, [&] { return s.wait(waiting); });
  EXPECT_EQ(result.wait_for(150ms), std::future_status::timeout);  // real time does not count
  clock.advance(11s);
  try {
    result.get();
    FAIL() << "expected ALL_SLOTS_BUSY";
  } catch (const error& e) {
    EXPECT_EQ(e.code, "ALL_SLOTS_BUSY");
    EXPECT_EQ(to_http_error(e).status, 503);
  }
  EXPECT_EQ(s.queue_depth(), 0u);
}

TEST_F(SchedulerTest, CancelledWaiterLeavesTheQueue) {
  scheduler s(options(), clock);
  s.set_nodes({node("a", true, std::nullopt)});
  s.update_node_workers("a", {make_worker("w1", "a", "m")});
  auto running = s.admit(key("m"));
  auto waiting = s.admit(key("m"));
  std::atomic<bool> cancel{false};
  auto result = std::async(std::launch::async,
                           [&] { return s.wait(waiting, [&] { return cancel.load(); }); });
  cancel = true;
  EXPECT_FALSE(result.get().has_value());
  EXPECT_EQ(s.queue_depth(), 0u);
}

TEST_F(SchedulerTest, ColdStartReservesSoConcurrentTasksQueueBehindIt) {
  scheduler s(options(), clock);
  s.set_nodes({node("localhost", true, std::nullopt)});
  auto cold = s.admit(key("m", "localhost"));
  ASSERT_TRUE(cold.placed);
  EXPECT_EQ(cold.placed->kind, decision_kind::cold);
  EXPECT_EQ(cold.placed->node, "localhost");
  auto second = s.admit(key("m", "localhost"));
  EXPECT_FALSE(second.placed) << "a second cold start for the same model must wait";

  auto w = make_worker("w9", "localhost", "m", worker_state::loading);
  s.cold_spawned(cold.placed->placeholder_id, w);
  // The hive reports the worker ready before the cold task claims it: the slot stays held.
  s.update_node_workers("localhost", {make_worker("w9", "localhost", "m")});
  EXPECT_EQ(s.queue_depth(), 1u);
  s.cold_ready(make_worker("w9", "localhost", "m"));
  s.release("w9");
  auto l = s.wait(second);
  ASSERT_TRUE(l);
  EXPECT_EQ(l->kind, decision_kind::warm);
  EXPECT_EQ(l->worker.worker_id, "w9");
}

TEST_F(SchedulerTest, AReportFasterThanTheSpawnAnswerDoesNotGiveAwayTheColdSlot) {
  scheduler s(options(), clock);
  s.set_nodes({node("localhost", true, std::nullopt)});
  auto cold = s.admit(key("m", "localhost"));
  ASSERT_TRUE(cold.placed);
  auto second = s.admit(key("m", "localhost"));
  ASSERT_FALSE(second.placed);
  // The new worker is already ready in the hive's report before cold_spawned is called.
  s.update_node_workers("localhost", {make_worker("w9", "localhost", "m")});
  EXPECT_EQ(s.queue_depth(), 1u) << "the queued task took the cold task's slot";
  s.cold_spawned(cold.placed->placeholder_id, make_worker("w9", "localhost", "m"));
  s.cold_ready(make_worker("w9", "localhost", "m"));
  auto workers = s.workers();
  ASSERT_EQ(workers.size(), 1u);
  EXPECT_EQ(workers[0].in_flight, 1);
  s.release("w9");
  auto l = s.wait(second);
  ASSERT_TRUE(l);
  EXPECT_EQ(l->worker.worker_id, "w9");
}

TEST_F(SchedulerTest, AStartThatFailsAfterAReportShowedItsWorkerFreesTheSlot) {
  scheduler s(options(), clock);
  s.set_nodes({node("localhost", true, std::nullopt)});
  auto cold = s.admit(key("m", "localhost"));
  auto second = s.admit(key("m", "localhost"));
  s.update_node_workers("localhost", {make_worker("w9", "localhost", "m")});
  s.cold_failed(cold.placed->placeholder_id);
  auto l = s.wait(second);
  ASSERT_TRUE(l);
  EXPECT_EQ(l->kind, decision_kind::warm);
  EXPECT_EQ(l->worker.worker_id, "w9");
}

TEST_F(SchedulerTest, FailedColdStartLetsTheNextTaskTry) {
  scheduler s(options(), clock);
  s.set_nodes({node("a", true, std::nullopt)});
  auto cold = s.admit(key("m"));
  auto second = s.admit(key("m"));
  ASSERT_FALSE(second.placed);
  s.cold_failed(cold.placed->placeholder_id);
  auto l = s.wait(second);
  ASSERT_TRUE(l);
  EXPECT_EQ(l->kind, decision_kind::cold);
}

TEST_F(SchedulerTest, WorkersMissingFromAReportAreGone) {
  scheduler s(options(), clock);
  s.update_node_workers("a", {make_worker("w1", "a", "m"), make_worker("w2", "a", "m")});
  s.update_node_workers("b", {make_worker("w3", "b", "m")});
  s.update_node_workers("a", {make_worker("w2", "a", "m")});
  auto ws = s.workers();
  ASSERT_EQ(ws.size(), 2u);
  s.drop_node_workers("b");
  ws = s.workers();
  ASSERT_EQ(ws.size(), 1u);
  EXPECT_EQ(ws[0].info.worker_id, "w2");
}

TEST_F(SchedulerTest, UnreachableEverywhereIsNodeUnreachable) {
  scheduler s(options(), clock);
  s.set_nodes({node("a", false, std::nullopt)});
  try {
    s.admit(key("m"));
    FAIL();
  } catch (const error& e) {
    EXPECT_EQ(e.code, "NODE_UNREACHABLE");
  }
}

}  // namespace
}  // namespace rbee::queen

namespace rbee::queen {
namespace {

TEST(SchedulerSlots, ATaskOfNChoicesHoldsNSlotsOfOneWorker) {
  common::manual_clock clock;
  scheduler_options options;
  options.max_slots_per_worker = 4;
  scheduler s(options, clock);
  s.set_nodes({node("a", true, std::nullopt)});
  worker_info w;
  w.worker_id = "w1";
  w.node = "a";
  w.model_ref = "m";
  w.url = "http://127.0.0.1:1";
  w.state = worker_state::idle;
  w.slots_total = 3;
  s.update_node_workers("a", {w});
  task_key two = key("m");
  two.slots = 2;
  auto first = s.admit(two);
  ASSERT_TRUE(first.placed);
  EXPECT_EQ(first.placed->slots, 2);
  EXPECT_EQ(s.workers()[0].in_flight, 2);
  // One slot is left: a second task of two choices waits, a single one does not.
  auto waiting = s.admit(two);
  EXPECT_FALSE(waiting.placed);
  s.release("w1", 2);
  auto l = s.wait(waiting);
  ASSERT_TRUE(l);
  EXPECT_EQ(s.workers()[0].in_flight, 2);
  // A worker too small for a task does not stop a larger one from starting.
  task_key four = two;
  four.slots = 4;
  auto bigger = s.admit(four);
  ASSERT_TRUE(bigger.placed);
  EXPECT_EQ(bigger.placed->kind, decision_kind::cold);
  // More choices than any worker may have is the client's mistake.
  task_key five = two;
  five.slots = 5;
  try {
    s.admit(five);
    ADD_FAILURE() << "n above the slot cap was admitted";
  } catch (const error& e) {
    EXPECT_EQ(e.code, common::codes::INVALID_REQUEST);
    EXPECT_EQ(e.details.value("field", ""), "n");
  }
}

}  // namespace
}  // namespace rbee::queen

namespace rbee::queen {
namespace {

constexpr uint64_t gib = uint64_t{1} << 30;

node_capacity fleet_node(std::string name, std::optional<uint64_t> ram,
                         std::vector<gpu_capacity> gpus = {},
                         std::vector<std::string> cached = {}) {
  node_capacity n = node(std::move(name), true, ram);
  n.gpus = std::move(gpus);
  n.cached_models = std::move(cached);
  return n;
}

struct placement_case {
  const char* what;
  std::vector<node_capacity> nodes;
  std::vector<worker_view> workers;  // load on the nodes
  placement_policy policy;
  uint64_t model_bytes;
  const char* node;
  const char* backend;
  int device;
  const char* reason;  // the narrated reason, exactly
};

// A file: reference is a path on the node: the reason must not promise a download.
TEST(Placement, AFileReferenceIsNotCalledADownload) {
  auto k = key("file:/models/stories260K.gguf");
  auto d = decide(k, {}, {fleet_node("workstation", 16 * gib, {{0, 61 * gib}})}, {});
  ASSERT_EQ(d.kind, decision_kind::cold);
  EXPECT_EQ(d.reason, "on workstation cuda:0: 61 GiB free, model file on the node");
}

TEST(Placement, ATableOfFleets) {
  auto busy = [](const char* node, int in_flight) {
    auto w = make_worker(std::string("other-") + node, node, "other-model");
    return view(w, in_flight);
  };
  const std::vector<placement_case> cases = {
      {"a GPU that fits wins over every CPU",
       {fleet_node("cpu-box", 200 * gib), fleet_node("workstation", 16 * gib, {{0, 61 * gib}})},
       {},
       placement_policy::spread,
       4 * gib,
       "workstation",
       "cuda",
       0,
       "on workstation cuda:0: 61 GiB free, model to download"},
      {"a GPU too small for the model leaves it to the CPU",
       {fleet_node("laptop", 32 * gib, {{0, 2 * gib}})},
       {},
       placement_policy::spread,
       4 * gib,
       "laptop",
       "cpu",
       0,
       "on laptop cpu: 32 GiB free, model to download"},
      {"spread picks the GPU with the most free memory",
       {fleet_node("workstation", 16 * gib, {{0, 20 * gib}, {1, 61 * gib}})},
       {},
       placement_policy::spread,
       4 * gib,
       "workstation",
       "cuda",
       1,
       "on workstation cuda:1: 61 GiB free, model to download"},
      {"binpack picks the GPU with the least free memory that fits",
       {fleet_node("workstation", 16 * gib, {{0, 20 * gib}, {1, 61 * gib}, {2, 3 * gib}})},
       {},
       placement_policy::binpack,
       4 * gib,
       "workstation",
       "cuda",
       0,
       "on workstation cuda:0: 20 GiB free, model to download"},
      {"the node that has the file beats more memory elsewhere",
       {fleet_node("big", 500 * gib), fleet_node("small", 16 * gib, {}, {"m"})},
       {},
       placement_policy::spread,
       4 * gib,
       "small",
       "cpu",
       0,
       "on small cpu: 16 GiB free, model cached"},
      {"equal memory: the node with less load",
       {fleet_node("a", 16 * gib), fleet_node("b", 16 * gib)},
       {busy("a", 3)},
       placement_policy::spread,
       gib,
       "b",
       "cpu",
       0,
       "on b cpu: 16 GiB free, model to download"},
      {"unknown memory ranks after known memory that fits",
       {fleet_node("mystery", std::nullopt), fleet_node("known", 8 * gib)},
       {},
       placement_policy::spread,
       gib,
       "known",
       "cpu",
       0,
       "on known cpu: 8 GiB free, model to download"},
  };
  for (const auto& c : cases) {
    scheduler_options o;
    o.policy = c.policy;
    auto k = key("m");
    k.model_bytes = c.model_bytes;
    auto d = decide(k, c.workers, c.nodes, o);
    EXPECT_EQ(d.kind, decision_kind::cold) << c.what;
    EXPECT_EQ(d.node, c.node) << c.what;
    EXPECT_EQ(d.backend, c.backend) << c.what;
    EXPECT_EQ(d.device, c.device) << c.what;
    EXPECT_EQ(d.reason, c.reason) << c.what;
  }
}

TEST(Placement, TheConversationStaysOnItsWorkerWhileItHasRoom) {
  std::vector<worker_view> workers = {view(make_worker("w1", "a", "m", worker_state::busy, 4), 3),
                                      view(make_worker("w2", "b", "m", worker_state::idle, 4), 0)};
  auto k = key("m");
  k.preferred_worker = "w1";
  auto d = decide(k, workers, {node("a", true, 1000), node("b", true, 1000)}, {});
  EXPECT_EQ(d.worker_id, "w1");
  EXPECT_EQ(d.reason, "it holds the conversation");
  workers[0].in_flight = 4;  // full: the most free slots elsewhere
  d = decide(k, workers, {node("a", true, 1000), node("b", true, 1000)}, {});
  EXPECT_EQ(d.worker_id, "w2");
}

TEST(FairQueue, AnotherClientGoesBeforeAFloodsQueuedTasks) {
  common::manual_clock clock;
  scheduler_options o;
  o.queue_size = 32;
  scheduler s(o, clock);
  s.set_nodes({node("a", true, std::nullopt)});
  s.update_node_workers("a", {make_worker("w1", "a", "m", worker_state::idle, 2)});
  auto from = [](const char* client, int priority = 0) {
    auto k = key("m");
    k.client = client;
    k.priority = priority;
    return k;
  };
  std::vector<admission> flood;
  for (int i = 0; i < 6; ++i) flood.push_back(s.admit(from("key-flood")));
  EXPECT_TRUE(flood[0].placed && flood[1].placed);
  auto other = s.admit(from("key-other"));
  ASSERT_FALSE(other.placed);
  s.release("w1", 1, "key-flood");
  auto l = s.wait(other);
  ASSERT_TRUE(l) << "the other client's task was placed first";
  EXPECT_EQ(s.queue_depth("m"), 4u) << "every flood task still waits";
  // Batch work waits behind interactive work of the same client.
  auto batch = s.admit(from("key-other", api::batch_priority));
  auto interactive = s.admit(from("key-flood"));
  s.release("w1", 1, "key-flood");
  s.release("w1", 1, "key-other");
  EXPECT_FALSE(batch.ticket->placed) << "a batch task went before queued interactive ones";
  for (size_t i = 2; i < flood.size(); ++i) s.abandon(flood[i]);
  s.abandon(batch);
  s.abandon(interactive);
}

TEST(FairQueue, AClientAtItsLimitWaitsWithoutBlockingOthers) {
  common::manual_clock clock;
  scheduler_options o;
  o.max_slots_per_client = 1;
  scheduler s(o, clock);
  s.set_nodes({node("a", true, std::nullopt)});
  s.update_node_workers("a", {make_worker("w1", "a", "m", worker_state::idle, 4)});
  auto k = key("m");
  k.client = "key-a";
  auto first = s.admit(k);
  ASSERT_TRUE(first.placed);
  auto second = s.admit(k);
  EXPECT_FALSE(second.placed) << "the client's limit is one slot although three are free";
  auto other = k;
  other.client = "key-b";
  EXPECT_TRUE(s.admit(other).placed) << "another client is not held back";
  s.release("w1", 1, "key-a");
  auto l = s.wait(second);
  ASSERT_TRUE(l);
}

}  // namespace
}  // namespace rbee::queen

namespace rbee::queen {
namespace {

TEST(ModelIdentity, AWorkerOfTheSameFileUnderAnotherNameServesTheTask) {
  auto w = make_worker("w1", "a", "file:/models/stories260K.gguf");
  w.model_id = "stories260k";
  auto k = key("my-alias");
  EXPECT_FALSE(serves_model(k, w)) << "without the catalog's word, names differ";
  k.same_file = {"file:/models/stories260K.gguf", "stories260k"};
  EXPECT_TRUE(serves_model(k, w));
  auto d = decide(k, {view(w)}, {node("a", true, 1000)}, {});
  EXPECT_EQ(d.kind, decision_kind::warm);
  EXPECT_EQ(d.worker_id, "w1");
}

}  // namespace
}  // namespace rbee::queen
