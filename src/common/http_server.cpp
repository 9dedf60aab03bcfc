#include "common/http_server.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>

#include <spdlog/spdlog.h>

#include "common/errors.h"
#include "common/log.h"
#include "common/secrets.h"

namespace rbee::common {

namespace {

constexpr const char* request_id_header = "X-Request-Id";

// What the request log line needs, carried from the first to the last hook. httplib handles a
// request on one thread from routing to the logger, so thread_local is per request.
struct request_context {
  bool active = false;
  std::chrono::steady_clock::time_point start;
  std::string token_fingerprint = "-";
};
thread_local request_context current_request;

// Request ids from clients are echoed only when short and printable, so logs stay readable.
bool acceptable_request_id(const std::string& id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

// Settles how long the body is before httplib reads it (RFC 9112 §6.3): a Content-Length must
// be a plain decimal number; a request with neither Content-Length nor chunked encoding has an
// empty body (httplib would otherwise wait for the peer to close, then answer 400). Returns
// false after writing a 400 for a malformed length.
bool frame_request_body(const httplib::Request& req, httplib::Response& res) {
  if (req.has_header("Content-Length")) {
    std::string length = req.get_header_value("Content-Length");
    bool digits = !length.empty() && length.size() <= 19 &&
                  length.find_first_not_of("0123456789") == std::string::npos;
    if (digits && req.get_header_value_count("Content-Length") == 1) return true;
    guarded_server::close_after_response();  // the body's end is unknown: no next request
    res.set_header("Connection", "close");
    http_server::send_error(res, 400, codes::INVALID_REQUEST,
                            "Content-Length must be one non-negative decimal number, got '" +
                                length.substr(0, 32) + "'",
                            {{"field", "Content-Length"}});
    return false;
  }
  if (req.get_header_value("Transfer-Encoding").empty()) {
    // httplib hands handlers a const request, but the object is its own, not shared.
    const_cast<httplib::Request&>(req).set_header("Content-Length", "0");
  }
  return true;
}

// The request headers a preflight asks to send, when they are plain header names.
std::string allowed_request_headers(const httplib::Request& req) {
  std::string asked = req.get_header_value("Access-Control-Request-Headers");
  const bool plain = asked.size() <= 1024 && std::all_of(asked.begin(), asked.end(), [](char c) {
                       return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ||
                              c == ',' || c == ' ';
                     });
  return plain && !asked.empty() ? asked : "Authorization, Content-Type";
}

// CORS for browser clients: every answer on a CORS path allows any origin; a preflight
// (OPTIONS) is answered here, before authentication, as browsers send it without credentials.
// True when the request was a preflight and has been answered.
bool answer_cors(const server_options& options, const httplib::Request& req,
                 httplib::Response& res) {
  if (!path_matches(req.path, options.cors_paths)) return false;
  res.set_header("Access-Control-Allow-Origin", "*");
  if (req.method != "OPTIONS") return false;
  res.status = 204;
  res.set_header("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS");
  res.set_header("Access-Control-Allow-Headers", allowed_request_headers(req));
  res.set_header("Access-Control-Max-Age", "86400");
  return true;
}

}  // namespace

bool is_loopback(std::string_view host) {
  if (host == "localhost" || host == "::1" || host == "[::1]") return true;
  in_addr addr{};
  std::string h(host);
  if (inet_pton(AF_INET, h.c_str(), &addr) == 1) {
    return (ntohl(addr.s_addr) >> 24) == 127;
  }
  return false;
}

bool is_strong_token(std::string_view token) {
  if (token.size() < min_token_length) return false;
  return std::all_of(token.begin(), token.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

void require_token_for_non_loopback(const server_options& options) {
  if (is_loopback(options.host)) return;
  const std::string who = options.name.empty() ? std::string("server") : options.name;
  if (options.api_tokens.empty()) {
    throw std::runtime_error(who + ": refusing to listen on non-loopback address " + options.host +
                             " without an API token (set RBEE_API_KEY or configure one)");
  }
  for (const auto& token : options.api_tokens) {
    if (!is_strong_token(token)) {
      throw std::runtime_error(who + ": refusing to listen on non-loopback address " +
                               options.host + " with a weak API token: each token needs at least " +
                               std::to_string(min_token_length) +
                               " printable characters and no spaces (e.g. `openssl rand -hex 32`)");
    }
  }
}

bool path_matches(std::string_view path, const std::vector<std::string>& patterns) {
  for (const auto& p : patterns) {
    if (!p.empty() && p.back() == '*') {
      if (path.starts_with(std::string_view(p).substr(0, p.size() - 1))) return true;
    } else if (path == p) {
      return true;
    }
  }
  return false;
}

http_server::http_server(server_options options)
    : options_(std::move(options)), server_(options_.limits) {
  server_.set_payload_max_length(options_.max_body_bytes);
  const auto write_s =
      std::chrono::duration_cast<std::chrono::seconds>(options_.limits.write_timeout);
  server_.set_write_timeout(std::max<time_t>(1, write_s.count()));
  server_.set_tcp_nodelay(true);
  // httplib's default also sets SO_REUSEPORT, which lets a second daemon bind the same port and
  // silently share its traffic. SO_REUSEADDR alone still allows quick restarts.
  server_.set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });

  server_.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    current_request = {true, std::chrono::steady_clock::now(), "-"};
    std::string id = req.get_header_value(request_id_header);
    res.set_header(request_id_header, acceptable_request_id(id) ? id : random_token(8));
    if (!frame_request_body(req, res) || answer_cors(options_, req, res)) {
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });

  // Responses that no handler wrote (unknown route, body too large, malformed request line)
  // still get the JSON error shape.
  server_.set_error_handler(
      httplib::Server::HandlerWithResponse([this](const httplib::Request&, httplib::Response& res) {
        if (!res.body.empty() || res.content_provider_) {
          return httplib::Server::HandlerResponse::Unhandled;
        }
        if (res.status == 400 && guarded_server::request_read_timed_out()) {
          res.status = 408;
          send_error(res, 408, codes::REQUEST_TIMEOUT,
                     "The request was not received within " +
                         std::to_string(options_.limits.request_read_timeout.count()) + " ms");
        } else if (res.status == 404) {
          send_error(res, 404, codes::NOT_FOUND, "no route for this method and path");
        } else if (res.status == 413) {
          auto e = payload_too_large(options_.max_body_bytes);
          send_error(res, 413, e.code, e.message, e.details);
        } else if (res.status == 400) {
          send_error(res, 400, codes::INVALID_REQUEST, "malformed HTTP request");
        } else {
          send_error(res, res.status, res.status >= 500 ? codes::INTERNAL : codes::INVALID_REQUEST,
                     "HTTP " + std::to_string(res.status));
        }
        return httplib::Server::HandlerResponse::Handled;
      }));

  // Safety net: handlers are wrapped, but nothing thrown may take the server down.
  server_.set_exception_handler(
      [this](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "unknown exception";
        try {
          std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          what = e.what();
        }
        spdlog::error("{}: unhandled exception in {} {}: {}", options_.name, req.method, req.path,
                      what);
        send_error(res, 500, codes::INTERNAL, "internal error");
      });

  server_.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    double ms = 0;
    if (current_request.active) {
      ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() -
                                                     current_request.start)
               .count();
    }
    auto level = path_matches(req.path, options_.public_paths) && res.status < 400
                     ? spdlog::level::debug
                     : spdlog::level::info;
    spdlog::log(level, "{} {} {} {} {:.1f}ms id={} token={}", options_.name, req.method, req.path,
                res.status, ms, res.get_header_value(request_id_header),
                current_request.token_fingerprint);
    current_request.active = false;
  });
}

http_server::~http_server() {
  stop();
}

http_handler http_server::wrap(http_handler handler) const {
  return [this, handler = std::move(handler)](const httplib::Request& req, httplib::Response& res) {
    guarded_server::request_read_complete();  // the deadline covers reading, not answering
    try {
      if (!options_.api_tokens.empty() && !path_matches(req.path, options_.public_paths)) {
        std::string auth = req.get_header_value("Authorization");
        if (auth.empty()) throw missing_api_key();
        constexpr std::string_view scheme = "Bearer ";
        if (!auth.starts_with(scheme)) {
          throw http_error(401, codes::INVALID_API_KEY,
                           "unsupported Authorization scheme: use 'Bearer <token>'");
        }
        std::string_view token = std::string_view(auth).substr(scheme.size());
        current_request.token_fingerprint = token_fingerprint(token);
        bool ok = false;
        // No early exit: the time taken must not tell which token came close.
        for (const auto& expected : options_.api_tokens) {
          ok |= !expected.empty() && constant_time_equals(token, expected);
        }
        if (!ok) throw invalid_api_key();
      }
      handler(req, res);
    } catch (const http_error& e) {
      if (e.status >= 500) {
        spdlog::warn("{}: {} {} -> {} {}: {}", options_.name, req.method, req.path, e.status,
                     e.code, e.message);
      }
      send_error(res, e.status, e.code, e.message, e.details, e.retry_after_s);
    } catch (const nlohmann::json::parse_error& e) {
      send_error(res, 400, codes::INVALID_REQUEST,
                 "malformed JSON at byte " + std::to_string(e.byte) + ": " + e.what(),
                 {{"position", e.byte}});
    } catch (const nlohmann::json::out_of_range& e) {
      send_error(res, 400, codes::INVALID_REQUEST, std::string("unusable JSON: ") + e.what());
    } catch (const std::exception& e) {
      spdlog::error("{}: {} {} failed: {}", options_.name, req.method, req.path, e.what());
      send_error(res, 500, codes::INTERNAL, std::string("internal error: ") + e.what());
    }
  };
}

void http_server::get(const std::string& pattern, http_handler handler) {
  server_.Get(pattern, wrap(std::move(handler)));
}
void http_server::post(const std::string& pattern, http_handler handler) {
  server_.Post(pattern, wrap(std::move(handler)));
}
void http_server::put(const std::string& pattern, http_handler handler) {
  server_.Put(pattern, wrap(std::move(handler)));
}
void http_server::del(const std::string& pattern, http_handler handler) {
  server_.Delete(pattern, wrap(std::move(handler)));
}

void http_server::start() {
  if (thread_.joinable()) throw std::logic_error(options_.name + ": server already started");
  errno = 0;
  if (options_.port == 0) {
    bound_port_ = server_.bind_to_any_port(options_.host);
    if (bound_port_ <= 0) bound_port_ = 0;
  } else if (server_.bind_to_port(options_.host, options_.port)) {
    bound_port_ = options_.port;
  }
  if (bound_port_ == 0) {
    int err = errno;
    if (err == EADDRINUSE) {
      throw address_in_use(options_.name + ": cannot listen on " + options_.host + ":" +
                           std::to_string(options_.port) + ": " + std::strerror(err));
    }
    throw std::runtime_error(options_.name + ": cannot listen on " + options_.host + ":" +
                             std::to_string(options_.port) +
                             (err ? std::string(": ") + std::strerror(err)
                                  : std::string(" (address in use or invalid)")));
  }
  server_.raise_listen_backlog();
  auto finished = std::make_shared<std::atomic<bool>>(false);
  thread_ = std::thread([this, finished] {
    server_.listen_after_bind();
    finished->store(true);
  });
  // stop() is a no-op until the accept loop runs, so wait for it before returning.
  while (!server_.is_running() && !finished->load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (!server_.is_running()) {
    thread_.join();
    throw std::runtime_error(options_.name + ": server on " + options_.host + ":" +
                             std::to_string(bound_port_) + " stopped right after starting");
  }
  spdlog::info("{} listening on {}:{}{}", options_.name, options_.host, bound_port_,
               options_.api_tokens.empty() ? " (auth off)" : "");
}

void http_server::stop() {
  if (!thread_.joinable()) return;
  stopping_.store(true);
  server_.stop();
  thread_.join();
}

bool http_server::running() const {
  return thread_.joinable() && server_.is_running();
}

std::string http_server::base_url() const {
  std::string host = options_.host;
  if (host == "0.0.0.0" || host.empty()) host = "127.0.0.1";
  if (host.find(':') != std::string::npos && host.front() != '[') host = "[" + host + "]";
  return "http://" + host + ":" + std::to_string(bound_port_);
}

void http_server::send_json(httplib::Response& res, int status, const nlohmann::json& body) {
  res.status = status;
  res.set_content(body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                  "application/json");
}

void http_server::send_error(httplib::Response& res, int status, std::string_view code,
                             std::string_view message, const nlohmann::json& details,
                             std::optional<int> retry_after_s) {
  if (retry_after_s) res.set_header("Retry-After", std::to_string(*retry_after_s));
  send_json(res, status, error_body(code, message, details));
}

std::string http_server::request_id(const httplib::Response& res) {
  return res.get_header_value(request_id_header);
}

}  // namespace rbee::common
