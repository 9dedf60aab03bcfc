#include "hive/downloader.h"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "common/errors.h"
#include "common/text.h"

namespace rbee::hive {
namespace {

using common::http_error;
using common::parse_u64;
using common::trim;
namespace codes = common::codes;

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct curl_deleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct slist_deleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
using curl_ptr = std::unique_ptr<CURL, curl_deleter>;
using slist_ptr = std::unique_ptr<curl_slist, slist_deleter>;

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), ::tolower);
  return s;
}

// Response headers across redirects: `linked` keeps the hub's X-Linked-* from any hop (the
// hub sends them on its redirect), `last` holds the final response's headers.
struct header_capture {
  std::map<std::string, std::string> linked;
  std::map<std::string, std::string> last;
};

size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* cap = static_cast<header_capture*>(user);
  std::string_view line(data, size * n);
  if (line.starts_with("HTTP/")) {
    cap->last.clear();
  } else if (auto colon = line.find(':'); colon != std::string_view::npos) {
    std::string name = lower(std::string(line.substr(0, colon)));
    std::string value = trim(line.substr(colon + 1));
    cap->last[name] = value;
    if (name.starts_with("x-linked-")) cap->linked[name] = value;
  }
  return size * n;
}

size_t on_body_to_string(char* data, size_t size, size_t n, void* user) {
  auto* out = static_cast<std::string*>(user);
  if (out->size() + size * n > (16u << 20)) return 0;  // a listing is small; refuse floods
  out->append(data, size * n);
  return size * n;
}

slist_ptr auth_headers(const download_options& o) {
  curl_slist* list = nullptr;
  if (o.hf_token && !o.hf_token->empty()) {
    list = curl_slist_append(list, ("Authorization: Bearer " + *o.hf_token).c_str());
  }
  list = curl_slist_append(list, "User-Agent: rbee-hive");
  return slist_ptr(list);
}

curl_ptr make_handle(const download_options& o, const std::string& url, curl_slist* headers) {
  global_init();
  curl_ptr c(curl_easy_init());
  if (!c) throw common::internal_error("libcurl could not create a handle");
  curl_easy_setopt(c.get(), CURLOPT_URL, url.c_str());
  curl_easy_setopt(c.get(), CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(c.get(), CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(c.get(), CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c.get(), CURLOPT_FAILONERROR, 1L);
  curl_easy_setopt(c.get(), CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(c.get(), CURLOPT_CONNECTTIMEOUT, static_cast<long>(o.connect_timeout.count()));
  // Stall detection: below 1 byte/s for stall_timeout seconds aborts the attempt.
  curl_easy_setopt(c.get(), CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(c.get(), CURLOPT_LOW_SPEED_TIME, static_cast<long>(o.stall_timeout.count()));
  curl_easy_setopt(c.get(), CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c.get(), CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  return c;
}

long response_code(CURL* c) {
  long code = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  return code;
}

// An HTTP status from the hub that retrying cannot fix becomes the final error.
[[noreturn]] void throw_for_status(long status, const std::string& url) {
  if (status == 404) {
    throw common::not_found(codes::MODEL_NOT_FOUND,
                            fmt::format("Model not found on the hub: {}", url),
                            {{"url", url}, {"hub_status", status}});
  }
  if (status == 401 || status == 403) {
    throw http_error(
        502, codes::DOWNLOAD_FAILED,
        fmt::format("The hub refused access (HTTP {}) to {}: the repository is gated or "
                    "private; set HF_TOKEN to a token that can read it",
                    status, url),
        {{"url", url},
         {"hub_status", status},
         {"reason", "unauthorized"},
         {"hint", "export HF_TOKEN=hf_... (and accept the model's licence on the hub)"}});
  }
  throw http_error(502, codes::DOWNLOAD_FAILED,
                   fmt::format("The hub answered HTTP {} for {}", status, url),
                   {{"url", url}, {"hub_status", status}});
}

bool retryable_status(long status) {
  return status >= 500 || status == 408 || status == 429;
}

// A transfer error that trying again cannot get past: the host name does not resolve, the URL
// is malformed, or the hub's TLS certificate is not trusted. Six tries of these only made the
// user wait (31 s for a DNS failure).
[[noreturn]] void throw_for_permanent(CURLcode rc, const std::string& url) {
  const bool dns = rc == CURLE_COULDNT_RESOLVE_HOST || rc == CURLE_COULDNT_RESOLVE_PROXY;
  const bool tls = rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT_BADFILE;
  throw http_error(
      502, codes::DOWNLOAD_FAILED,
      fmt::format("Cannot reach the hub for {}: {} (not retried)", url, curl_easy_strerror(rc)),
      {{"url", url},
       {"reason", dns   ? "dns"
                  : tls ? "tls"
                        : "bad_url"},
       {"hint", dns   ? "check the node's DNS and network, and HF_ENDPOINT"
                : tls ? "the hub's certificate is not trusted on this node; check HF_ENDPOINT "
                        "and the system's CA certificates"
                      : "check HF_ENDPOINT"}});
}

bool permanent(CURLcode rc) {
  switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
      return true;
    default:
      return false;
  }
}

// One transfer attempt's state, shared with the curl callbacks.
struct transfer {
  FILE* out = nullptr;
  uint64_t offset = 0;   // bytes already on disk when the attempt started
  uint64_t written = 0;  // bytes written in this attempt
  bool checked_status = false;
  bool disk_full = false;
  bool stalled = false;
  std::chrono::steady_clock::duration stall_timeout{};
  CURL* handle = nullptr;
  const std::atomic<bool>* cancel = nullptr;
  const progress_callback* on_progress = nullptr;
  download_progress progress;
  std::chrono::steady_clock::time_point started;
  std::chrono::steady_clock::time_point last_report;
  std::chrono::steady_clock::time_point last_data;
};

size_t on_body_to_file(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<transfer*>(user);
  if (!t->checked_status) {
    t->checked_status = true;
    // The server ignored our Range and sends the whole file: start over.
    if (t->offset > 0 && response_code(t->handle) == 200) {
      if (fflush(t->out) != 0 || ftruncate(fileno(t->out), 0) != 0 ||
          fseek(t->out, 0, SEEK_SET) != 0) {
        return 0;
      }
      t->offset = 0;
    }
  }
  size_t len = size * n;
  if (fwrite(data, 1, len, t->out) != len) {
    t->disk_full = errno == ENOSPC || errno == EDQUOT;
    return 0;
  }
  t->written += len;
  t->last_data = std::chrono::steady_clock::now();
  return len;
}

int on_xfer(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* t = static_cast<transfer*>(user);
  if (t->cancel && t->cancel->load()) return 1;
  auto now = std::chrono::steady_clock::now();
  // curl's own low-speed check averages over several seconds; a silent connection is judged
  // by the time since its last byte.
  if (now - t->last_data > t->stall_timeout) {
    t->stalled = true;
    return 1;
  }
  if (t->on_progress && *t->on_progress && now - t->last_report >= std::chrono::milliseconds(100)) {
    t->last_report = now;
    double secs = std::chrono::duration<double>(now - t->started).count();
    t->progress.bytes_downloaded = t->offset + t->written;
    t->progress.speed_mbps = secs > 0 ? static_cast<double>(t->written) / secs / 1e6 : 0;
    (*t->on_progress)(t->progress);
  }
  return 0;
}

http_error cancelled_error() {
  return http_error(503, codes::DOWNLOAD_FAILED, "download cancelled", {{"reason", "cancelled"}});
}

}  // namespace

std::string sha256_from_etag(std::string_view etag) {
  std::string s = trim(etag);
  if (s.starts_with("W/")) s = s.substr(2);
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') s = s.substr(1, s.size() - 2);
  if (s.size() != 64) return "";
  for (char& c : s) {
    if (!std::isxdigit(static_cast<unsigned char>(c))) return "";
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return s;
}

std::string sha256_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path.string());
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) {
    throw std::runtime_error("OpenSSL SHA-256 unavailable");
  }
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    if (in.gcount() > 0) EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(in.gcount()));
  }
  if (in.bad()) throw std::runtime_error("read error in " + path.string());
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  EVP_DigestFinal_ex(ctx.get(), digest, &len);
  std::string hex;
  for (unsigned i = 0; i < len; ++i) hex += fmt::format("{:02x}", digest[i]);
  return hex;
}

hub_client::hub_client(download_options options) : options_(std::move(options)) {
  while (options_.hf_endpoint.ends_with('/')) options_.hf_endpoint.pop_back();
  if (options_.attempts < 1) options_.attempts = 1;
}

std::string hub_client::file_url(const std::string& org, const std::string& repo,
                                 const std::string& file) const {
  return fmt::format("{}/{}/{}/resolve/main/{}", options_.hf_endpoint, org, repo, file);
}

std::chrono::milliseconds hub_client::backoff(int retry) const {
  auto delay = options_.backoff_base * (int64_t{1} << std::min(retry - 1, 20));
  return std::min<std::chrono::milliseconds>(delay, std::chrono::seconds(60));
}

bool hub_client::wait_before_retry(int retry, const std::atomic<bool>* cancel) const {
  auto until = std::chrono::steady_clock::now() + backoff(retry);
  while (std::chrono::steady_clock::now() < until) {
    if (cancel && cancel->load()) return false;
    std::this_thread::sleep_for(std::min<std::chrono::milliseconds>(
        std::chrono::milliseconds(50), std::chrono::duration_cast<std::chrono::milliseconds>(
                                           until - std::chrono::steady_clock::now()) +
                                           std::chrono::milliseconds(1)));
  }
  return !(cancel && cancel->load());
}

std::vector<std::string> hub_client::list_files(const std::string& org, const std::string& repo,
                                                const std::atomic<bool>* cancel) {
  std::string url = fmt::format("{}/api/models/{}/{}", options_.hf_endpoint, org, repo);
  std::string last_cause;
  for (int attempt = 1; attempt <= options_.attempts; ++attempt) {
    auto headers = auth_headers(options_);
    auto c = make_handle(options_, url, headers.get());
    std::string body;
    curl_easy_setopt(c.get(), CURLOPT_WRITEFUNCTION, on_body_to_string);
    curl_easy_setopt(c.get(), CURLOPT_WRITEDATA, &body);
    CURLcode rc = curl_easy_perform(c.get());
    long status = response_code(c.get());
    if (rc == CURLE_OK) {
      try {
        auto j = nlohmann::json::parse(body);
        std::vector<std::string> files;
        if (j.contains("siblings") && j["siblings"].is_array()) {
          for (const auto& s : j["siblings"]) {
            if (s.is_object() && s.contains("rfilename") && s["rfilename"].is_string()) {
              files.push_back(s["rfilename"].get<std::string>());
            }
          }
        }
        return files;
      } catch (const nlohmann::json::exception& e) {
        throw http_error(502, codes::DOWNLOAD_FAILED,
                         fmt::format("The hub's file listing for {}/{} is not valid JSON: {}", org,
                                     repo, e.what()),
                         {{"url", url}});
      }
    }
    if (rc == CURLE_HTTP_RETURNED_ERROR && !retryable_status(status)) {
      if (status == 404) {
        throw common::not_found(codes::MODEL_NOT_FOUND,
                                fmt::format("Repository {}/{} not found on the hub", org, repo),
                                {{"url", url}, {"hub_status", status}});
      }
      throw_for_status(status, url);
    }
    if (permanent(rc)) throw_for_permanent(rc, url);
    last_cause =
        rc == CURLE_HTTP_RETURNED_ERROR ? fmt::format("HTTP {}", status) : curl_easy_strerror(rc);
    spdlog::warn("listing {}/{} failed (attempt {}/{}): {}", org, repo, attempt, options_.attempts,
                 last_cause);
    if (attempt < options_.attempts && !wait_before_retry(attempt, cancel)) throw cancelled_error();
  }
  throw http_error(502, codes::DOWNLOAD_FAILED,
                   fmt::format("Listing {}/{} failed after {} attempts: {}", org, repo,
                               options_.attempts, last_cause),
                   {{"url", url}, {"attempts", options_.attempts}});
}

remote_file_info hub_client::head(const std::string& url, const std::atomic<bool>* cancel) {
  std::string last_cause;
  for (int attempt = 1; attempt <= options_.attempts; ++attempt) {
    auto headers = auth_headers(options_);
    auto c = make_handle(options_, url, headers.get());
    header_capture cap;
    curl_easy_setopt(c.get(), CURLOPT_NOBODY, 1L);
    curl_easy_setopt(c.get(), CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c.get(), CURLOPT_HEADERDATA, &cap);
    CURLcode rc = curl_easy_perform(c.get());
    long status = response_code(c.get());
    if (rc == CURLE_OK) {
      remote_file_info info;
      if (auto it = cap.linked.find("x-linked-size"); it != cap.linked.end())
        info.size_bytes = parse_u64(it->second);
      if (!info.size_bytes) {
        if (auto it = cap.last.find("content-length"); it != cap.last.end())
          info.size_bytes = parse_u64(it->second);
      }
      if (auto it = cap.linked.find("x-linked-etag"); it != cap.linked.end())
        info.sha256 = sha256_from_etag(it->second);
      if (info.sha256.empty()) {
        if (auto it = cap.last.find("etag"); it != cap.last.end())
          info.sha256 = sha256_from_etag(it->second);
      }
      return info;
    }
    if (rc == CURLE_HTTP_RETURNED_ERROR && !retryable_status(status)) throw_for_status(status, url);
    if (permanent(rc)) throw_for_permanent(rc, url);
    last_cause =
        rc == CURLE_HTTP_RETURNED_ERROR ? fmt::format("HTTP {}", status) : curl_easy_strerror(rc);
    spdlog::warn("HEAD {} failed (attempt {}/{}): {}", url, attempt, options_.attempts, last_cause);
    if (attempt < options_.attempts && !wait_before_retry(attempt, cancel)) throw cancelled_error();
  }
  throw http_error(502, codes::DOWNLOAD_FAILED,
                   fmt::format("Cannot reach the hub for {} after {} attempts: {}", url,
                               options_.attempts, last_cause),
                   {{"url", url}, {"attempts", options_.attempts}});
}

std::string hub_client::download(const std::string& url, const remote_file_info& info,
                                 const std::filesystem::path& dest,
                                 const progress_callback& on_progress,
                                 const std::atomic<bool>* cancel) {
  std::filesystem::path part = dest;
  part += ".part";
  std::error_code ec;
  auto remove_part = [&] { std::filesystem::remove(part, ec); };
  std::string last_cause;

  for (int attempt = 1; attempt <= options_.attempts; ++attempt) {
    // Cancelled (the hive is stopping): the partial file stays for the next hive to resume.
    if (cancel && cancel->load()) throw cancelled_error();
    uint64_t on_disk = std::filesystem::exists(part) ? std::filesystem::file_size(part) : 0;
    if (info.size_bytes && on_disk > *info.size_bytes) {
      std::filesystem::resize_file(part, 0);  // longer than the file: not ours to resume
      on_disk = 0;
    }
    bool complete_on_disk = info.size_bytes && on_disk == *info.size_bytes && on_disk > 0;
    CURLcode rc = CURLE_OK;
    long status = 0;
    transfer t;
    if (!complete_on_disk) {
      t.out = std::fopen(part.c_str(), on_disk > 0 ? "ab" : "wb");
      if (!t.out) {
        throw common::internal_error(
            fmt::format("cannot write {}: {}", part.string(), std::strerror(errno)));
      }
      auto headers = auth_headers(options_);
      auto c = make_handle(options_, url, headers.get());
      t.offset = on_disk;
      t.handle = c.get();
      t.cancel = cancel;
      t.on_progress = &on_progress;
      t.progress.bytes_total = info.size_bytes.value_or(0);
      t.progress.attempt = attempt;
      t.started = t.last_report = t.last_data = std::chrono::steady_clock::now();
      t.stall_timeout = options_.stall_timeout;
      if (attempt > 1 && on_progress) {
        on_progress({.bytes_downloaded = on_disk,
                     .bytes_total = t.progress.bytes_total,
                     .speed_mbps = 0,
                     .attempt = attempt,
                     .retry_cause = last_cause});
      }
      if (on_disk > 0) {
        spdlog::info("resuming {} at byte {} (attempt {}/{})", url, on_disk, attempt,
                     options_.attempts);
        curl_easy_setopt(c.get(), CURLOPT_RANGE, fmt::format("{}-", on_disk).c_str());
      }
      curl_easy_setopt(c.get(), CURLOPT_WRITEFUNCTION, on_body_to_file);
      curl_easy_setopt(c.get(), CURLOPT_WRITEDATA, &t);
      curl_easy_setopt(c.get(), CURLOPT_NOPROGRESS, 0L);
      curl_easy_setopt(c.get(), CURLOPT_XFERINFOFUNCTION, on_xfer);
      curl_easy_setopt(c.get(), CURLOPT_XFERINFODATA, &t);
      rc = curl_easy_perform(c.get());
      status = response_code(c.get());
      bool close_failed = std::fclose(t.out) != 0;
      if (close_failed && rc == CURLE_OK) {
        t.disk_full = errno == ENOSPC || errno == EDQUOT;
        rc = CURLE_WRITE_ERROR;
      }
    }
    if (rc == CURLE_ABORTED_BY_CALLBACK && t.stalled) {
      rc = CURLE_OPERATION_TIMEDOUT;  // a drop like any other: retried, resumed
    }
    if (rc == CURLE_ABORTED_BY_CALLBACK) throw cancelled_error();
    if (t.disk_full) {
      remove_part();
      throw common::insufficient_storage(
          codes::DISK_FULL, fmt::format("The disk filled up while downloading {}", url),
          {{"path", dest.string()}});
    }
    if (rc == CURLE_HTTP_RETURNED_ERROR && status == 416) {
      remove_part();  // our partial file does not fit the remote one: start over
      last_cause = "HTTP 416 (range not satisfiable)";
    } else if (rc == CURLE_HTTP_RETURNED_ERROR && !retryable_status(status)) {
      remove_part();
      throw_for_status(status, url);
    } else if (permanent(rc)) {
      throw_for_permanent(rc, url);  // the part file stays for a later, working attempt
    } else if (t.stalled) {
      last_cause = fmt::format("no data for {} s", options_.stall_timeout.count());
    } else if (rc != CURLE_OK) {
      last_cause =
          rc == CURLE_HTTP_RETURNED_ERROR ? fmt::format("HTTP {}", status) : curl_easy_strerror(rc);
    } else {
      uint64_t size = std::filesystem::file_size(part);
      if (info.size_bytes && size != *info.size_bytes) {
        last_cause = fmt::format("connection ended at byte {} of {}", size, *info.size_bytes);
      } else {
        if (on_progress) {
          on_progress({.bytes_downloaded = size,
                       .bytes_total = size,
                       .speed_mbps = t.progress.speed_mbps,
                       .attempt = attempt,
                       .retry_cause = {}});
        }
        std::string actual = sha256_file(part);
        if (!info.sha256.empty() && actual != info.sha256) {
          remove_part();
          throw http_error(
              502, codes::DOWNLOAD_FAILED,
              fmt::format(
                  "Checksum mismatch for {}: expected sha256 {}, got {}; the file was deleted", url,
                  info.sha256, actual),
              {{"url", url},
               {"reason", "checksum_mismatch"},
               {"expected_sha256", info.sha256},
               {"actual_sha256", actual}});
        }
        std::filesystem::rename(part, dest);
        return actual;
      }
    }
    spdlog::warn("download of {} failed (attempt {}/{}): {}", url, attempt, options_.attempts,
                 last_cause);
    if (attempt < options_.attempts && !wait_before_retry(attempt, cancel)) throw cancelled_error();
  }
  remove_part();
  throw http_error(502, codes::DOWNLOAD_FAILED,
                   fmt::format("Download of {} failed after {} attempts: {}", url,
                               options_.attempts, last_cause),
                   {{"url", url},
                    {"attempts", options_.attempts},
                    {"reason", "retries_exhausted"},
                    {"last_error", last_cause}});
}

}  // namespace rbee::hive
