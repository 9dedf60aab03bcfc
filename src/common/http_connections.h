#pragma once
// How every daemon serves its connections (SPEC §3; issue 13, thread starvation):
//   - one thread per open connection, started on demand and ended when idle, so a long SSE
//     stream never holds a thread that /health needs (no fixed pool to exhaust);
//   - a deadline for reading each request (headers and body), so a slow client ("slowloris")
//     cannot hold a connection forever without ever finishing a request; 408 when it passes;
//   - an idle deadline between requests on a kept-alive connection;
//   - a cap on open connections per client address (429) and in total (503), answered at
//     accept time with the JSON error shape.
// The HTTP parsing itself stays cpp-httplib's: guarded_server only replaces the socket loop.

#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include <httplib.h>

#include "common/connection_limits.h"

namespace rbee::common {

// Counts open connections by remote address. Thread-safe.
class connection_counter {
 public:
  explicit connection_counter(const connection_limits& limits) : limits_(limits) {}
  enum class verdict { admitted, client_over_limit, server_over_limit };
  verdict try_open(const std::string& client);
  void close(const std::string& client);
  size_t open_total() const;

 private:
  const connection_limits& limits_;
  mutable std::mutex mutex_;
  std::map<std::string, size_t> by_client_;
  size_t total_ = 0;
};

// httplib::TaskQueue that runs each task on a thread of its own, reusing idle threads and
// letting them end after a while without work. shutdown() waits for every running task.
class on_demand_threads : public httplib::TaskQueue {
 public:
  explicit on_demand_threads(std::chrono::milliseconds idle_exit = std::chrono::seconds(30));
  ~on_demand_threads() override;
  void enqueue(std::function<void()> fn) override;
  void shutdown() override;

 private:
  struct state;
  std::shared_ptr<state> state_;
};

// The server whose socket loop enforces connection_limits. Handlers call
// request_read_complete() when they start (http_server's wrapper does), which lifts the
// request-read deadline for the rest of that request (a stream may last as long as it needs).
class guarded_server : public httplib::Server {
 public:
  explicit guarded_server(connection_limits limits);
  // httplib listens with a backlog of 5: a burst of clients would see dropped SYNs (a second's
  // retry each). Call after binding.
  void raise_listen_backlog();

  // Called on a connection thread when the request has been read; no-op elsewhere.
  static void request_read_complete();
  // Ends the connection once the current response is written (its request's body length is
  // unknown, so the next request cannot be found).
  static void close_after_response();
  // True on a connection thread whose request-read deadline passed (the 400 httplib then
  // writes becomes a 408).
  static bool request_read_timed_out();
  // False on a connection thread whose client closed its side (left while its request was
  // being answered); true elsewhere.
  static bool peer_connected();
  // True on a connection thread of a guarded_server that is stopping.
  static bool serving_thread_stopping();

 private:
  bool process_and_close_socket(socket_t sock) override;

  connection_limits limits_;
  connection_counter counter_;
};

}  // namespace rbee::common
