#pragma once
// Resolves model references to catalog entries, downloading what is missing. Downloads run on
// their own threads as jobs with an id (POST /v1/models/download) whose progress can be watched
// by several clients; concurrent requests for the same reference share one job.

#include <atomic>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/hub_access.h"
#include "api/model_ref.h"
#include "common/errors.h"
#include "common/metrics.h"
#include "gguf/summary.h"
#include "hive/catalog.h"
#include "hive/downloader.h"

namespace rbee::hive {

enum class download_stage { resolving, downloading, complete, error };
std::string_view to_string(download_stage s);

// One download, observed through snapshots. Thread-safe.
class download_job {
 public:
  download_job(std::string id, std::string reference)
      : id_(std::move(id)), reference_(std::move(reference)) {}

  const std::string& id() const { return id_; }
  const std::string& reference() const { return reference_; }

  struct snapshot {
    download_stage stage = download_stage::resolving;
    download_progress progress;
    std::vector<std::string> messages;  // narration, in order ("Selected model.Q4_K_M.gguf ...")
    std::optional<model_entry> result;
    std::optional<common::http_error> error;
    uint64_t version = 0;  // bumps on every change
  };
  snapshot get() const;
  // Waits for a change after `seen_version`, at most timeout.
  snapshot wait_change(uint64_t seen_version, std::chrono::milliseconds timeout) const;

  void set_progress(const download_progress& p);
  void narrate(std::string message);
  void finish(model_entry entry);
  void fail(common::http_error error);

  std::atomic<bool> cancel{false};

 private:
  void bump();  // under mutex_
  std::string id_;
  std::string reference_;
  mutable std::mutex mutex_;
  mutable std::condition_variable cv_;
  snapshot state_;
};

struct model_store_options {
  std::filesystem::path models_dir;
  download_options download;
  // Free bytes where models are written; replaced in tests (DISK_FULL without filling a disk).
  std::function<uint64_t(const std::filesystem::path&)> disk_free;
};

class model_store {
 public:
  model_store(catalog& cat, model_store_options options,
              common::metrics_registry* metrics = nullptr);
  ~model_store();  // cancels and joins running downloads
  model_store(const model_store&) = delete;
  model_store& operator=(const model_store&) = delete;

  // The catalog entry when the reference is already available locally (no network).
  std::optional<model_entry> lookup(const api::model_ref& ref);
  // lookup(), else a download (joining a running one for the same reference), waiting for it.
  // file: references are checked and added to the catalog in place. Throws http_error.
  model_entry ensure(const api::model_ref& ref,
                     const std::function<void(const std::string&)>& narrate = {});
  // Starts (or joins) the download for ref, from the request's hub where it names one (else
  // the hive's HF_ENDPOINT and HF_TOKEN); a reference already available gives a job that is
  // complete at once. A download that runs already is joined whatever hub it uses.
  std::shared_ptr<download_job> start_download(const api::model_ref& ref,
                                               const api::hub_access& hub = {});
  // The job with this id while it is remembered: running jobs always, finished ones until
  // max_remembered_jobs newer ones push them out (oldest first).
  std::shared_ptr<download_job> find_job(const std::string& id);
  size_t job_count();
  static constexpr size_t max_remembered_jobs = 256;
  // Cancels every running download (hive shutdown); their jobs end with an error.
  void cancel_all();
  // Deletes the model's file (hub downloads only: file: references stay where they are) and row.
  // A file outside the models directory (a row from before hub names were checked) is left in
  // place, with a warning. Throws 404 MODEL_NOT_FOUND when the id is unknown.
  model_entry remove(const std::string& id);

 private:
  void run_job(const std::shared_ptr<download_job>& job, api::model_ref ref, hub_client hub);
  model_entry download_hf_file(download_job& job, const api::model_ref& ref, hub_client& hub);
  // The hive's download settings with the request's hub in place of its own.
  hub_client hub_for(const api::hub_access& hub) const;
  model_entry add_local_file(const api::model_ref& ref);
  // Adds a new job (under mutex_) and forgets the oldest finished ones beyond the bound.
  void remember_job(std::shared_ptr<download_job> job);

  catalog& catalog_;
  model_store_options options_;
  common::metrics_registry* metrics_;
  std::mutex mutex_;
  std::deque<std::shared_ptr<download_job>> jobs_;  // in creation order
  std::map<std::string, std::shared_ptr<download_job>> running_by_ref_;
  std::vector<std::pair<std::shared_ptr<download_job>, std::jthread>> threads_;
  uint64_t next_job_ = 1;
};

// Whether path lies strictly below dir, judged on the normalised text and on the real location
// (weakly_canonical: symlinks in the part that exists are followed).
bool is_inside_dir(const std::filesystem::path& dir, const std::filesystem::path& path);

// Reads the GGUF header of a model file; a corrupt file becomes 422 INVALID_MODEL naming the
// problem (untrusted input: the hive stays up).
gguf::header_summary read_model_header(const std::filesystem::path& path);

}  // namespace rbee::hive
