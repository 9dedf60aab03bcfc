#pragma once
// HTTP client over cpp-httplib for daemon-to-daemon and CLI-to-queen calls. Network failures
// throw connection_error; HTTP error statuses are returned (see http_response::throw_if_error).

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "common/errors.h"
#include "common/sse.h"

namespace rbee::common {

// The peer could not be reached or the connection broke (not an HTTP error status).
class connection_error : public std::runtime_error {
 public:
  connection_error(std::string host_port, std::string cause);
  const std::string& host_port() const { return host_port_; }
  const std::string& cause() const { return cause_; }

 private:
  std::string host_port_;
  std::string cause_;
};

struct client_options {
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds read_timeout{30000};  // for SSE: longest silence between chunks
  std::string bearer_token{};                     // empty = no Authorization header
  std::map<std::string, std::string> headers{};   // sent with every request
  // SSE only: asked whenever bytes arrive (events or keep-alive comments); false ends the
  // stream as if on_event had said stop. Lets a relay notice that its own client left even
  // while the upstream sends no events.
  std::function<bool()> still_wanted{};
};

struct http_response {
  int status = 0;
  std::string body{};
  std::map<std::string, std::string> headers{};  // lower-case names

  bool ok() const { return status >= 200 && status < 300; }
  // Parses body; throws nlohmann::json::parse_error on malformed JSON.
  nlohmann::json json_body() const;
  // Header value or "" (name is case-insensitive).
  std::string header(std::string_view name) const;
  // For non-2xx: the http_error the peer described ({"error":{code,message,details}}), or a
  // generic one naming the status when the body is not our error shape. Retry-After is kept.
  http_error to_http_error() const;
  void throw_if_error() const {
    if (!ok()) throw to_http_error();
  }
};

class http_client {
 public:
  // base_url: "http://host:port" (a trailing '/' is ignored). Throws std::invalid_argument
  // for anything else (https is not supported between rbee daemons).
  explicit http_client(std::string base_url, client_options options = {});
  ~http_client();
  http_client(http_client&&) noexcept;
  http_client& operator=(http_client&&) noexcept;

  http_response get(const std::string& path);
  http_response post_json(const std::string& path, const nlohmann::json& body);
  http_response del(const std::string& path);

  // Streams the response: each event is delivered as it arrives. on_event returns false to
  // stop (the connection is closed, which the server sees as a cancel). Returns the HTTP
  // status; for a non-200 status no events are delivered and, when error_response is given,
  // it receives the full error response (status, headers, body).
  int post_sse(const std::string& path, const nlohmann::json& body,
               const std::function<bool(const sse_event&)>& on_event,
               http_response* error_response = nullptr);
  int get_sse(const std::string& path, const std::function<bool(const sse_event&)>& on_event,
              http_response* error_response = nullptr);

  const std::string& base_url() const { return base_url_; }
  std::string host_port() const;

 private:
  struct impl;
  std::string base_url_;
  client_options options_;
  std::unique_ptr<impl> impl_;
};

struct retry_policy {
  int attempts = 3;  // total tries, including the first
  std::chrono::milliseconds initial_backoff{500};
  double multiplier = 2.0;
  std::chrono::milliseconds max_backoff{30000};
  // Injected for tests; defaults to std::this_thread::sleep_for.
  std::function<void(std::chrono::milliseconds)> sleep{};
};

// Delay before retry number `retry` (1-based): initial * multiplier^(retry-1), capped.
std::chrono::milliseconds backoff_delay(const retry_policy& policy, int retry);

// Calls fn() until it returns without throwing connection_error, at most policy.attempts
// times; the last connection_error is rethrown. Other exceptions propagate at once.
template <class F>
auto with_retry(const retry_policy& policy, F&& fn,
                std::function<void(int attempt, const std::exception&)> on_retry = {})
    -> decltype(fn()) {
  for (int attempt = 1;; ++attempt) {
    try {
      return fn();
    } catch (const connection_error& e) {
      if (attempt >= policy.attempts) throw;
      if (on_retry) on_retry(attempt, e);
      auto delay = backoff_delay(policy, attempt);
      if (policy.sleep) {
        policy.sleep(delay);
      } else {
        std::this_thread::sleep_for(delay);
      }
    }
  }
}

}  // namespace rbee::common
