#include "common/http_client.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <exception>
#include <stdexcept>

#include <httplib.h>

namespace rbee::common {

namespace {

// Error bodies are small; a peer streaming megabytes of "error" is cut off here.
constexpr size_t max_error_body_bytes = 1 << 20;
// One SSE event never comes near this; a peer sending more without an event end is broken.
constexpr size_t max_sse_event_bytes = 16 << 20;

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::map<std::string, std::string> lower_headers(const httplib::Headers& headers) {
  std::map<std::string, std::string> out;
  for (const auto& [k, v] : headers) out.emplace(lower(k), v);
  return out;
}

}  // namespace

connection_error::connection_error(std::string host_port, std::string cause)
    : std::runtime_error("cannot reach " + host_port + ": " + cause),
      host_port_(std::move(host_port)),
      cause_(std::move(cause)) {}

nlohmann::json http_response::json_body() const {
  return nlohmann::json::parse(body);
}

std::string http_response::header(std::string_view name) const {
  auto it = headers.find(lower(name));
  return it == headers.end() ? std::string() : it->second;
}

http_error http_response::to_http_error() const {
  std::optional<int> retry_after;
  if (auto ra = header("Retry-After"); !ra.empty()) {
    try {
      retry_after = std::stoi(ra);
    } catch (const std::exception&) {
      retry_after.reset();  // an HTTP-date Retry-After is not used between rbee daemons
    }
  }
  auto parsed = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_object() && parsed.contains("error") && parsed["error"].is_object()) {
    const auto& e = parsed["error"];
    std::string code = e.value("code", std::string(codes::INTERNAL));
    std::string message = e.value("message", "HTTP " + std::to_string(status));
    nlohmann::json details = e.contains("details") ? e["details"] : nlohmann::json();
    return http_error(status, code, message, details, retry_after);
  }
  std::string snippet = body.substr(0, 200);
  return http_error(status, status == 404 ? codes::NOT_FOUND : codes::INTERNAL,
                    "HTTP " + std::to_string(status) + (snippet.empty() ? "" : ": " + snippet),
                    nullptr, retry_after);
}

struct http_client::impl {
  std::string host;
  int port = 0;
};

http_client::http_client(std::string base_url, client_options options)
    : base_url_(std::move(base_url)), options_(std::move(options)), impl_(new impl) {
  while (!base_url_.empty() && base_url_.back() == '/') base_url_.pop_back();
  constexpr std::string_view scheme = "http://";
  if (!base_url_.starts_with(scheme)) {
    throw std::invalid_argument("unsupported URL '" + base_url_ + "': expected http://host:port");
  }
  std::string_view rest = std::string_view(base_url_).substr(scheme.size());
  if (rest.find('/') != std::string_view::npos) {
    throw std::invalid_argument("unsupported URL '" + base_url_ + "': no path allowed");
  }
  std::string_view host = rest;
  int port = 80;
  size_t colon = rest.rfind(':');
  bool bracketed = !rest.empty() && rest.front() == '[';
  if (colon != std::string_view::npos && (!bracketed || colon > rest.find(']'))) {
    host = rest.substr(0, colon);
    std::string port_text(rest.substr(colon + 1));
    try {
      size_t used = 0;
      port = std::stoi(port_text, &used);
      if (used != port_text.size() || port <= 0 || port > 65535) throw std::out_of_range("port");
    } catch (const std::exception&) {
      throw std::invalid_argument("invalid port in URL '" + base_url_ + "'");
    }
  }
  if (bracketed && host.size() >= 2 && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host.empty()) throw std::invalid_argument("missing host in URL '" + base_url_ + "'");
  impl_->host = std::string(host);
  impl_->port = port;
}

http_client::~http_client() = default;
http_client::http_client(http_client&&) noexcept = default;
http_client& http_client::operator=(http_client&&) noexcept = default;

std::string http_client::host_port() const {
  return impl_->host + ":" + std::to_string(impl_->port);
}

namespace {

// A fresh httplib client per request: cheap (the connection is not kept alive anyway), and it
// makes http_client safe to share between threads.
httplib::Headers request_headers(const client_options& options) {
  httplib::Headers headers;
  // Compressed SSE would be buffered by the server's compressor; ask for none.
  headers.emplace("Accept-Encoding", "identity");
  if (!options.bearer_token.empty()) {
    headers.emplace("Authorization", "Bearer " + options.bearer_token);
  }
  for (const auto& [k, v] : options.headers) headers.emplace(k, v);
  return headers;
}

std::unique_ptr<httplib::Client> make_client(const std::string& host, int port,
                                             const client_options& options) {
  auto cli = std::make_unique<httplib::Client>(host, port);
  cli->set_connection_timeout(options.connect_timeout);
  cli->set_read_timeout(options.read_timeout);
  cli->set_write_timeout(options.read_timeout);
  cli->set_keep_alive(false);
  cli->set_decompress(false);
  return cli;
}

http_response to_response(const httplib::Result& result, const std::string& host_port) {
  if (!result) throw connection_error(host_port, httplib::to_string(result.error()));
  return {result->status, result->body, lower_headers(result->headers)};
}

}  // namespace

http_response http_client::get(const std::string& path) {
  auto cli = make_client(impl_->host, impl_->port, options_);
  return to_response(cli->Get(path, request_headers(options_)), host_port());
}

http_response http_client::post_json(const std::string& path, const nlohmann::json& body) {
  auto cli = make_client(impl_->host, impl_->port, options_);
  return to_response(cli->Post(path, request_headers(options_),
                               body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                               "application/json"),
                     host_port());
}

http_response http_client::del(const std::string& path) {
  auto cli = make_client(impl_->host, impl_->port, options_);
  return to_response(cli->Delete(path, request_headers(options_)), host_port());
}

namespace {

int stream_sse(httplib::Client& cli, httplib::Request& req, const std::string& host_port,
               const std::function<bool(const sse_event&)>& on_event,
               const std::function<bool()>& still_wanted, http_response* error_response) {
  int status = 0;
  httplib::Headers response_headers;
  std::string error_body;
  bool stopped = false;
  bool oversized = false;
  std::exception_ptr callback_error;
  sse_parser parser;
  req.set_header("Accept", "text/event-stream");
  req.response_handler = [&](const httplib::Response& r) {
    status = r.status;
    response_headers = r.headers;
    return true;
  };
  req.content_receiver = [&](const char* data, size_t len, uint64_t, uint64_t) {
    if (status != 200) {
      error_body.append(data, std::min(len, max_error_body_bytes - error_body.size()));
      return error_body.size() < max_error_body_bytes;
    }
    // Exceptions from on_event must not unwind through httplib: carried out and rethrown.
    try {
      parser.feed(std::string_view(data, len), [&](const sse_event& ev) {
        if (!stopped && !on_event(ev)) stopped = true;
      });
    } catch (const std::exception&) {
      callback_error = std::current_exception();
      return false;
    }
    if (parser.buffered() > max_sse_event_bytes) oversized = true;
    if (!stopped && still_wanted && !still_wanted()) stopped = true;
    return !stopped && !oversized;
  };
  httplib::Response res;
  httplib::Error err = httplib::Error::Success;
  bool ok = cli.send(req, res, err);
  if (callback_error) std::rethrow_exception(callback_error);
  if (oversized) {
    throw connection_error(
        host_port, "SSE event larger than " + std::to_string(max_sse_event_bytes) + " bytes");
  }
  // Canceled is our own doing: on_event said stop, or an error body hit its size cap.
  bool we_cancelled = err == httplib::Error::Canceled && (stopped || status != 200);
  if (!ok && !we_cancelled) {
    if (status == 0) throw connection_error(host_port, httplib::to_string(err));
    // The headers came, then the peer went away mid-stream.
    throw connection_error(host_port, "stream interrupted: " + httplib::to_string(err));
  }
  if (status != 200 && error_response) {
    *error_response = {status, std::move(error_body), lower_headers(response_headers)};
  }
  return status;
}

}  // namespace

int http_client::post_sse(const std::string& path, const nlohmann::json& body,
                          const std::function<bool(const sse_event&)>& on_event,
                          http_response* error_response) {
  auto cli = make_client(impl_->host, impl_->port, options_);
  httplib::Request req;
  req.method = "POST";
  req.path = path;
  req.headers = request_headers(options_);
  req.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  req.set_header("Content-Type", "application/json");
  return stream_sse(*cli, req, host_port(), on_event, options_.still_wanted, error_response);
}

int http_client::get_sse(const std::string& path,
                         const std::function<bool(const sse_event&)>& on_event,
                         http_response* error_response) {
  auto cli = make_client(impl_->host, impl_->port, options_);
  httplib::Request req;
  req.method = "GET";
  req.path = path;
  req.headers = request_headers(options_);
  return stream_sse(*cli, req, host_port(), on_event, options_.still_wanted, error_response);
}

std::chrono::milliseconds backoff_delay(const retry_policy& policy, int retry) {
  double ms = static_cast<double>(policy.initial_backoff.count()) *
              std::pow(policy.multiplier, std::max(0, retry - 1));
  double cap = static_cast<double>(policy.max_backoff.count());
  return std::chrono::milliseconds(static_cast<int64_t>(std::min(ms, cap)));
}

}  // namespace rbee::common
