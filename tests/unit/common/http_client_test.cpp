#include "common/http_client.h"

#include <gtest/gtest.h>

#include "common/http_server.h"

namespace rbee::common {
namespace {

using nlohmann::json;

// A port with nothing listening: bind an ephemeral port, then close the server.
int closed_port() {
  http_server s({.name = "closed"});
  s.start();
  int port = s.port();
  s.stop();
  return port;
}

TEST(HttpClient, ConnectionRefusedThrowsConnectionErrorWithHostPort) {
  int port = closed_port();
  http_client c("http://127.0.0.1:" + std::to_string(port));
  try {
    c.get("/health");
    FAIL() << "expected connection_error";
  } catch (const connection_error& e) {
    EXPECT_EQ(e.host_port(), "127.0.0.1:" + std::to_string(port));
    EXPECT_NE(std::string(e.what()).find("127.0.0.1:" + std::to_string(port)), std::string::npos);
    EXPECT_FALSE(e.cause().empty());
  }
  EXPECT_THROW(c.post_sse("/x", json::object(), [](const sse_event&) { return true; }),
               connection_error);
}

TEST(HttpClient, RejectsUnsupportedUrls) {
  EXPECT_THROW(http_client("https://example.org"), std::invalid_argument);
  EXPECT_THROW(http_client("127.0.0.1:80"), std::invalid_argument);
  EXPECT_THROW(http_client("http://host:99999"), std::invalid_argument);
  EXPECT_THROW(http_client("http://host:8080/path"), std::invalid_argument);
  EXPECT_EQ(http_client("http://host:8080/").host_port(), "host:8080");
  EXPECT_EQ(http_client("http://host").host_port(), "host:80");
  EXPECT_EQ(http_client("http://[::1]:9200").host_port(), "::1:9200");
}

TEST(HttpClient, SendsBearerTokenAndJson) {
  http_server server({.name = "echo", .api_tokens = {"tok"}});
  server.post("/echo", [](const httplib::Request& req, httplib::Response& res) {
    http_server::send_json(
        res, 201,
        {{"got", json::parse(req.body)}, {"content_type", req.get_header_value("Content-Type")}});
  });
  server.start();
  client_options o;
  o.bearer_token = "tok";
  http_client c(server.base_url(), o);
  auto r = c.post_json("/echo", {{"x", 1}});
  EXPECT_EQ(r.status, 201);
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.json_body()["got"]["x"], 1);
  EXPECT_EQ(r.json_body()["content_type"], "application/json");
  EXPECT_NO_THROW(r.throw_if_error());
}

TEST(HttpResponse, ToHttpErrorParsesOurShapeOrFallsBack) {
  http_response ours{
      409, error_body("NODE_EXISTS", "node gpu-1 exists", {{"node", "gpu-1"}}).dump(), {}};
  auto e = ours.to_http_error();
  EXPECT_EQ(e.status, 409);
  EXPECT_EQ(e.code, "NODE_EXISTS");
  EXPECT_EQ(e.message, "node gpu-1 exists");
  EXPECT_EQ(e.details["node"], "gpu-1");
  EXPECT_THROW(ours.throw_if_error(), http_error);

  http_response other{502, "<html>bad gateway</html>", {}};
  auto f = other.to_http_error();
  EXPECT_EQ(f.status, 502);
  EXPECT_EQ(f.code, "INTERNAL");
  EXPECT_NE(f.message.find("bad gateway"), std::string::npos);
}

TEST(RetryPolicy, BackoffGrowsGeometricallyAndIsCapped) {
  retry_policy p;
  p.initial_backoff = std::chrono::milliseconds(500);
  p.multiplier = 2.0;
  p.max_backoff = std::chrono::milliseconds(3000);
  EXPECT_EQ(backoff_delay(p, 1).count(), 500);
  EXPECT_EQ(backoff_delay(p, 2).count(), 1000);
  EXPECT_EQ(backoff_delay(p, 3).count(), 2000);
  EXPECT_EQ(backoff_delay(p, 4).count(), 3000);
  EXPECT_EQ(backoff_delay(p, 10).count(), 3000);
}

TEST(RetryPolicy, RetriesConnectionErrorsWithBackoffThenSucceeds) {
  retry_policy p;
  p.attempts = 4;
  std::vector<int64_t> sleeps;
  p.sleep = [&](std::chrono::milliseconds d) { sleeps.push_back(d.count()); };
  int calls = 0;
  std::vector<int> retried;
  int result = with_retry(
      p,
      [&] {
        if (++calls < 3) throw connection_error("h:1", "refused");
        return 42;
      },
      [&](int attempt, const std::exception&) { retried.push_back(attempt); });
  EXPECT_EQ(result, 42);
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(sleeps, (std::vector<int64_t>{500, 1000}));
  EXPECT_EQ(retried, (std::vector<int>{1, 2}));
}

TEST(RetryPolicy, GivesUpAfterAttemptsAndRethrows) {
  retry_policy p;
  p.attempts = 3;
  int sleeps = 0;
  p.sleep = [&](std::chrono::milliseconds) { ++sleeps; };
  int calls = 0;
  EXPECT_THROW(with_retry(p,
                          [&]() -> int {
                            ++calls;
                            throw connection_error("h:1", "refused");
                          }),
               connection_error);
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(sleeps, 2);
}

TEST(RetryPolicy, OtherErrorsAreNotRetried) {
  retry_policy p;
  p.sleep = [](std::chrono::milliseconds) { FAIL() << "must not sleep"; };
  int calls = 0;
  EXPECT_THROW(with_retry(p,
                          [&] {
                            ++calls;
                            throw http_error(404, codes::NODE_NOT_FOUND, "no");
                          }),
               http_error);
  EXPECT_EQ(calls, 1);
}

TEST(RetryPolicy, RealServerComingUpLate) {
  int port = closed_port();
  retry_policy p;
  p.attempts = 5;
  std::unique_ptr<http_server> late;
  // The "sleep" brings the server up, as a daemon starting in the background would.
  p.sleep = [&](std::chrono::milliseconds) {
    if (late) return;
    late = std::make_unique<http_server>(server_options{.name = "late", .port = port});
    late->get("/health", [](const httplib::Request&, httplib::Response& res) {
      http_server::send_json(res, 200, {{"status", "ok"}});
    });
    late->start();
  };
  http_client c("http://127.0.0.1:" + std::to_string(port));
  auto r = with_retry(p, [&] { return c.get("/health"); });
  EXPECT_EQ(r.status, 200);
}

}  // namespace
}  // namespace rbee::common
