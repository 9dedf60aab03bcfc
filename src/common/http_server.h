#pragma once
// One HTTP server setup for every daemon (queen, hive, worker): JSON errors, bearer auth,
// request ids, body limits and request logging are handled here once.
//
// Every registered handler is wrapped:
//   http_error          -> its status + {"error":{...}} (+ Retry-After)
//   json::parse_error   -> 400 INVALID_REQUEST with the byte position
//   other std::exception -> 500 INTERNAL (logged); the server keeps serving.
// Unknown route -> 404 NOT_FOUND, body over max_body_bytes -> 413 PAYLOAD_TOO_LARGE.
// Connections are served as http_connections.h describes: a thread per open connection,
// request-read and idle deadlines, per-client and total connection caps.

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "common/http_connections.h"

namespace rbee::common {

struct server_options {
  std::string name{};  // used in logs ("queen-rbee")
  std::string host = "127.0.0.1";
  int port = 0;                           // 0 = ephemeral (see http_server::port())
  std::vector<std::string> api_tokens{};  // empty = auth off
  std::vector<std::string> public_paths = {"/health", "/v1/health"};  // exact, or prefix ending '*'
  // Paths browsers may call from any origin (CORS): answers carry Access-Control-Allow-Origin
  // and preflight OPTIONS requests are answered without credentials. Bearer tokens (no cookies)
  // guard them, so any origin is safe to allow.
  std::vector<std::string> cors_paths{};
  size_t max_body_bytes = 1 << 20;
  connection_limits limits{};
};

using http_handler = std::function<void(const httplib::Request&, httplib::Response&)>;

// True for 127.0.0.0/8, ::1 and "localhost".
bool is_loopback(std::string_view host);

// start() found its port taken by another process. A daemon started on a port its parent
// chose exits with exit_address_in_use then, so the parent can retry on another port.
struct address_in_use : std::runtime_error {
  using std::runtime_error::runtime_error;
};
inline constexpr int exit_address_in_use = 98;

// A token that guards a daemon beyond loopback: at least min_token_length printable ASCII
// characters, no whitespace (a blank or short token would be guessed).
inline constexpr size_t min_token_length = 16;
bool is_strong_token(std::string_view token);

// Throws std::runtime_error when options bind a non-loopback address without a token, or with
// any token that is not strong (SPEC §3).
void require_token_for_non_loopback(const server_options& options);

// True when path matches one of the patterns (exact, or prefix when the pattern ends with '*').
bool path_matches(std::string_view path, const std::vector<std::string>& patterns);

class http_server {
 public:
  explicit http_server(server_options options);
  ~http_server();  // stop()
  http_server(const http_server&) = delete;
  http_server& operator=(const http_server&) = delete;

  // Routes use httplib patterns (regex captures land in req.matches). Register before start().
  void get(const std::string& pattern, http_handler handler);
  void post(const std::string& pattern, http_handler handler);
  void put(const std::string& pattern, http_handler handler);
  void del(const std::string& pattern, http_handler handler);

  // Binds (throws std::runtime_error naming host:port and errno on failure) and serves on a
  // background thread. Returns once the socket is bound, so port() is valid.
  void start();
  // Stops accepting and joins the serving thread; idempotent. In-flight handlers, including SSE
  // producers, are waited for: daemons end their streams first (they can poll stopping()).
  void stop();
  bool running() const;
  bool stopping() const { return stopping_.load(); }
  static bool is_loopback(std::string_view host) { return rbee::common::is_loopback(host); }
  int port() const { return bound_port_; }
  const server_options& options() const { return options_; }
  // "http://host:port" with the bound port (0.0.0.0 is reported as 127.0.0.1).
  std::string base_url() const;

  static void send_json(httplib::Response& res, int status, const nlohmann::json& body);
  // Writes the error shape (+ Retry-After when set).
  static void send_error(httplib::Response& res, int status, std::string_view code,
                         std::string_view message, const nlohmann::json& details = nullptr,
                         std::optional<int> retry_after_s = std::nullopt);
  // The id of the request being answered (X-Request-Id; generated when the client sent none).
  static std::string request_id(const httplib::Response& res);

  // The underlying server, for settings not covered here. Use with care.
  httplib::Server& raw() { return server_; }

 private:
  http_handler wrap(http_handler handler) const;

  server_options options_;
  guarded_server server_;
  std::thread thread_;
  int bound_port_ = 0;
  std::atomic<bool> stopping_{false};
};

}  // namespace rbee::common
