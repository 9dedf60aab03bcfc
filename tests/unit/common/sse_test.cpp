#include "common/sse.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "common/http_client.h"
#include "common/http_server.h"

namespace rbee::common {
namespace {

using nlohmann::json;

std::vector<sse_event> parse_all(const std::vector<std::string>& chunks) {
  sse_parser parser;
  std::vector<sse_event> events;
  for (const auto& c : chunks) parser.feed(c, [&](const sse_event& e) { events.push_back(e); });
  return events;
}

TEST(SseFraming, DataFrameAndDone) {
  // A stream event is named by its type, so relays and clients can tell tokens apart unparsed.
  EXPECT_EQ(sse_frame(json{{"type", "token"}, {"t", "Hi"}, {"i", 0}}),
            "event: token\ndata: {\"i\":0,\"t\":\"Hi\",\"type\":\"token\"}\n\n");
  EXPECT_EQ(sse_frame(json{{"n", 1}}), "data: {\"n\":1}\n\n");
  EXPECT_EQ(sse_done_frame(), "data: [DONE]\n\n");
  // A relayed event's text goes out as it came.
  EXPECT_EQ(sse_data_frame(R"({"i":0,"t":"Hi","type":"token"})", "token"),
            sse_frame(json{{"type", "token"}, {"t", "Hi"}, {"i", 0}}));
  EXPECT_EQ(sse_data_frame(R"({"n":1})"), "data: {\"n\":1}\n\n");
  EXPECT_EQ(sse_frame("progress", json{{"n", 1}}), "event: progress\ndata: {\"n\":1}\n\n");
  EXPECT_EQ(sse_comment_frame("ping\nx"), ": ping x\n\n");
}

TEST(SseFraming, InvalidUtf8IsReplacedNotThrown) {
  std::string frame = sse_frame(json{{"t", std::string("\xff")}});
  EXPECT_EQ(frame, "data: {\"t\":\"\xEF\xBF\xBD\"}\n\n");
}

TEST(SseParser, RoundTripsFramesSplitAtEveryByte) {
  std::string stream =
      sse_frame(json{{"t", "Once"}}) + sse_frame(json{{"t", " upon"}}) + sse_done_frame();
  for (size_t split = 0; split <= stream.size(); ++split) {
    auto events = parse_all({stream.substr(0, split), stream.substr(split)});
    ASSERT_EQ(events.size(), 3u) << "split at " << split;
    EXPECT_EQ(events[0].json()["t"], "Once");
    EXPECT_EQ(events[1].json()["t"], " upon");
    EXPECT_TRUE(events[2].is_done());
    EXPECT_FALSE(events[0].is_done());
  }
}

TEST(SseParser, OneByteChunks) {
  std::string stream = "event: narration\ndata: {\"a\":1}\n\ndata: [DONE]\n\n";
  std::vector<std::string> chunks;
  for (char c : stream) chunks.emplace_back(1, c);
  auto events = parse_all(chunks);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].event, "narration");
  EXPECT_EQ(events[0].data, "{\"a\":1}");
  EXPECT_EQ(events[1].event, "");
  EXPECT_TRUE(events[1].is_done());
}

TEST(SseParser, CrLfAndBareCrLineEndings) {
  auto events = parse_all({"data: a\r\n\r\ndata: b\r", "\r", "data: c\r\n", "\r\n"});
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].data, "a");
  EXPECT_EQ(events[1].data, "b");
  EXPECT_EQ(events[2].data, "c");
}

TEST(SseParser, CrLfSplitBetweenChunksIsOneLineEnd) {
  auto events = parse_all({"data: x\r", "\ndata: y\r", "\n\r", "\n"});
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].data, "x\ny");
}

TEST(SseParser, MultiLineDataCommentsIdsAndNoSpace) {
  auto events = parse_all({": keep-alive\n\n", "id: 7\nevent: e\ndata: line1\ndata:line2\n",
                           ": inner comment\nretry: 10\n\n"});
  ASSERT_EQ(events.size(), 1u);  // the comment-only block carries no data
  EXPECT_EQ(events[0].id, "7");
  EXPECT_EQ(events[0].event, "e");
  EXPECT_EQ(events[0].data, "line1\nline2");
}

TEST(SseParser, IncompleteEventIsHeldBack) {
  sse_parser parser;
  int n = 0;
  parser.feed("data: {\"a\":", [&](const sse_event&) { ++n; });
  parser.feed("1}\n", [&](const sse_event&) { ++n; });
  EXPECT_EQ(n, 0);
  EXPECT_EQ(parser.buffered(), 7u);  // the data line, awaiting the blank line
  parser.feed("\n", [&](const sse_event& e) {
    ++n;
    EXPECT_EQ(e.json()["a"], 1);
  });
  EXPECT_EQ(n, 1);
  EXPECT_EQ(parser.buffered(), 0u);
}

TEST(SseSink, StopsAfterWriteFailure) {
  int writes = 0;
  sse_sink sink([&](std::string_view) { return ++writes < 2; });
  EXPECT_TRUE(sink.send(json{{"a", 1}}));
  EXPECT_FALSE(sink.send(json{{"a", 2}}));
  EXPECT_FALSE(sink.connected());
  EXPECT_FALSE(sink.send_done());
  EXPECT_EQ(writes, 2);
}

// Events reach the client while the producer is still running: the producer waits for the
// client to have seen each event before sending the next.
TEST(SseServe, EventsStreamAsTheyAreProduced) {
  http_server server({.name = "sse-test"});
  std::mutex m;
  std::condition_variable cv;
  int received = 0;
  server.post("/stream", [&](const httplib::Request&, httplib::Response& res) {
    serve_sse(res, [&](sse_sink& sink) {
      for (int i = 0; i < 3; ++i) {
        ASSERT_TRUE(sink.send(json{{"type", "token"}, {"i", i}}));
        std::unique_lock lock(m);
        ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(5), [&] { return received > i; }))
            << "event " << i << " was not delivered before the next was produced";
      }
    });
  });
  server.start();
  http_client client(server.base_url());
  std::vector<int> seen;
  bool done = false;
  int status = client.post_sse("/stream", json::object(), [&](const sse_event& e) {
    if (e.is_done()) {
      done = true;
      return true;
    }
    seen.push_back(e.json()["i"].get<int>());
    std::lock_guard lock(m);
    ++received;
    cv.notify_all();
    return true;
  });
  EXPECT_EQ(status, 200);
  EXPECT_EQ(seen, (std::vector<int>{0, 1, 2}));
  EXPECT_TRUE(done);
}

// Some clients (curl --compressed, OpenAI SDKs) ask for gzip; a compressing server would
// buffer the stream, so events must still arrive one by one.
TEST(SseServe, GzipAcceptingClientStillGetsUnbufferedEvents) {
  http_server server({.name = "sse-gzip"});
  std::atomic<bool> first_seen{false};
  server.get("/stream", [&](const httplib::Request&, httplib::Response& res) {
    serve_sse(res, [&](sse_sink& sink) {
      sink.send(json{{"i", 0}});
      auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
      while (!first_seen && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      sink.send(json{{"i", 1}});
    });
  });
  server.start();
  httplib::Client raw("127.0.0.1", server.port());
  std::string body;
  sse_parser parser;
  auto res =
      raw.Get("/stream", {{"Accept-Encoding", "gzip, deflate"}}, [&](const char* data, size_t len) {
        parser.feed(std::string_view(data, len), [&](const sse_event& e) {
          if (!e.is_done() && e.json()["i"] == 0) first_seen = true;
        });
        return true;
      });
  ASSERT_TRUE(res);
  EXPECT_EQ(res->get_header_value("Content-Encoding"), "");
  EXPECT_TRUE(first_seen.load()) << "first event only arrived after the producer finished";
}

TEST(SseServe, ClientDisconnectIsSeenByProducer) {
  http_server server({.name = "sse-cancel"});
  std::atomic<bool> producer_saw_disconnect{false};
  std::atomic<bool> producer_finished{false};
  server.get("/stream", [&](const httplib::Request&, httplib::Response& res) {
    serve_sse(res, [&](sse_sink& sink) {
      auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      for (int i = 0; std::chrono::steady_clock::now() < deadline; ++i) {
        if (!sink.send(json{{"i", i}})) {
          producer_saw_disconnect = true;
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      producer_finished = true;
    });
  });
  server.start();
  http_client client(server.base_url());
  int got = 0;
  int status = client.get_sse("/stream", [&](const sse_event&) { return ++got < 3; });
  EXPECT_EQ(status, 200);
  EXPECT_EQ(got, 3);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!producer_finished && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_TRUE(producer_saw_disconnect.load());
}

// Finding 15: a producer with nothing to say (a stalled worker, a cold start, a download) still
// gets bytes to the client, so proxies and clients do not time the stream out.
TEST(SseServe, SilentProducerStillSendsKeepAliveComments) {
  http_server server({.name = "sse-keepalive"});
  server.get("/stream", [&](const httplib::Request&, httplib::Response& res) {
    serve_sse(
        res,
        [](sse_sink& sink) {
          std::this_thread::sleep_for(std::chrono::milliseconds(1100));
          sink.send(json{{"type", "token"}});
        },
        std::chrono::milliseconds(200));
  });
  server.start();
  httplib::Client raw("127.0.0.1", server.port());
  std::string body;
  auto res = raw.Get("/stream", [&](const char* data, size_t len) {
    body.append(data, len);
    return true;
  });
  ASSERT_TRUE(res);
  auto first_event = body.find("data:");
  ASSERT_NE(first_event, std::string::npos) << body;
  std::string before = body.substr(0, first_event);
  size_t comments = 0;
  for (size_t at = before.find(": keep-alive"); at != std::string::npos;
       at = before.find(": keep-alive", at + 1)) {
    ++comments;
  }
  EXPECT_GE(comments, 3u) << body;
  EXPECT_NE(body.find("data: [DONE]"), std::string::npos) << body;
}

// Finding 14: a stream its daemon does not end (a followed log) must not hold the server's stop.
TEST(SseServe, StoppingServerEndsOpenStreams) {
  auto server = std::make_unique<http_server>(server_options{.name = "sse-stop"});
  std::atomic<bool> producer_left{false};
  server->get("/follow", [&](const httplib::Request&, httplib::Response& res) {
    serve_sse(res, [&](sse_sink& sink) {
      while (sink.connected()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      producer_left = true;
    });
  });
  server->start();
  std::string body;
  std::thread client([&] {
    httplib::Client raw("127.0.0.1", server->port());
    raw.Get("/follow", [&](const char* data, size_t len) {
      body.append(data, len);
      return true;
    });
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto t0 = std::chrono::steady_clock::now();
  server->stop();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));
  client.join();
  EXPECT_TRUE(producer_left.load());
  EXPECT_NE(body.find("SHUTTING_DOWN"), std::string::npos) << body;
}

TEST(SseServe, ProducerExceptionBecomesErrorEventThenDone) {
  http_server server({.name = "sse-error"});
  server.get("/stream", [](const httplib::Request&, httplib::Response& res) {
    serve_sse(res, [](sse_sink& sink) {
      sink.send(json{{"type", "started"}});
      throw http_error(507, codes::INSUFFICIENT_RAM, "needs 8 GiB, 2 GiB free");
    });
  });
  server.start();
  http_client client(server.base_url());
  std::vector<sse_event> events;
  EXPECT_EQ(client.get_sse("/stream",
                           [&](const sse_event& e) {
                             events.push_back(e);
                             return true;
                           }),
            200);
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[1].json()["type"], "error");
  EXPECT_EQ(events[1].json()["code"], "INSUFFICIENT_RAM");
  EXPECT_TRUE(events[2].is_done());
}

TEST(SseClient, ExceptionFromCallbackPropagatesToCaller) {
  http_server server({.name = "sse-throw"});
  server.get("/stream", [](const httplib::Request&, httplib::Response& res) {
    serve_sse(res, [](sse_sink& sink) {
      for (int i = 0; i < 100 && sink.send(json{{"i", i}}); ++i) {
      }
    });
  });
  server.start();
  http_client client(server.base_url());
  EXPECT_THROW(client.get_sse("/stream",
                              [](const sse_event& e) -> bool {
                                throw std::runtime_error("bad event " + e.data);
                              }),
               std::runtime_error);
  // The server is unharmed.
  int n = 0;
  EXPECT_EQ(client.get_sse("/stream", [&](const sse_event&) { return ++n > 0; }), 200);
  EXPECT_EQ(n, 101);
}

TEST(SseClient, NonOkStatusReturnsErrorBodyAndNoEvents) {
  http_server server({.name = "sse-busy"});
  server.post("/v1/inference", [](const httplib::Request&, httplib::Response&) {
    throw unavailable(codes::ALL_SLOTS_BUSY, "all 2 slots are busy", 2);
  });
  server.start();
  http_client client(server.base_url());
  http_response error;
  int events = 0;
  int status = client.post_sse(
      "/v1/inference", json::object(), [&](const sse_event&) { return ++events > 0; }, &error);
  EXPECT_EQ(status, 503);
  EXPECT_EQ(events, 0);
  EXPECT_EQ(error.status, 503);
  EXPECT_EQ(error.header("retry-after"), "2");
  auto e = error.to_http_error();
  EXPECT_EQ(e.code, "ALL_SLOTS_BUSY");
  EXPECT_EQ(e.retry_after_s, 2);
}

}  // namespace
}  // namespace rbee::common
