#pragma once
// Model downloads from a Hugging Face compatible hub with libcurl (SPEC §4).
// - URL: {HF_ENDPOINT}/{org}/{repo}/resolve/main/{file}
// - Listing: {HF_ENDPOINT}/api/models/{org}/{repo}
// - Auth: HF_TOKEN becomes `Authorization: Bearer` (curl drops it on redirects to other hosts).
// - Size and hash: a HEAD first; X-Linked-Size (else Content-Length), X-Linked-Etag (else ETag);
//   a 64-hex etag is the file's SHA-256 (the hub's LFS hash).
// - Transfer: into <dest>.part; a dropped connection resumes with Range from the bytes on disk;
//   `attempts` tries with exponential backoff; receiving nothing for stall_timeout is a drop;
//   renamed to <dest> only when complete and verified.
// Errors are common::http_error: 404 -> MODEL_NOT_FOUND, 401/403 -> DOWNLOAD_FAILED naming
// HF_TOKEN, a host name that does not resolve / a bad URL / an untrusted certificate ->
// DOWNLOAD_FAILED at once (details.reason dns, bad_url, tls: retrying cannot help), checksum
// mismatch -> DOWNLOAD_FAILED (file deleted), retries exhausted -> DOWNLOAD_FAILED (partial file
// deleted), disk full -> DISK_FULL.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace rbee::hive {

struct download_options {
  std::string hf_endpoint = "https://huggingface.co";
  std::optional<std::string> hf_token;
  int attempts = 6;
  // Delay before retry n (1-based): backoff_base * 2^(n-1), at most 60 s.
  std::chrono::milliseconds backoff_base{1000};
  std::chrono::seconds stall_timeout{60};  // no byte for this long: the attempt is dropped
  std::chrono::seconds connect_timeout{30};
};

struct remote_file_info {
  std::optional<uint64_t> size_bytes;
  std::string sha256;  // lower-case hex; "" when the hub gave no SHA-256 etag
};

struct download_progress {
  uint64_t bytes_downloaded = 0;  // including bytes resumed from an earlier attempt
  uint64_t bytes_total = 0;       // 0 when unknown
  double speed_mbps = 0;          // megabytes (10^6 B) per second over the current attempt
  int attempt = 1;
  std::string retry_cause;  // why the previous attempt failed (attempt > 1)
};

using progress_callback = std::function<void(const download_progress&)>;

// The SHA-256 of an ETag value when it is one: quotes and a W/ prefix stripped, 64 hex digits.
std::string sha256_from_etag(std::string_view etag);

// Lower-case hex SHA-256 of a file's contents; throws std::runtime_error when unreadable.
std::string sha256_file(const std::filesystem::path& path);

class hub_client {
 public:
  explicit hub_client(download_options options);

  const download_options& options() const { return options_; }
  std::string file_url(const std::string& org, const std::string& repo,
                       const std::string& file) const;

  // rfilename of every file in the repo (the hub's model API), exactly as the hub sent them:
  // untrusted, see api::is_safe_repo_file. Throws as described above.
  // cancel (optional) stops the retries.
  std::vector<std::string> list_files(const std::string& org, const std::string& repo,
                                      const std::atomic<bool>* cancel = nullptr);
  // HEAD (redirects followed), retried like downloads.
  remote_file_info head(const std::string& url, const std::atomic<bool>* cancel = nullptr);
  // Downloads url to dest through dest.part. `info` comes from head(): its size bounds the
  // transfer and its sha256 (when set) is verified. A dest.part already there (a transfer
  // an earlier hive was stopped in) is resumed. cancel (optional) aborts between chunks and
  // keeps dest.part for that. Returns the SHA-256 of the file.
  std::string download(const std::string& url, const remote_file_info& info,
                       const std::filesystem::path& dest, const progress_callback& on_progress,
                       const std::atomic<bool>* cancel = nullptr);

 private:
  std::chrono::milliseconds backoff(int retry) const;
  // Sleeps for the backoff before retry; false when cancelled meanwhile.
  bool wait_before_retry(int retry, const std::atomic<bool>* cancel) const;

  download_options options_;
};

}  // namespace rbee::hive
