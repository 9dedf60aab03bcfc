#include "common/http_server.h"

#include <gtest/gtest.h>

#include <stdexcept>

#include "common/errors.h"
#include "common/http_client.h"
#include "common/json.h"

namespace rbee::common {
namespace {

using nlohmann::json;

class HttpServerTest : public ::testing::Test {
 protected:
  void start(std::vector<std::string> tokens = {}, size_t max_body = 1 << 20) {
    server_options opts;
    opts.name = "test";
    opts.api_tokens = std::move(tokens);
    opts.max_body_bytes = max_body;
    server = std::make_unique<http_server>(opts);
    server->get("/health", [](const httplib::Request&, httplib::Response& res) {
      http_server::send_json(res, 200, {{"status", "ok"}});
    });
    server->get("/v1/public/.*", [](const httplib::Request&, httplib::Response& res) {
      http_server::send_json(res, 200, {{"public", true}});
    });
    server->post("/echo", [](const httplib::Request& req, httplib::Response& res) {
      json body = json::parse(req.body);  // a parse_error escapes on purpose
      http_server::send_json(res, 200, {{"name", require_string(body, "name")}});
    });
    server->get("/boom", [](const httplib::Request&, httplib::Response&) {
      throw std::runtime_error("disk on fire");
    });
    server->get(
        R"(/v1/workers/([a-z0-9-]+))", [](const httplib::Request& req, httplib::Response& res) {
          if (req.matches[1] != "w-1") {
            throw not_found(codes::WORKER_NOT_FOUND, "no worker " + std::string(req.matches[1]),
                            {{"worker_id", req.matches[1]}});
          }
          http_server::send_json(res, 200, {{"worker_id", "w-1"}});
        });
    server->post("/busy", [](const httplib::Request&, httplib::Response&) {
      throw unavailable(codes::QUEUE_FULL, "queue is full", 3, {{"queue_size", 4}});
    });
    server->get("/request-id", [](const httplib::Request&, httplib::Response& res) {
      http_server::send_json(res, 200, {{"id", http_server::request_id(res)}});
    });
    server->start();
  }

  http_client client(std::string token = "") {
    client_options o;
    o.bearer_token = std::move(token);
    return http_client(server->base_url(), o);
  }

  static void expect_error(const http_response& r, int status, std::string_view code) {
    EXPECT_EQ(r.status, status) << r.body;
    EXPECT_EQ(r.header("content-type"), "application/json");
    json body = r.json_body();
    ASSERT_TRUE(body.contains("error")) << r.body;
    EXPECT_EQ(body["error"]["code"], code) << r.body;
    EXPECT_TRUE(body["error"]["message"].is_string());
    EXPECT_FALSE(body["error"]["message"].get<std::string>().empty());
  }

  std::unique_ptr<http_server> server;
};

TEST_F(HttpServerTest, BindsEphemeralPortAndServes) {
  start();
  EXPECT_GT(server->port(), 0);
  EXPECT_TRUE(server->running());
  auto r = client().get("/health");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.json_body()["status"], "ok");
  server->stop();
  EXPECT_FALSE(server->running());
  EXPECT_THROW(client().get("/health"), connection_error);
}

TEST_F(HttpServerTest, MissingTokenIs401MissingApiKey) {
  start({"secret-1"});
  expect_error(client().get("/request-id"), 401, "MISSING_API_KEY");
}

TEST_F(HttpServerTest, WrongTokenIs401InvalidApiKey) {
  start({"secret-1"});
  expect_error(client("secret-2").get("/request-id"), 401, "INVALID_API_KEY");
  expect_error(client("secret-1x").get("/request-id"), 401, "INVALID_API_KEY");
  expect_error(client("").post_json("/busy", json::object()), 401, "MISSING_API_KEY");
}

TEST_F(HttpServerTest, NonBearerSchemeIsRejected) {
  start({"secret-1"});
  client_options o;
  o.headers["Authorization"] = "Basic c2VjcmV0LTE=";
  http_client c(server->base_url(), o);
  expect_error(c.get("/request-id"), 401, "INVALID_API_KEY");
}

TEST_F(HttpServerTest, AnyConfiguredTokenIsAccepted) {
  start({"secret-1", "secret-2"});
  EXPECT_EQ(client("secret-1").get("/request-id").status, 200);
  EXPECT_EQ(client("secret-2").get("/request-id").status, 200);
}

TEST_F(HttpServerTest, PublicPathsSkipAuth) {
  start({"secret-1"});
  EXPECT_EQ(client().get("/health").status, 200);
  // /v1/public/* is not in the default public list, so it needs the token.
  expect_error(client().get("/v1/public/x"), 401, "MISSING_API_KEY");
}

TEST_F(HttpServerTest, ErrorShapeWithDetailsAndRegexCapture) {
  start();
  EXPECT_EQ(client().get("/v1/workers/w-1").json_body()["worker_id"], "w-1");
  auto r = client().get("/v1/workers/w-9");
  expect_error(r, 404, "WORKER_NOT_FOUND");
  json body = r.json_body();
  EXPECT_EQ(body["error"]["message"], "no worker w-9");
  EXPECT_EQ(body["error"]["details"]["worker_id"], "w-9");
  EXPECT_EQ(body.size(), 1u);  // nothing beside "error"
}

TEST_F(HttpServerTest, RetryAfterHeaderOn503) {
  start();
  auto r = client().post_json("/busy", json::object());
  expect_error(r, 503, "QUEUE_FULL");
  EXPECT_EQ(r.header("Retry-After"), "3");
  auto e = r.to_http_error();
  EXPECT_EQ(e.retry_after_s, 3);
  EXPECT_EQ(e.details["queue_size"], 4);
}

TEST_F(HttpServerTest, MalformedJsonIs400WithPosition) {
  start();
  client_options o;
  httplib::Client raw("127.0.0.1", server->port());
  auto res = raw.Post("/echo", "{\"name\": \"a\",, }", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  json body = json::parse(res->body);
  EXPECT_EQ(body["error"]["code"], "INVALID_REQUEST");
  EXPECT_EQ(body["error"]["details"]["position"], 14);
  EXPECT_NE(body["error"]["message"].get<std::string>().find("byte 14"), std::string::npos);
}

// Finding 8: out-of-range numbers from the client are its error (was 500 INTERNAL).
TEST_F(HttpServerTest, NumberOutOfRangeIs400) {
  start();
  httplib::Client raw("127.0.0.1", server->port());
  auto r = raw.Post("/echo", R"({"name":1e400})", "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400) << r->body;
  EXPECT_EQ(json::parse(r->body)["error"]["code"], "INVALID_REQUEST") << r->body;
}

TEST_F(HttpServerTest, WrongFieldTypeNamesTheField) {
  start();
  auto r = client().post_json("/echo", {{"name", 42}});
  expect_error(r, 400, "INVALID_REQUEST");
  EXPECT_EQ(r.json_body()["error"]["details"]["field"], "name");
  EXPECT_EQ(r.json_body()["error"]["details"]["expected"], "string");
}

TEST_F(HttpServerTest, OversizedBodyIs413Json) {
  start({}, 1024);
  auto r = client().post_json("/echo", {{"name", std::string(4096, 'x')}});
  expect_error(r, 413, "PAYLOAD_TOO_LARGE");
  EXPECT_EQ(r.json_body()["error"]["details"]["limit_bytes"], 1024);
  // A body under the limit still works afterwards.
  EXPECT_EQ(client().post_json("/echo", {{"name", "ok"}}).status, 200);
}

TEST_F(HttpServerTest, UnknownRouteIs404Json) {
  start();
  expect_error(client().get("/no/such/route"), 404, "NOT_FOUND");
  expect_error(client().del("/health"), 404, "NOT_FOUND");
}

TEST_F(HttpServerTest, HandlerExceptionIs500AndServerKeepsServing) {
  start();
  for (int i = 0; i < 3; ++i) {
    auto r = client().get("/boom");
    expect_error(r, 500, "INTERNAL");
    EXPECT_NE(r.body.find("disk on fire"), std::string::npos);
  }
  EXPECT_EQ(client().get("/health").status, 200);
}

TEST_F(HttpServerTest, RequestIdIsEchoedOrGenerated) {
  start();
  client_options o;
  o.headers["X-Request-Id"] = "req-abc-123";
  http_client with_id(server->base_url(), o);
  auto r = with_id.get("/request-id");
  EXPECT_EQ(r.header("X-Request-Id"), "req-abc-123");
  EXPECT_EQ(r.json_body()["id"], "req-abc-123");

  auto a = client().get("/request-id");
  auto b = client().get("/request-id");
  EXPECT_EQ(a.header("x-request-id").size(), 16u);
  EXPECT_EQ(a.json_body()["id"], a.header("x-request-id"));
  EXPECT_NE(a.header("x-request-id"), b.header("x-request-id"));
  // Errors carry it too.
  EXPECT_FALSE(client().get("/nope").header("x-request-id").empty());
}

TEST_F(HttpServerTest, BindFailureThrowsNamingTheAddress) {
  start();
  server_options opts;
  opts.name = "second";
  opts.port = server->port();
  http_server second(opts);
  try {
    second.start();
    FAIL() << "binding a used port must throw";
  } catch (const address_in_use& e) {  // its own type: parents retry on another port
    EXPECT_NE(std::string(e.what()).find("127.0.0.1:" + std::to_string(server->port())),
              std::string::npos)
        << e.what();
  }
}

TEST(HttpServerOptions, NonLoopbackNeedsToken) {
  server_options opts;
  opts.name = "hive";
  opts.host = "0.0.0.0";
  EXPECT_THROW(require_token_for_non_loopback(opts), std::runtime_error);
  opts.api_tokens = {""};
  EXPECT_THROW(require_token_for_non_loopback(opts), std::runtime_error);
  // Finding 13: blank, short or spaced tokens are refused beyond loopback.
  for (const std::string& weak : std::vector<std::string>{
           "t", std::string(20, ' '), std::string("\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t"),
           std::string("fifteen-chars-x"), std::string("has a space in the middle")}) {
    opts.api_tokens = {weak};
    EXPECT_THROW(require_token_for_non_loopback(opts), std::runtime_error) << "'" << weak << "'";
  }
  opts.api_tokens = {"sixteen-chars-xx"};
  EXPECT_NO_THROW(require_token_for_non_loopback(opts));
  opts.api_tokens = {"sixteen-chars-xx", "short"};
  EXPECT_THROW(require_token_for_non_loopback(opts), std::runtime_error) << "every token counts";
  opts.api_tokens.clear();
  opts.host = "127.0.0.1";
  EXPECT_NO_THROW(require_token_for_non_loopback(opts));
}

TEST(HttpServerOptions, LoopbackAndPathMatching) {
  EXPECT_TRUE(is_loopback("127.0.0.1"));
  EXPECT_TRUE(is_loopback("127.1.2.3"));
  EXPECT_TRUE(is_loopback("localhost"));
  EXPECT_TRUE(is_loopback("::1"));
  EXPECT_FALSE(is_loopback("0.0.0.0"));
  EXPECT_FALSE(is_loopback("10.0.0.1"));
  EXPECT_FALSE(is_loopback("128.0.0.1"));
  EXPECT_TRUE(path_matches("/health", {"/health"}));
  EXPECT_FALSE(path_matches("/health/x", {"/health"}));
  EXPECT_TRUE(path_matches("/v1/loading/progress", {"/v1/loading/*"}));
  EXPECT_FALSE(path_matches("/v1/load", {"/v1/loading/*"}));
}

TEST(ErrorShape, ErrorBodyAndFactories) {
  EXPECT_EQ(error_body("NODE_NOT_FOUND", "no node x", {{"hint", "rbee setup add-node"}}),
            (json{{"error",
                   {{"code", "NODE_NOT_FOUND"},
                    {"message", "no node x"},
                    {"details", {{"hint", "rbee setup add-node"}}}}}}));
  EXPECT_EQ(error_body("INTERNAL", "x")["error"]["details"], json::object());
  auto e = invalid_request("max_tokens", "too big", {{"max", 10}});
  EXPECT_EQ(e.status, 400);
  EXPECT_EQ(e.details["field"], "max_tokens");
  EXPECT_EQ(e.details["max"], 10);
  EXPECT_STREQ(e.what(), "INVALID_REQUEST: too big");
  EXPECT_EQ(insufficient_storage(codes::INSUFFICIENT_VRAM, "x").status, 507);
  EXPECT_EQ(status_for_code("QUEUE_FULL"), 503);
  EXPECT_EQ(status_for_code("LOADING_TIMEOUT"), 504);
  EXPECT_EQ(status_for_code(codes::CHAT_TEMPLATE_UNKNOWN), 400);
  EXPECT_EQ(status_for_code(codes::JOB_EXISTS), 409);
  EXPECT_EQ(status_for_code(codes::MODEL_IN_USE), 409);
  EXPECT_EQ(status_for_code(codes::INVALID_MODEL), 422);
  EXPECT_EQ(status_for_code(codes::MODEL_CORRUPT), 422);
  EXPECT_EQ(status_for_code(codes::LOADING), 503);
  EXPECT_EQ(status_for_code(codes::SHUTTING_DOWN), 503);
  EXPECT_EQ(status_for_code("SOMETHING_ELSE"), 500);
}

}  // namespace
}  // namespace rbee::common
