#include "harness/hub_server.h"

#include <fstream>
#include <sstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "common/log.h"

namespace rbee::e2e {
namespace {

std::string key_of(const std::string& org_repo, const std::string& file) {
  return org_repo + ":" + file;
}

std::string read_all(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("hub_server: cannot read " + path.string());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

hub_server::hub_server() {
  // The real hub's model API: the repo's files.
  server_.Get(R"(/api/models/([^/]+)/([^/]+))", [this](const httplib::Request& req,
                                                       httplib::Response& res) {
    std::string org_repo = std::string(req.matches[1]) + "/" + std::string(req.matches[2]);
    if (!authorized(req)) {
      res.status = 401;
      res.set_content(R"({"error":"Invalid credentials in Authorization header"})",
                      "application/json");
      record(req, 401);
      return;
    }
    auto siblings = nlohmann::json::array();
    {
      std::lock_guard lock(mutex_);
      for (const auto& [key, e] : files_) {
        if (key.starts_with(org_repo + ":"))
          siblings.push_back({{"rfilename", key.substr(org_repo.size() + 1)}});
      }
    }
    if (siblings.empty()) {
      res.status = 404;
      res.set_content(R"({"error":"Repository not found"})", "application/json");
    } else {
      res.status = 200;
      res.set_content(nlohmann::json{{"id", org_repo}, {"siblings", siblings}}.dump(),
                      "application/json");
    }
    record(req, res.status);
  });
  server_.Get(R"(/([^/]+)/([^/]+)/resolve/main/(.+))", [this](const httplib::Request& req,
                                                              httplib::Response& res) {
    serve_file(req, res, std::string(req.matches[1]) + "/" + std::string(req.matches[2]),
               req.matches[3], false);
  });
  server_.Get(
      R"(/cdn/([^/]+)/([^/]+)/(.+))", [this](const httplib::Request& req, httplib::Response& res) {
        serve_file(req, res, std::string(req.matches[1]) + "/" + std::string(req.matches[2]),
                   req.matches[3], true);
      });
}

hub_server::~hub_server() {
  stop();
}

void hub_server::add_file(const std::string& org_repo, const std::string& file,
                          const std::filesystem::path& local) {
  std::string data = read_all(local);
  std::lock_guard lock(mutex_);
  auto& e = files_[key_of(org_repo, file)];
  e.local = local;
  e.size = data.size();
  e.sha256 = common::sha256_hex(data);
}

void hub_server::set_fault(const std::string& org_repo, const std::string& file, hub_fault fault) {
  std::lock_guard lock(mutex_);
  auto it = files_.find(key_of(org_repo, file));
  if (it == files_.end())
    throw std::invalid_argument("hub_server: no file " + key_of(org_repo, file));
  it->second.fault = fault;
  it->second.gets = 0;
}

void hub_server::clear_fault(const std::string& org_repo, const std::string& file) {
  set_fault(org_repo, file, hub_fault{});
}

void hub_server::require_token(const std::string& token) {
  std::lock_guard lock(mutex_);
  token_ = token;
}

void hub_server::use_redirects(bool on) {
  std::lock_guard lock(mutex_);
  redirects_ = on;
}

void hub_server::serve_unmatched_paths(const std::filesystem::path& local) {
  auto data = std::make_shared<const std::string>(read_all(local));
  // Registered after the constructor's routes, so those keep their paths.
  server_.Get(".*", [this, data](const httplib::Request& req, httplib::Response& res) {
    res.set_header("X-Linked-Size", std::to_string(data->size()));
    res.set_content(*data, "application/octet-stream");
    record(req, 200);
  });
}

bool hub_server::authorized(const httplib::Request& req) const {
  std::lock_guard lock(mutex_);
  return token_.empty() || req.get_header_value("Authorization") == "Bearer " + token_;
}

void hub_server::record(const httplib::Request& req, int status) {
  std::lock_guard lock(mutex_);
  requests_.push_back({req.method, req.path, req.get_header_value("Range"),
                       req.get_header_value("Authorization"), status});
}

void hub_server::serve_file(const httplib::Request& req, httplib::Response& res,
                            const std::string& org_repo, const std::string& file, bool via_cdn) {
  if (!authorized(req)) {
    res.status = 401;
    res.set_content("Invalid credentials", "text/plain");
    record(req, 401);
    return;
  }
  entry e;
  int get_number = 0;
  bool redirect = false;
  {
    std::lock_guard lock(mutex_);
    auto it = files_.find(key_of(org_repo, file));
    if (it == files_.end()) {
      res.status = 404;
      res.set_content("Entry not found", "text/plain");
      requests_.push_back({req.method, req.path, req.get_header_value("Range"), "", 404});
      return;
    }
    redirect = redirects_ && !via_cdn;
    if (req.method == "GET" && !redirect) get_number = ++it->second.gets;
    e = it->second;
  }
  const hub_fault& f = e.fault;
  if (f.status != 0) {
    res.status = f.status;
    res.set_content("injected failure", "text/plain");
    record(req, f.status);
    return;
  }
  std::string sha = f.wrong_hash ? common::sha256_hex("not the file") : e.sha256;
  std::string etag = "\"" + sha + "\"";
  if (redirect) {
    // Like the hub: the LFS metadata rides on the redirect; the CDN has its own ETag.
    res.status = 302;
    res.set_header("Location", "/cdn/" + org_repo + "/" + file);
    if (!f.omit_size) res.set_header("X-Linked-Size", std::to_string(e.size));
    res.set_header("X-Linked-Etag", etag);
    record(req, 302);
    return;
  }
  res.set_header("Accept-Ranges", "bytes");
  res.set_header("ETag", via_cdn ? "\"cdn-" + sha.substr(0, 8) + "\"" : etag);
  if (!via_cdn) {
    res.set_header("X-Linked-Etag", etag);
    if (!f.omit_size) res.set_header("X-Linked-Size", std::to_string(e.size));
  }
  record(req, req.has_header("Range") ? 206 : 200);
  auto data = std::make_shared<std::string>(read_all(e.local));
  if (f.corrupt_bytes && !data->empty()) (*data)[data->size() / 2] ^= 0x5a;
  bool drop = f.drop_at_byte && (f.drop_attempts == 0 || get_number <= f.drop_attempts);
  uint64_t drop_at = f.drop_at_byte.value_or(0);
  auto delay = f.chunk_delay;
  bool stall = f.stall_at_byte && (f.stall_attempts == 0 || get_number <= f.stall_attempts);
  uint64_t stall_at = f.stall_at_byte.value_or(0);
  auto stall_for = f.stall_for;
  if (f.omit_size) {
    // No length known up front: chunked transfer, as some mirrors do.
    res.set_chunked_content_provider(
        "application/octet-stream",
        [data, pos = uint64_t{0}](size_t, httplib::DataSink& sink) mutable {
          size_t n = std::min<uint64_t>(65536, data->size() - pos);
          if (n > 0 && !sink.write(data->data() + pos, n)) return false;
          pos += n;
          if (pos >= data->size()) sink.done();
          return true;
        });
    return;
  }
  // httplib applies a single Range itself: the provider is asked for [offset, offset+length).
  res.set_content_provider(
      data->size(), "application/octet-stream",
      [data, drop, drop_at, delay, stall, stall_at, stall_for](size_t offset, size_t length,
                                                               httplib::DataSink& sink) mutable {
        size_t n = std::min<size_t>(length, 65536);
        if (stall && offset + n > stall_at) {
          if (offset < stall_at && !sink.write(data->data() + offset, stall_at - offset))
            return false;
          std::this_thread::sleep_for(stall_for);  // silent: the client's stall timer runs
          stall = false;
          return true;  // resumes at stall_at (if the client is still there)
        }
        if (drop && offset + n > drop_at) {
          if (offset < drop_at) sink.write(data->data() + offset, drop_at - offset);
          return false;  // closes the connection mid-body
        }
        if (delay.count() > 0) std::this_thread::sleep_for(delay);
        return sink.write(data->data() + offset, n);
      });
}

void hub_server::start(const std::string& host) {
  host_ = host;
  port_ = server_.bind_to_any_port(host_);
  if (port_ <= 0) throw std::runtime_error("hub_server: cannot bind " + host_);
  // bind_to_any_port already listens: connections queue until the accept loop runs.
  thread_ = std::thread([this] { server_.listen_after_bind(); });
}

void hub_server::stop() {
  if (thread_.joinable()) {
    server_.stop();
    thread_.join();
  }
}

std::string hub_server::url() const {
  return "http://" + host_ + ":" + std::to_string(port_);
}

std::vector<hub_request> hub_server::requests() const {
  std::lock_guard lock(mutex_);
  return requests_;
}

std::vector<hub_request> hub_server::downloads(const std::string& org_repo,
                                               const std::string& file) const {
  std::vector<hub_request> out;
  for (auto& r : requests()) {
    bool matches = r.path == "/" + org_repo + "/resolve/main/" + file ||
                   r.path == "/cdn/" + org_repo + "/" + file;
    if (matches && r.method == "GET" && r.status != 302) out.push_back(r);
  }
  return out;
}

std::string hub_server::sha256(const std::string& org_repo, const std::string& file) const {
  std::lock_guard lock(mutex_);
  auto it = files_.find(key_of(org_repo, file));
  if (it == files_.end())
    throw std::invalid_argument("hub_server: no file " + key_of(org_repo, file));
  return it->second.sha256;
}

}  // namespace rbee::e2e
