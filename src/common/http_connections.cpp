#include "common/http_connections.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <thread>

#include <spdlog/spdlog.h>

#include "common/errors.h"

namespace rbee::common {

namespace {

using steady = std::chrono::steady_clock;
using namespace std::chrono_literals;

// How often a waiting connection looks at whether its server is stopping.
constexpr auto stop_poll_interval = 100ms;

int to_poll_ms(std::chrono::milliseconds d) {
  return static_cast<int>(std::clamp<int64_t>(d.count(), 0, INT32_MAX));
}

// Waits for events on fd; returns poll's revents, 0 on timeout, -1 on error.
int wait_for(int fd, short events, std::chrono::milliseconds timeout) {
  pollfd p{.fd = fd, .events = events, .revents = 0};
  int r;
  do {
    r = ::poll(&p, 1, to_poll_ms(timeout));
  } while (r < 0 && errno == EINTR);
  return r <= 0 ? r : p.revents;
}

void address_of(const sockaddr_storage& addr, std::string& ip, int& port) {
  char text[INET6_ADDRSTRLEN] = {};
  if (addr.ss_family == AF_INET) {
    const auto& a = reinterpret_cast<const sockaddr_in&>(addr);
    ::inet_ntop(AF_INET, &a.sin_addr, text, sizeof text);
    port = ntohs(a.sin_port);
  } else if (addr.ss_family == AF_INET6) {
    const auto& a = reinterpret_cast<const sockaddr_in6&>(addr);
    ::inet_ntop(AF_INET6, &a.sin6_addr, text, sizeof text);
    port = ntohs(a.sin6_port);
  } else {
    port = 0;
  }
  ip = text;
}

void peer_address(int fd, std::string& ip, int& port) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    address_of(addr, ip, port);
  }
}

void local_address(int fd, std::string& ip, int& port) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    address_of(addr, ip, port);
  }
}

// A complete HTTP response written straight to a socket that has no request (yet): the
// connection is refused or timed out before httplib saw a request line.
void write_raw_error(int fd, int status, std::string_view reason, std::string_view code,
                     std::string_view message, std::optional<int> retry_after_s) {
  std::string body = error_body(code, message).dump();
  std::string head = "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) +
                     "\r\nContent-Type: application/json\r\nConnection: close\r\n";
  if (retry_after_s) head += "Retry-After: " + std::to_string(*retry_after_s) + "\r\n";
  head += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
  std::string all = head + body;
  // Best effort, never blocking: the peer may be gone or not reading.
  (void)::send(fd, all.data(), all.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
}

// The socket of one connection as httplib sees it, with the request-read deadline applied to
// every read until the handler starts.
class connection_stream final : public httplib::Stream {
 public:
  connection_stream(int fd, const connection_limits& limits) : fd_(fd), limits_(limits) {}

  void begin_request() {
    deadline_ = steady::now() + limits_.request_read_timeout;
    timed_out_ = false;
    wrote_ = false;
  }
  void close_after_response() { close_after_response_ = true; }
  bool closing() const { return close_after_response_; }
  void end_reading() { deadline_.reset(); }
  bool timed_out() const { return timed_out_; }
  bool wrote() const { return wrote_; }
  bool has_buffered() const { return begin_ < end_; }

  // Waits for bytes until the request-read deadline (while one is set), else for the idle
  // timeout. Marks timed_out() when the deadline passed first.
  bool is_readable() const override {
    if (has_buffered()) return true;
    if (!deadline_) return wait_for(fd_, POLLIN, limits_.idle_timeout) > 0;
    while (true) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(*deadline_ - steady::now());
      if (left <= 0ms) {
        timed_out_ = true;
        return false;
      }
      if (wait_for(fd_, POLLIN, left) != 0) return true;  // bytes, or an error recv reports
    }
  }

  bool is_writable() const override {
    return wait_for(fd_, POLLOUT, limits_.write_timeout) > 0 && peer_still_there();
  }

  ssize_t read(char* ptr, size_t size) override {
    if (!has_buffered()) {
      if (!is_readable()) return -1;
      ssize_t n;
      do {
        n = ::recv(fd_, buffer_, sizeof buffer_, 0);
      } while (n < 0 && errno == EINTR);
      if (n <= 0) return n;
      begin_ = 0;
      end_ = static_cast<size_t>(n);
    }
    size_t n = std::min(size, end_ - begin_);
    std::memcpy(ptr, buffer_ + begin_, n);
    begin_ += n;
    return static_cast<ssize_t>(n);
  }

  ssize_t write(const char* ptr, size_t size) override {
    if (!is_writable()) return -1;
    ssize_t n;
    do {
      n = ::send(fd_, ptr, size, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n > 0) wrote_ = true;
    return n;
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    peer_address(fd_, ip, port);
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    local_address(fd_, ip, port);
  }
  socket_t socket() const override { return fd_; }

  // A peer that closed its side shows as readable with nothing to read (a pipelined next
  // request is data, so it counts as present).
  bool peer_still_there() const {
    if (wait_for(fd_, POLLIN, 0ms) <= 0) return true;
    char byte;
    ssize_t n = ::recv(fd_, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n > 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
  }

 private:
  int fd_;
  const connection_limits& limits_;
  std::optional<steady::time_point> deadline_;
  mutable bool timed_out_ = false;
  bool wrote_ = false;
  bool close_after_response_ = false;
  char buffer_[4096];
  size_t begin_ = 0;
  size_t end_ = 0;
};

struct connection_context {
  connection_stream* stream = nullptr;
  const std::atomic<socket_t>* listening_socket = nullptr;
};
thread_local connection_context current_connection;

}  // namespace

// ---- connection_counter ----

connection_counter::verdict connection_counter::try_open(const std::string& client) {
  std::lock_guard lock(mutex_);
  if (total_ >= limits_.max_connections) return verdict::server_over_limit;
  size_t& mine = by_client_[client];
  if (mine >= limits_.max_connections_per_client) return verdict::client_over_limit;
  ++mine;
  ++total_;
  return verdict::admitted;
}

void connection_counter::close(const std::string& client) {
  std::lock_guard lock(mutex_);
  auto it = by_client_.find(client);
  if (it == by_client_.end()) return;
  --total_;
  if (--it->second == 0) by_client_.erase(it);
}

size_t connection_counter::open_total() const {
  std::lock_guard lock(mutex_);
  return total_;
}

// ---- on_demand_threads ----

// Shared with the threads, so a thread finishing its last steps never touches a freed pool.
struct on_demand_threads::state {
  std::mutex mutex;
  std::condition_variable work_ready;
  std::condition_variable all_done;
  std::deque<std::function<void()>> tasks;
  size_t threads = 0;
  size_t idle = 0;
  bool shutting_down = false;
  std::chrono::milliseconds idle_exit;
};

on_demand_threads::on_demand_threads(std::chrono::milliseconds idle_exit)
    : state_(std::make_shared<state>()) {
  state_->idle_exit = idle_exit;
}

on_demand_threads::~on_demand_threads() {
  shutdown();
}

void on_demand_threads::enqueue(std::function<void()> fn) {
  std::lock_guard lock(state_->mutex);
  state_->tasks.push_back(std::move(fn));
  if (state_->idle > state_->tasks.size() - 1) {
    state_->work_ready.notify_one();
    return;
  }
  ++state_->threads;
  std::thread([s = state_] {
    std::unique_lock lock(s->mutex);
    while (true) {
      if (s->tasks.empty()) {
        ++s->idle;
        bool woke = s->work_ready.wait_for(lock, s->idle_exit,
                                           [&] { return !s->tasks.empty() || s->shutting_down; });
        --s->idle;
        if (!woke || s->tasks.empty()) break;
      }
      auto task = std::move(s->tasks.front());
      s->tasks.pop_front();
      lock.unlock();
      task();
      task = nullptr;  // its captures go before the lock is taken again
      lock.lock();
    }
    if (--s->threads == 0) s->all_done.notify_all();
  }).detach();
}

void on_demand_threads::shutdown() {
  std::unique_lock lock(state_->mutex);
  state_->shutting_down = true;
  state_->work_ready.notify_all();
  state_->all_done.wait(lock, [&] { return state_->threads == 0; });
}

// ---- guarded_server ----

guarded_server::guarded_server(connection_limits limits) : limits_(limits), counter_(limits_) {
  new_task_queue = [] { return new on_demand_threads(); };
}

void guarded_server::raise_listen_backlog() {
  // Linux caps the backlog at net.core.somaxconn; listening again only updates it.
  if (svr_sock_ != INVALID_SOCKET) ::listen(svr_sock_, SOMAXCONN * 4);
}

void guarded_server::close_after_response() {
  if (current_connection.stream) current_connection.stream->close_after_response();
}

void guarded_server::request_read_complete() {
  if (current_connection.stream) current_connection.stream->end_reading();
}

bool guarded_server::request_read_timed_out() {
  return current_connection.stream && current_connection.stream->timed_out();
}

bool guarded_server::peer_connected() {
  return !current_connection.stream || current_connection.stream->peer_still_there();
}

bool guarded_server::serving_thread_stopping() {
  return current_connection.listening_socket &&
         current_connection.listening_socket->load() == INVALID_SOCKET;
}

bool guarded_server::process_and_close_socket(socket_t sock) {
  std::string client;
  int port = 0;
  peer_address(sock, client, port);
  auto verdict = counter_.try_open(client);
  if (verdict != connection_counter::verdict::admitted) {
    bool per_client = verdict == connection_counter::verdict::client_over_limit;
    spdlog::warn("refusing a connection from {}: {}", client,
                 per_client ? "too many connections from this client" : "too many connections");
    if (per_client) {
      write_raw_error(sock, 429, "Too Many Requests", codes::TOO_MANY_CONNECTIONS,
                      "Too many open connections from " + client + " (limit " +
                          std::to_string(limits_.max_connections_per_client) + ")",
                      1);
    } else {
      write_raw_error(
          sock, 503, "Service Unavailable", codes::SERVER_BUSY,
          "Too many open connections (limit " + std::to_string(limits_.max_connections) + ")", 1);
    }
    ::shutdown(sock, SHUT_RDWR);
    ::close(sock);
    return false;
  }

  connection_stream stream(sock, limits_);
  current_connection = {&stream, &svr_sock_};
  bool ok = true;
  while (svr_sock_ != INVALID_SOCKET) {
    // Idle between requests: wait for the next one's first byte, noticing a stop.
    if (!stream.has_buffered()) {
      auto idle_until = steady::now() + limits_.idle_timeout;
      int ready = 0;
      while (ready == 0 && svr_sock_ != INVALID_SOCKET && steady::now() < idle_until) {
        ready = wait_for(sock, POLLIN, stop_poll_interval);
      }
      if (ready <= 0) break;
    }
    stream.begin_request();
    bool closed = false;
    ok = process_request(stream, false, closed, nullptr);
    if (stream.timed_out() && !stream.wrote()) {
      write_raw_error(sock, 408, "Request Timeout", codes::REQUEST_TIMEOUT,
                      "The request was not received within " +
                          std::to_string(limits_.request_read_timeout.count()) + " ms",
                      std::nullopt);
    }
    if (!ok || closed || stream.timed_out() || stream.closing()) break;
  }
  current_connection = {};
  ::shutdown(sock, SHUT_RDWR);
  ::close(sock);
  counter_.close(client);
  return ok;
}

}  // namespace rbee::common
