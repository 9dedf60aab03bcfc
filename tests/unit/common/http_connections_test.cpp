// How the daemons' HTTP server holds up against many streams and slow or greedy clients
// (issue 13, finding 3), and the request framing of finding 9. Raw sockets, so each test
// controls every byte a misbehaving client sends.
#include "common/http_connections.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "common/http_client.h"
#include "common/http_server.h"
#include "common/sse.h"

namespace rbee::common {
namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

// One TCP connection from a chosen loopback source address.
class raw_connection {
 public:
  raw_connection(int port, const char* source = "127.0.0.1") {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in from{};
    from.sin_family = AF_INET;
    ::inet_pton(AF_INET, source, &from.sin_addr);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&from), sizeof from);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(static_cast<uint16_t>(port));
    ::inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&to), sizeof to) == 0;
  }
  ~raw_connection() { ::close(fd_); }
  raw_connection(const raw_connection&) = delete;
  raw_connection& operator=(const raw_connection&) = delete;

  bool connected() const { return connected_; }
  bool send(const std::string& bytes) {
    return ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
           static_cast<ssize_t>(bytes.size());
  }
  // Everything that arrives until `until` holds for what was read, the peer closes, or timeout.
  std::string read(std::chrono::milliseconds timeout,
                   const std::function<bool(const std::string&)>& until = {}) {
    auto deadline = steady::now() + timeout;
    while (steady::now() < deadline && !closed_) {
      if (until && until(received_)) break;
      pollfd p{.fd = fd_, .events = POLLIN, .revents = 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      char buf[4096];
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) {
        closed_ = true;
      } else {
        received_.append(buf, static_cast<size_t>(n));
      }
    }
    return received_;
  }
  bool closed_by_peer() const { return closed_; }

 private:
  int fd_ = -1;
  bool connected_ = false;
  bool closed_ = false;
  std::string received_;
};

auto contains(const std::string& needle) {
  return [needle](const std::string& text) { return text.find(needle) != std::string::npos; };
}

class HttpConnections : public ::testing::Test {
 protected:
  void start(connection_limits limits = {}) {
    server = std::make_unique<http_server>(server_options{.name = "test", .limits = limits});
    server->get("/health", [](const httplib::Request&, httplib::Response& res) {
      http_server::send_json(res, 200, {{"status", "ok"}});
    });
    server->post("/empty", [](const httplib::Request& req, httplib::Response& res) {
      http_server::send_json(res, 200, {{"body_bytes", req.body.size()}});
    });
    server->get("/stream", [this](const httplib::Request&, httplib::Response& res) {
      serve_sse(res, [this](sse_sink& sink) {
        sink.send({{"type", "started"}});
        while (!release_streams && sink.connected()) std::this_thread::sleep_for(10ms);
      });
    });
    server->start();
  }
  void TearDown() override {
    release_streams = true;
    if (server) server->stop();
  }

  // GET /health on a fresh connection; its status, or 0 when it did not answer in time.
  int health_status(std::chrono::milliseconds timeout = 2s) {
    client_options o;
    o.connect_timeout = timeout;
    o.read_timeout = timeout;
    try {
      return http_client(server->base_url(), o).get("/health").status;
    } catch (const connection_error&) {
      return 0;
    }
  }

  std::unique_ptr<http_server> server;
  std::atomic<bool> release_streams{false};
};

// Before: 32 threads served everything, so the 33rd open stream left /health unanswered.
TEST_F(HttpConnections, HealthAnswersWhileManyStreamsAreOpen) {
  start();
  std::vector<std::unique_ptr<raw_connection>> streams;
  for (int i = 0; i < 100; ++i) {
    auto c = std::make_unique<raw_connection>(server->port());
    ASSERT_TRUE(c->send("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"));
    streams.push_back(std::move(c));
  }
  for (auto& c : streams) {
    ASSERT_TRUE(contains("\"started\"")(c->read(5s, contains("\"started\""))))
        << "every stream is served at once";
  }
  auto t0 = steady::now();
  EXPECT_EQ(health_status(), 200);
  EXPECT_LT(steady::now() - t0, 1s);
}

// Before: a client that trickled header bytes held its connection (and a thread) forever.
TEST_F(HttpConnections, SlowRequestGets408AtTheReadDeadline) {
  start({.request_read_timeout = 400ms});
  raw_connection slow(server->port());
  ASSERT_TRUE(slow.send("GET /health HTTP/1.1\r\n"));
  auto t0 = steady::now();
  std::string got;
  for (int i = 0; i < 40 && !slow.closed_by_peer(); ++i) {
    slow.send("X-Slow-" + std::to_string(i) + ": y\r\n");
    got = slow.read(100ms);
  }
  EXPECT_TRUE(slow.closed_by_peer()) << "the server closes the connection";
  EXPECT_LT(steady::now() - t0, 2s);
  EXPECT_TRUE(contains("HTTP/1.1 408")(got)) << got;
  EXPECT_TRUE(contains("REQUEST_TIMEOUT")(got)) << got;
  EXPECT_EQ(health_status(), 200);
}

// A request line that never completes gets the same answer.
TEST_F(HttpConnections, IncompleteRequestLineGets408) {
  start({.request_read_timeout = 300ms});
  raw_connection slow(server->port());
  ASSERT_TRUE(slow.send("GET /hea"));
  std::string got = slow.read(2s);
  EXPECT_TRUE(slow.closed_by_peer());
  EXPECT_TRUE(contains("HTTP/1.1 408")(got)) << got;
}

// Before: no limit per client, so one address could take every connection the daemon has.
TEST_F(HttpConnections, ConnectionsOverThePerClientLimitGet429) {
  start({.max_connections_per_client = 4});
  std::vector<std::unique_ptr<raw_connection>> held;
  for (int i = 0; i < 4; ++i) {
    held.push_back(std::make_unique<raw_connection>(server->port(), "127.0.0.5"));
    ASSERT_TRUE(held.back()->connected());
  }
  // The server counts a connection once its thread picked it up.
  std::this_thread::sleep_for(200ms);
  raw_connection extra(server->port(), "127.0.0.5");
  std::string got = extra.read(2s);
  EXPECT_TRUE(contains("HTTP/1.1 429")(got)) << got;
  EXPECT_TRUE(contains("TOO_MANY_CONNECTIONS")(got)) << got;
  EXPECT_TRUE(contains("Retry-After: 1")(got)) << got;
  EXPECT_EQ(health_status(), 200) << "another client address is still served";
  held.clear();
  std::this_thread::sleep_for(200ms);
  raw_connection again(server->port(), "127.0.0.5");
  ASSERT_TRUE(again.send("GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
  EXPECT_TRUE(contains("HTTP/1.1 200")(again.read(2s))) << "closed connections free the budget";
}

TEST_F(HttpConnections, ConnectionsOverTheTotalLimitGet503) {
  start({.max_connections = 3});
  std::vector<std::unique_ptr<raw_connection>> held;
  for (int i = 0; i < 3; ++i) held.push_back(std::make_unique<raw_connection>(server->port()));
  std::this_thread::sleep_for(200ms);
  raw_connection extra(server->port());
  std::string got = extra.read(2s);
  EXPECT_TRUE(contains("HTTP/1.1 503")(got)) << got;
  EXPECT_TRUE(contains("SERVER_BUSY")(got)) << got;
}

TEST_F(HttpConnections, IdleKeptAliveConnectionIsClosed) {
  start({.idle_timeout = 300ms});
  raw_connection c(server->port());
  ASSERT_TRUE(c.send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n"));
  c.read(3s);
  EXPECT_TRUE(c.closed_by_peer());
}

// Finding 9. Before: 400 after waiting for the client to close (no length = read to EOF).
TEST_F(HttpConnections, PostWithoutLengthOrBodyIsAnEmptyBody) {
  start();
  raw_connection c(server->port());
  ASSERT_TRUE(c.send("POST /empty HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto t0 = steady::now();
  std::string got = c.read(3s, contains("}"));
  EXPECT_TRUE(contains("HTTP/1.1 200")(got)) << got;
  EXPECT_TRUE(contains("\"body_bytes\":0")(got)) << got;
  EXPECT_LT(steady::now() - t0, 1s);
}

// Finding 9. Before: 413 PAYLOAD_TOO_LARGE (-1 read as a huge unsigned length).
TEST_F(HttpConnections, MalformedContentLengthIs400AndTheConnectionCloses) {
  start();
  for (const char* length : {"-1", "12abc", "0x10", "1 2"}) {
    raw_connection c(server->port());
    ASSERT_TRUE(c.send(std::string("POST /empty HTTP/1.1\r\nHost: x\r\nContent-Length: ") + length +
                       "\r\n\r\n{}"));
    std::string got = c.read(3s);
    EXPECT_TRUE(contains("HTTP/1.1 400")(got)) << length << ": " << got;
    EXPECT_TRUE(contains("INVALID_REQUEST")(got)) << got;
    EXPECT_TRUE(contains("Content-Length")(got)) << got;
    EXPECT_TRUE(c.closed_by_peer()) << length;
  }
}

TEST(ConnectionCounter, CountsPerClientAndInTotal) {
  connection_limits limits{.max_connections = 3, .max_connections_per_client = 2};
  connection_counter counter(limits);
  using v = connection_counter::verdict;
  EXPECT_EQ(counter.try_open("a"), v::admitted);
  EXPECT_EQ(counter.try_open("a"), v::admitted);
  EXPECT_EQ(counter.try_open("a"), v::client_over_limit);
  EXPECT_EQ(counter.try_open("b"), v::admitted);
  EXPECT_EQ(counter.try_open("c"), v::server_over_limit);
  counter.close("a");
  EXPECT_EQ(counter.open_total(), 2u);
  EXPECT_EQ(counter.try_open("c"), v::admitted);
}

TEST(OnDemandThreads, RunsEveryTaskAtOnceAndShutdownWaits) {
  on_demand_threads threads(100ms);
  std::atomic<int> running{0};
  std::atomic<int> finished{0};
  std::atomic<bool> release{false};
  for (int i = 0; i < 64; ++i) {
    threads.enqueue([&] {
      ++running;
      while (!release) std::this_thread::sleep_for(1ms);
      ++finished;
    });
  }
  auto deadline = steady::now() + 5s;
  while (running < 64 && steady::now() < deadline) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(running.load(), 64) << "no task waits for another to finish";
  release = true;
  threads.shutdown();
  EXPECT_EQ(finished.load(), 64);
}

}  // namespace
}  // namespace rbee::common
