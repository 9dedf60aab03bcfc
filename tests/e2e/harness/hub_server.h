#pragma once
// A local stand-in for the Hugging Face hub (loopback only), for download tests:
//   GET/HEAD /<org>/<repo>/resolve/main/<file>   the file, with Content-Length, X-Linked-Size,
//                                                X-Linked-Etag: "<sha256>", ETag, Range support
//   GET /api/models/<org>/<repo>                 {"id", "siblings":[{"rfilename"}]}
// Files are registered from local paths (e.g. RBEE_SHARED_MODELS_DIR; never copied). Faults
// can be injected per file: drop the connection at a byte offset for the first N downloads,
// stall mid-transfer, answer a fixed status (404/401/403/500), serve corrupted bytes, advertise
// a wrong hash, omit the size headers, or redirect like the real hub (X-Linked-* on the 302).
// Every request is recorded so tests can assert e.g. that a resume sent `Range: bytes=N-`.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>

namespace rbee::e2e {

struct hub_fault {
  std::optional<uint64_t> drop_at_byte =
      std::nullopt;            // close the connection after this many bytes of the file
  int drop_attempts = 0;       // ... in the first N GETs (0 = every GET)
  int status = 0;              // answer HEAD and GET with this status (0 = serve)
  bool corrupt_bytes = false;  // flip one byte in the middle of what is served
  bool wrong_hash = false;     // advertise the SHA-256 of something else
  bool omit_size = false;      // no Content-Length / X-Linked-Size on HEAD (chunked GET)
  std::chrono::milliseconds chunk_delay{0};  // pause between 64 KiB chunks (slow transfers)
  // Go silent (connection open, no bytes) for stall_for once this many bytes were sent, in the
  // first stall_attempts GETs (0 = every GET): a stalled transfer.
  std::optional<uint64_t> stall_at_byte = std::nullopt;
  std::chrono::milliseconds stall_for{0};
  int stall_attempts = 0;
};

struct hub_request {
  std::string method;  // "GET", "HEAD"
  std::string path;
  std::string range;          // the Range header, "" when none
  std::string authorization;  // the Authorization header, "" when none
  int status = 0;             // what the hub answered
};

class hub_server {
 public:
  hub_server();
  ~hub_server();  // stop()
  hub_server(const hub_server&) = delete;
  hub_server& operator=(const hub_server&) = delete;

  // Serves `local` as <org_repo>/resolve/main/<file> (org_repo: "org/repo"; file may hold '/').
  void add_file(const std::string& org_repo, const std::string& file,
                const std::filesystem::path& local);
  void set_fault(const std::string& org_repo, const std::string& file, hub_fault fault);
  void clear_fault(const std::string& org_repo, const std::string& file);
  // Requests need `Authorization: Bearer <token>` (else 401) once set; "" turns it off.
  void require_token(const std::string& token);
  // The real hub answers /resolve/ with a 302 to its CDN carrying the X-Linked-* headers.
  void use_redirects(bool on);
  // A hostile hub: serves `local` at every GET/HEAD path no other route takes, i.e. wherever a
  // client's URL normalisation sent a listed name such as "../../x.gguf". Before start() only.
  void serve_unmatched_paths(const std::filesystem::path& local);

  // Binds host (loopback unless a test host must reach it) on a free port and serves on a
  // thread.
  void start(const std::string& host = "127.0.0.1");
  void stop();
  int port() const { return port_; }
  std::string url() const;  // "http://<host>:<port>" (the HF_ENDPOINT to use)

  std::vector<hub_request> requests() const;
  // GET requests for one file (the resolve or CDN path), in order.
  std::vector<hub_request> downloads(const std::string& org_repo, const std::string& file) const;
  // SHA-256 (hex) of a registered file.
  std::string sha256(const std::string& org_repo, const std::string& file) const;

 private:
  struct entry {
    std::filesystem::path local;
    uint64_t size = 0;
    std::string sha256;
    hub_fault fault;
    int gets = 0;
  };
  void serve_file(const httplib::Request& req, httplib::Response& res, const std::string& org_repo,
                  const std::string& file, bool via_cdn);
  void record(const httplib::Request& req, int status);
  bool authorized(const httplib::Request& req) const;

  httplib::Server server_;
  std::thread thread_;
  std::string host_ = "127.0.0.1";
  int port_ = 0;
  mutable std::mutex mutex_;
  std::map<std::string, entry> files_;  // "org/repo:file"
  std::vector<hub_request> requests_;
  std::string token_;
  bool redirects_ = false;
};

}  // namespace rbee::e2e
