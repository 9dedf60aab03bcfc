#include "api/worker_record.h"

#include <gtest/gtest.h>

#include "common/errors.h"

namespace rbee::api {
namespace {

TEST(WorkerState, EveryStateReadsBackFromItsName) {
  for (auto s : {worker_state::spawning, worker_state::loading, worker_state::idle,
                 worker_state::busy, worker_state::draining, worker_state::stopping,
                 worker_state::stopped, worker_state::error}) {
    EXPECT_EQ(parse_worker_state(to_string(s)), s) << to_string(s);
  }
  EXPECT_FALSE(parse_worker_state("garbage"));
  EXPECT_TRUE(accepts_tasks(worker_state::busy));
  EXPECT_TRUE(accepts_tasks(worker_state::idle));
  EXPECT_FALSE(accepts_tasks(worker_state::loading));
  EXPECT_FALSE(accepts_tasks(worker_state::stopping));
}

TEST(WorkerRecord, WhatAHiveWritesTheQueenReadsBack) {
  worker_record w;
  w.worker_id = "worker-1";
  w.model_ref = "hf:org/repo";
  w.model_id = "repo-q4_k_m";
  w.url = "http://10.0.0.2:9301";
  w.token = "secret-token";
  w.backend = "cuda";
  w.device = 1;
  w.port = 9301;
  w.pid = 4242;
  w.state = worker_state::idle;
  w.slots_total = 4;
  w.ctx = 4096;
  w.memory_bytes = uint64_t{5} << 32;
  w.started_at_unix = 1700000000;
  w.ready_at_unix = 1700000005;
  w.unload_at_unix = 1700000305;

  auto back = worker_record::from_json(w.to_json(/*include_token=*/true));
  EXPECT_EQ(back.to_json(true), w.to_json(true));
  EXPECT_FALSE(w.to_json(/*include_token=*/false).contains("token"));
  EXPECT_EQ(w.to_json(false)["devices"], nlohmann::json::array({1}));
  EXPECT_TRUE(back.devices.empty()) << "one device is no split";

  w.devices = {1, 0};  // a layer split, in layer order
  w.split = "layer";
  back = worker_record::from_json(w.to_json(true));
  EXPECT_EQ(back.devices, (std::vector<int>{1, 0}));
  EXPECT_EQ(back.split, "layer");
  w.split = "tensor";
  EXPECT_EQ(worker_record::from_json(w.to_json(true)).split, "tensor");
  nlohmann::json older = w.to_json(true);
  older.erase("split");
  EXPECT_EQ(worker_record::from_json(older).split, "layer") << "records before tensor splits";
}

TEST(WorkerRecord, UntrustedRecordsAreCheckedFieldByField) {
  EXPECT_THROW(worker_record::from_json(nlohmann::json::array()), common::http_error);
  EXPECT_THROW(worker_record::from_json({{"state", "idle"}}), common::http_error);
  EXPECT_THROW(worker_record::from_json({{"worker_id", "w"}, {"device", "gpu"}}),
               common::http_error);
  EXPECT_THROW(worker_record::from_json({{"worker_id", "w"}, {"slots_total", 1e12}}),
               common::http_error);
  EXPECT_THROW(worker_record::from_json({{"worker_id", "w"}, {"devices", {0, -1}}}),
               common::http_error);
  EXPECT_THROW(worker_record::from_json({{"worker_id", "w"}, {"devices", "0,1"}}),
               common::http_error);
  EXPECT_THROW(
      worker_record::from_json({{"worker_id", "w"}, {"devices", {0, 1}}, {"split", "\u001b[2J"}}),
      common::http_error)
      << "a split the queen would compare and print";
  auto minimal = worker_record::from_json({{"worker_id", "w"}});
  EXPECT_EQ(minimal.state, worker_state::loading);
  EXPECT_EQ(minimal.backend, "cpu");
}

}  // namespace
}  // namespace rbee::api
