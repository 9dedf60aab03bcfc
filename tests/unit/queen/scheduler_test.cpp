#include "queen/scheduler.h"

#include <gtest/gtest.h>

#include "queen/http_edge.h"

#include <atomic>
#include <future>
#include <thread>
#include <vector>

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
  return task_key{.model = std::move(model),
                  .node = std::move(node),
                  .backend = {},
                  .device = {},
                  .model_bytes = 0};
}

TEST(Decide, IdleWorkerWithTheModelIsWarm) {
  std::vector<worker_view> workers = {view(make_worker("w1", "a", "m1")),
                                      view(make_worker("w2", "b", "m2"))};
  std::vector<node_capacity> nodes = {{"a", true, 1000}, {"b", true, 1000}};
  auto d = decide(key("m2"), workers, nodes, scheduler_options{});
  EXPECT_EQ(d.kind, decision_kind::warm);
  EXPECT_EQ(d.worker_id, "w2");
}

TEST(Decide, PrefersTheWorkerWithMostFreeSlots) {
  std::vector<worker_view> workers = {view(make_worker("w1", "a", "m", worker_state::busy, 4), 3),
                                      view(make_worker("w2", "a", "m", worker_state::idle, 4), 1)};
  auto d = decide(key("m"), workers, {{"a", true, 1000}}, scheduler_options{});
  EXPECT_EQ(d.kind, decision_kind::warm);
  EXPECT_EQ(d.worker_id, "w2");
}

TEST(Decide, BusyWorkerAtTheLimitMeansWait) {
  std::vector<worker_view> workers = {view(make_worker("w1", "a", "m"), 1)};
  auto d = decide(key("m"), workers, {{"a", true, 1000}}, scheduler_options{});
  EXPECT_EQ(d.kind, decision_kind::wait);
}

TEST(Decide, BusyWorkerBelowTheLimitStartsAnother) {
  std::vector<worker_view> workers = {view(make_worker("w1", "a", "m"), 1)};
  scheduler_options o;
  o.max_workers_per_model = 2;
  auto d = decide(key("m"), workers, {{"a", true, 1000}}, o);
  EXPECT_EQ(d.kind, decision_kind::cold);
  EXPECT_EQ(d.node, "a");
}

TEST(Decide, LoadingWorkerIsWaitedFor) {
  std::vector<worker_view> workers = {view(make_worker("w1", "a", "m", worker_state::loading))};
  auto d = decide(key("m"), workers, {{"a", true, 1000}}, scheduler_options{});
  EXPECT_EQ(d.kind, decision_kind::wait);
}

TEST(Decide, ColdStartGoesToTheNodeWithMostFreeMemoryThatFits) {
  std::vector<node_capacity> nodes = {
      {"small", true, 100}, {"big", true, 5000}, {"medium", true, 2000}, {"down", false, 9000}};
  auto k = key("m");
  k.model_bytes = 1500;
  auto d = decide(k, {}, nodes, scheduler_options{});
  EXPECT_EQ(d.kind, decision_kind::cold);
  EXPECT_EQ(d.node, "big");
}

TEST(Decide, NothingFitsIsNoneWithAReason) {
  auto k = key("m");
  k.model_bytes = 10'000;
  auto d = decide(k, {}, {{"a", true, 100}}, scheduler_options{});
  EXPECT_EQ(d.kind, decision_kind::none);
  EXPECT_NE(d.reason.find("memory"), std::string::npos);
}

TEST(Decide, NamedNodeIsRespected) {
  std::vector<worker_view> workers = {view(make_worker("w1", "a", "m"))};
  auto d =
      decide(key("m", "b"), workers, {{"a", true, 1000}, {"b", true, 10}}, scheduler_options{});
  EXPECT_EQ(d.kind, decision_kind::cold);
  EXPECT_EQ(d.node, "b");
}

TEST(Decide, BackendFilterExcludesOtherBackends) {
  auto w = make_worker("w1", "a", "m");
  w.backend = "cpu";
  auto k = key("m");
  k.backend = "cuda";
  auto d = decide(k, {view(w)}, {{"a", true, 1000}}, scheduler_options{});
  EXPECT_EQ(d.kind, decision_kind::cold);
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
  s.set_nodes({{"a", true, std::nullopt}});
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
  s.set_nodes({{"a", true, std::nullopt}});
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
  s.set_nodes({{"a", true, std::nullopt}});
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
  s.set_nodes({{"a", true, std::nullopt}});
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
  s.set_nodes({{"a", true, std::nullopt}});
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
  s.set_nodes({{"localhost", true, std::nullopt}});
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
  s.set_nodes({{"localhost", true, std::nullopt}});
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
  s.set_nodes({{"localhost", true, std::nullopt}});
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
  s.set_nodes({{"a", true, std::nullopt}});
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
  s.set_nodes({{"a", false, std::nullopt}});
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
  s.set_nodes({{"a", true, std::nullopt}});
  worker_info w;
  w.worker_id = "w1";
  w.node = "a";
  w.model_ref = "m";
  w.url = "http://127.0.0.1:1";
  w.state = worker_state::idle;
  w.slots_total = 3;
  s.update_node_workers("a", {w});
  task_key two{.model = "m", .node = {}, .backend = {}, .device = {}, .model_bytes = 0, .slots = 2};
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
