// The client against a real HTTP server standing in for the queen's routes.
#include "client/queen_client.h"

#include <gtest/gtest.h>

#include "common/http_server.h"
#include "common/sse.h"

namespace rbee::client {
namespace {

using nlohmann::json;

class QueenClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    common::server_options o;
    o.name = "fake-queen";
    o.api_tokens = {"k1"};
    server = std::make_unique<common::http_server>(o);
    server->get("/v2/registry/beehives/list", [](const httplib::Request&, httplib::Response& res) {
      common::http_server::send_json(res, 200, {{"nodes", {{{"node_name", "localhost"}}}}});
    });
    server->post("/v2/tasks", [this](const httplib::Request& req, httplib::Response& res) {
      auto body = json::parse(req.body);
      last_task = body;
      if (body["model"] == "busy") {
        throw common::unavailable(common::codes::QUEUE_FULL, "Queue full", 4);
      }
      if (body.contains("node") && body["node"] == "nope") {
        throw common::not_found(common::codes::NODE_NOT_FOUND, "Node 'nope' not found",
                                {{"hint", "rbee setup add-node ..."}});
      }
      common::serve_sse(res, [](common::sse_sink& sink) {
        sink.send({{"type", "narration"}, {"human", "hello"}, {"task_id", "task-1"}});
        sink.send({{"type", "token"}, {"t", "Once"}, {"i", 0}});
        sink.send({{"type", "end"}, {"tokens_out", 1}, {"stop_reason", "max_tokens"}});
      });
    });
    server->del(R"(/v2/tasks/([^/]+))",
                [this](const httplib::Request& req, httplib::Response& res) {
                  cancelled = req.matches[1].str();
                  res.status = 204;
                });
    server->start();
  }

  queen_client make(std::optional<std::string> key = "k1") {
    client_config c;
    c.queen_url = server->base_url();
    c.api_key = key;
    return queen_client(c);
  }

  std::unique_ptr<common::http_server> server;
  json last_task;
  std::string cancelled;
};

TEST_F(QueenClientTest, ListsAndStreamsAndCancels) {
  auto c = make();
  EXPECT_EQ(c.list_nodes()["nodes"][0]["node_name"], "localhost");
  std::vector<std::string> types;
  c.run_task({{"model", "m"}, {"prompt", "p"}}, [&](const json& e) {
    types.push_back(e["type"]);
    return true;
  });
  EXPECT_EQ(types, (std::vector<std::string>{"narration", "token", "end"}));
  EXPECT_EQ(last_task["prompt"], "p");
  c.cancel_task("task-1");
  EXPECT_EQ(cancelled, "task-1");
}

TEST_F(QueenClientTest, ErrorsCarryCodeHintAndRetryAfter) {
  auto c = make();
  try {
    c.run_task({{"model", "m"}, {"prompt", "p"}, {"node", "nope"}},
               [](const json&) { return true; });
    FAIL();
  } catch (const common::http_error& e) {
    EXPECT_EQ(e.status, 404);
    EXPECT_EQ(e.code, "NODE_NOT_FOUND");
    EXPECT_EQ(e.details.value("hint", ""), "rbee setup add-node ...");
  }
  try {
    c.run_task({{"model", "busy"}, {"prompt", "p"}}, [](const json&) { return true; });
    FAIL();
  } catch (const common::http_error& e) {
    EXPECT_EQ(e.code, "QUEUE_FULL");
    ASSERT_TRUE(e.retry_after_s);
    EXPECT_EQ(*e.retry_after_s, 4);
  }
}

TEST_F(QueenClientTest, WrongKeyIs401AndNoQueenIsAConnectionError) {
  auto bad = make("nope");
  try {
    bad.list_nodes();
    FAIL();
  } catch (const common::http_error& e) {
    EXPECT_EQ(e.status, 401);
    EXPECT_EQ(e.code, "INVALID_API_KEY");
  }
  auto port = server->port();
  server->stop();
  client_config cfg;
  cfg.queen_url = "http://127.0.0.1:" + std::to_string(port);
  queen_client gone(cfg);
  EXPECT_FALSE(gone.healthy(std::chrono::milliseconds(300)));
  EXPECT_THROW(gone.list_nodes(), common::connection_error);
}

}  // namespace
}  // namespace rbee::client
