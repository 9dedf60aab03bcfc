// Issue 16 on real binaries and two SSH test hosts: a flood of OpenAI streams for one model is
// served by workers with several slots, a second replica starts on the other node once the
// first saturates, and another API key's request is served before the flood's queue drains.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <thread>

#include "harness/scenario_fixture.h"

namespace rbee::e2e::scenario {
namespace {

using nlohmann::json;
using steady = std::chrono::steady_clock;

const std::string model = "file:" + models_dir() + "/synth-tiny-Q8_0.gguf";
const std::string other_key = "a-second-team-key";

struct stream_outcome {
  int status = 0;
  size_t chunks = 0;
  std::optional<steady::time_point> first_token;
  steady::time_point done;
  std::string error;  // an error object the stream carried
};

class Serving : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = scenario_hosts::unavailable_reason(); !why.empty()) GTEST_SKIP() << why;
    hosts = std::make_unique<scenario_hosts>(std::vector<std::string>{"workstation", "mac"});
    auto& q = hosts->queen();
    q.set_env("RBEE_API_KEYS", other_key);
    // The built-in node is too small for any model: the fleet is the two hosts.
    q.set_env("RBEE_RAM_LIMIT", "1000");
    q.start({"--max-replicas", "2"});
    for (const char* n : {"workstation", "mac"}) {
      auto r = hosts->add_and_install(n);
      ASSERT_EQ(r.exit_code, 0) << n << ": " << r.err << q.queen_log();
    }
  }
  void TearDown() override {
    if (hosts) {
      EXPECT_TRUE(hosts->stop_all()) << "processes left after the queen stopped";
    }
  }

  // A streamed chat of `tokens` tokens (EOS suppressed, so each runs its full length).
  stream_outcome chat(const std::string& key, int tokens) {
    common::client_options o;
    o.bearer_token = key;
    o.read_timeout = std::chrono::seconds(300);
    json body = {{"model", model},
                 {"messages", json::array({{{"role", "user"}, {"content", "Once upon a time"}}})},
                 {"max_tokens", tokens},
                 {"temperature", 0.8},
                 {"seed", 7},
                 {"logit_bias", {{"2", -100}}},
                 {"stream", true}};
    stream_outcome out;
    out.status = common::http_client(hosts->queen().url(), o)
                     .post_sse("/v1/chat/completions", body, [&](const common::sse_event& ev) {
                       if (ev.is_done()) return false;
                       auto e = json::parse(ev.data, nullptr, false);
                       if (e.contains("error")) out.error = e["error"].dump();
                       auto& choices = e["choices"];
                       if (choices.is_array() && !choices.empty() &&
                           !choices[0]["delta"].value("content", "").empty()) {
                         if (!out.first_token) out.first_token = steady::now();
                         ++out.chunks;
                       }
                       return true;
                     });
    out.done = steady::now();
    return out;
  }

  std::unique_ptr<scenario_hosts> hosts;
};

TEST_F(Serving, AFloodIsServedConcurrentlyOnTwoNodesAndAnotherKeyIsNotStarved) {
  auto& q = hosts->queen();
  // The built-in node says it has no room (its preflight), so the first worker starts on a host.
  auto small = q.infer(model, {"--max-tokens", "2"}, "localhost");
  EXPECT_NE(small.exit_code, 0) << "the built-in node has 1000 bytes free";
  auto first = q.infer(model, {"--max-tokens", "2"}, "workstation");
  ASSERT_EQ(first.exit_code, 0) << first.err << q.logs();

  const std::string flood_key = "scenario-key-for-all-nodes";
  constexpr int flood_size = 16, tokens = 1500;
  std::vector<stream_outcome> flood(flood_size);
  std::atomic<bool> flooding{true};
  std::mutex seen_mutex;
  std::map<std::string, int> busiest_per_node;
  std::thread watcher([&] {
    while (flooding) {
      auto res = q.client(5s).get("/v2/workers/list");
      if (res.ok()) {
        const json listing = res.json_body();
        std::lock_guard lock(seen_mutex);
        for (const auto& w : listing["workers"]) {
          int& m = busiest_per_node[w.value("node", "")];
          m = std::max(m, w.value("slots_busy", 0));
        }
      }
      std::this_thread::sleep_for(100ms);
    }
  });
  const auto flood_start = steady::now();
  std::vector<std::thread> clients;
  for (int i = 0; i < flood_size; ++i) {
    clients.emplace_back([&, i] { flood[i] = chat(flood_key, tokens); });
  }
  // The flood has filled the slots and queued the rest: another key's request arrives.
  std::this_thread::sleep_for(500ms);
  stream_outcome other = chat(other_key, 20);
  for (auto& t : clients) t.join();
  flooding = false;
  watcher.join();

  for (int i = 0; i < flood_size; ++i) {
    EXPECT_EQ(flood[i].status, 200) << "request " << i << q.logs();
    EXPECT_GE(flood[i].chunks, static_cast<size_t>(tokens / 2))
        << "request " << i << ": " << flood[i].error;
  }
  ASSERT_EQ(other.status, 200);
  ASSERT_TRUE(other.first_token);
  // Served concurrently: a worker ran several of the flood's streams at once.
  int most = 0;
  for (const auto& [node, busy] : busiest_per_node) most = std::max(most, busy);
  EXPECT_GT(most, 1) << "slots > 1";
  // The replica: both hosts ran the model's streams.
  EXPECT_GT(busiest_per_node["workstation"], 0);
  EXPECT_GT(busiest_per_node["mac"], 0) << "no replica on the second node";
  EXPECT_EQ(busiest_per_node.count("localhost"), 0u);
  // Fairness: the other key's first token came before the flood's last queued task started.
  steady::time_point last_flood_start{};
  for (const auto& f : flood) {
    if (f.first_token) last_flood_start = std::max(last_flood_start, *f.first_token);
  }
  auto ms = [&](steady::time_point t) {
    return std::to_string(
        std::chrono::duration_cast<std::chrono::milliseconds>(t - flood_start).count());
  };
  std::string timeline = "first tokens of the flood (ms):";
  for (const auto& f : flood) timeline += " " + (f.first_token ? ms(*f.first_token) : "-");
  timeline += "; the other key's: " + ms(*other.first_token);
  EXPECT_LT(*other.first_token, last_flood_start)
      << "the other key waited behind the whole flood: " << timeline;
  auto workers = q.workers();
  std::set<std::string> nodes;
  for (const auto& w : workers) {
    nodes.insert(w.value("node", ""));
    EXPECT_GT(w.value("slots_total", 0), 1) << w.dump();
  }
  EXPECT_EQ(nodes, (std::set<std::string>{"workstation", "mac"}));
  if (HasFailure()) std::cerr << q.logs();
}

}  // namespace
}  // namespace rbee::e2e::scenario
