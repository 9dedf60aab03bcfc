#include "hive/model_store.h"

#include <algorithm>
#include <chrono>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "common/clock.h"
#include "common/paths.h"
#include "hive/hub_files.h"

namespace rbee::hive {
namespace {

using common::http_error;
namespace codes = common::codes;

// "1.2 GiB", "38.4 MiB", "900 B": where a resumed transfer starts again, for people.
std::string human_size(uint64_t bytes) {
  constexpr const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  size_t unit = 0;
  while (value >= 1024 && unit + 1 < std::size(units)) {
    value /= 1024;
    ++unit;
  }
  return unit == 0 ? fmt::format("{} B", bytes) : fmt::format("{:.1f} {}", value, units[unit]);
}

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool usable(const model_entry& e) {
  std::error_code ec;
  return std::filesystem::is_regular_file(e.local_path, ec) &&
         std::filesystem::file_size(e.local_path, ec) == e.size_bytes;
}

model_entry entry_from_header(const gguf::header_summary& h) {
  model_entry e;
  e.size_bytes = h.file_size;
  e.architecture = h.architecture;
  e.quantization = h.quantization;
  e.parameters = h.parameters;
  e.context_length = h.context_length;
  return e;
}

bool is_finished(const download_job& job) {
  auto stage = job.get().stage;
  return stage == download_stage::complete || stage == download_stage::error;
}

// The GGUF names of a hub listing that may not become paths; the first few, for errors and logs
// (a hostile listing may hold millions).
std::vector<std::string> unsafe_gguf_names(const std::vector<std::string>& files) {
  constexpr size_t max_reported = 10;
  std::vector<std::string> unsafe;
  for (const auto& f : files) {
    if (unsafe.size() == max_reported) break;
    if (api::has_gguf_extension(f) && !api::is_safe_repo_file(f))
      unsafe.push_back(f.substr(0, 600));
  }
  return unsafe;
}

// path strictly below dir, both absolute and in normal form.
bool below(const std::filesystem::path& dir, const std::filesystem::path& path) {
  auto rel = path.lexically_relative(dir);
  return !rel.empty() && rel != "." && *rel.begin() != "..";
}

}  // namespace

bool is_inside_dir(const std::filesystem::path& dir, const std::filesystem::path& path) {
  std::error_code ec;
  auto abs_dir = std::filesystem::absolute(dir, ec);
  if (ec) return false;
  auto abs_path = std::filesystem::absolute(path, ec);
  if (ec || !below(abs_dir.lexically_normal(), abs_path.lexically_normal())) return false;
  auto real_dir = std::filesystem::weakly_canonical(abs_dir, ec);
  if (ec) return false;
  auto real_path = std::filesystem::weakly_canonical(abs_path, ec);
  return !ec && below(real_dir, real_path);
}

std::string_view to_string(download_stage s) {
  switch (s) {
    case download_stage::resolving:
      return "resolving";
    case download_stage::downloading:
      return "downloading";
    case download_stage::complete:
      return "complete";
    case download_stage::error:
      return "error";
  }
  return "error";
}

gguf::header_summary read_model_header(const std::filesystem::path& path) {
  try {
    return gguf::read_header_summary(path.string());
  } catch (const gguf::format_error& e) {
    throw http_error(422, codes::INVALID_MODEL,
                     fmt::format("{} is not a usable GGUF model: {}", path.string(), e.what()),
                     {{"path", path.string()}, {"problem", e.what()}});
  } catch (const std::runtime_error& e) {
    throw common::not_found(codes::MODEL_NOT_FOUND,
                            fmt::format("Cannot read model file: {}", e.what()),
                            {{"path", path.string()}});
  }
}

// ---- download_job ----

download_job::snapshot download_job::get() const {
  std::lock_guard lock(mutex_);
  return state_;
}

download_job::snapshot download_job::wait_change(uint64_t seen_version,
                                                 std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mutex_);
  cv_.wait_for(lock, timeout, [&] { return state_.version != seen_version; });
  return state_;
}

void download_job::bump() {
  ++state_.version;
  cv_.notify_all();
}

void download_job::set_progress(const download_progress& p) {
  std::lock_guard lock(mutex_);
  state_.stage = download_stage::downloading;
  state_.progress = p;
  bump();
}

void download_job::narrate(std::string message) {
  std::lock_guard lock(mutex_);
  state_.messages.push_back(std::move(message));
  bump();
}

void download_job::finish(model_entry entry) {
  std::lock_guard lock(mutex_);
  state_.stage = download_stage::complete;
  state_.result = std::move(entry);
  bump();
}

void download_job::fail(common::http_error error) {
  std::lock_guard lock(mutex_);
  state_.stage = download_stage::error;
  state_.error = std::move(error);
  bump();
}

// ---- model_store ----

model_store::model_store(catalog& cat, model_store_options options,
                         common::metrics_registry* metrics)
    : catalog_(cat), options_(std::move(options)), metrics_(metrics) {
  if (!options_.disk_free) {
    throw std::invalid_argument("model_store needs a disk_free probe");
  }
}

model_store::~model_store() {
  std::vector<std::pair<std::shared_ptr<download_job>, std::jthread>> threads;
  {
    std::lock_guard lock(mutex_);
    for (auto& job : jobs_) job->cancel = true;
    threads.swap(threads_);
  }
  threads.clear();  // joins, outside the lock the jobs take last
}

std::optional<model_entry> model_store::lookup(const api::model_ref& ref) {
  std::optional<model_entry> found;
  switch (ref.kind) {
    case api::ref_kind::alias:
      found = catalog_.find(ref.alias);
      break;
    case api::ref_kind::hf_file:
    case api::ref_kind::local_file:
      found = catalog_.find_by_reference(ref.canonical());
      break;
    case api::ref_kind::hf_repo: {
      // Any file of that repo already here, by the same preference as a fresh pick.
      std::string prefix = ref.canonical() + ":";
      std::vector<std::string> files;
      std::map<std::string, model_entry> by_file;
      for (auto& e : catalog_.list()) {
        if (e.reference.starts_with(prefix)) {
          std::string file = e.reference.substr(prefix.size());
          files.push_back(file);
          by_file[file] = e;
        }
      }
      if (auto pick = pick_gguf_file(files); !pick.empty()) found = by_file[pick];
      break;
    }
  }
  if (found && !usable(*found)) {
    spdlog::warn("catalog entry {} points at a missing or changed file {}", found->id,
                 found->local_path);
    return std::nullopt;
  }
  return found;
}

model_entry model_store::ensure(const api::model_ref& ref,
                                const std::function<void(const std::string&)>& narrate) {
  if (auto e = lookup(ref)) return *e;
  if (ref.kind == api::ref_kind::alias) {
    throw common::not_found(
        codes::MODEL_NOT_FOUND, fmt::format("Model '{}' is not in this node's catalog", ref.alias),
        {{"model_ref", ref.alias},
         {"hint", "use hf:ORG/REPO[:FILE] or file:/path.gguf, or download it first"}});
  }
  if (ref.kind == api::ref_kind::local_file) return add_local_file(ref);
  auto job = start_download(ref);
  size_t told = 0;
  uint64_t seen = 0;
  while (true) {
    auto snap = job->wait_change(seen, std::chrono::seconds(1));
    seen = snap.version;
    for (; told < snap.messages.size(); ++told) {
      if (narrate) narrate(snap.messages[told]);
    }
    if (snap.stage == download_stage::complete) return *snap.result;
    if (snap.stage == download_stage::error) throw *snap.error;
  }
}

hub_client model_store::hub_for(const api::hub_access& hub) const {
  download_options options = options_.download;
  if (!hub.endpoint.empty()) options.hf_endpoint = hub.endpoint;
  if (!hub.token.empty()) options.hf_token = hub.token;
  return hub_client(std::move(options));
}

std::shared_ptr<download_job> model_store::start_download(const api::model_ref& ref,
                                                          const api::hub_access& hub) {
  if (ref.kind == api::ref_kind::alias || ref.kind == api::ref_kind::local_file) {
    // Nothing to download: the job is finished at once, with the entry or the error.
    std::shared_ptr<download_job> job;
    {
      std::lock_guard lock(mutex_);
      job = std::make_shared<download_job>(fmt::format("dl-{}", next_job_++), ref.canonical());
      remember_job(job);
    }
    try {
      job->finish(ensure(ref));
    } catch (const http_error& e) {
      job->fail(e);
    }
    return job;
  }
  std::vector<std::jthread> finished;  // joined outside the lock: their last step takes it
  std::shared_ptr<download_job> job;
  {
    std::lock_guard lock(mutex_);
    std::string key = ref.canonical();
    if (auto it = running_by_ref_.find(key); it != running_by_ref_.end()) return it->second;

    job = std::make_shared<download_job>(fmt::format("dl-{}", next_job_++), key);
    remember_job(job);
    if (auto existing = lookup(ref)) {
      job->finish(*existing);
      return job;
    }
    running_by_ref_[key] = job;
    for (auto it = threads_.begin(); it != threads_.end();) {
      if (is_finished(*it->first)) {
        finished.push_back(std::move(it->second));
        it = threads_.erase(it);
      } else {
        ++it;
      }
    }
    threads_.emplace_back(
        job, std::jthread([this, job, ref, client = hub_for(hub)] { run_job(job, ref, client); }));
  }
  return job;
}

void model_store::cancel_all() {
  std::lock_guard lock(mutex_);
  for (auto& [ref, job] : running_by_ref_) job->cancel = true;
}

void model_store::remember_job(std::shared_ptr<download_job> job) {
  jobs_.push_back(std::move(job));
  // Bound the bookkeeping: the oldest finished jobs go first; a running job stays findable.
  size_t excess = jobs_.size() > max_remembered_jobs ? jobs_.size() - max_remembered_jobs : 0;
  for (auto it = jobs_.begin(); excess > 0 && it != jobs_.end();) {
    if (is_finished(**it)) {
      it = jobs_.erase(it);
      --excess;
    } else {
      ++it;
    }
  }
}

std::shared_ptr<download_job> model_store::find_job(const std::string& id) {
  std::lock_guard lock(mutex_);
  auto it =
      std::find_if(jobs_.begin(), jobs_.end(), [&](const auto& job) { return job->id() == id; });
  return it == jobs_.end() ? nullptr : *it;
}

size_t model_store::job_count() {
  std::lock_guard lock(mutex_);
  return jobs_.size();
}

void model_store::run_job(const std::shared_ptr<download_job>& job, api::model_ref ref,
                          hub_client hub) {
  std::optional<model_entry> entry;
  std::optional<http_error> error;
  try {
    if (ref.kind == api::ref_kind::hf_repo) {
      job->narrate(fmt::format("Listing files of {}/{} on the hub", ref.org, ref.repo));
      auto files = hub.list_files(ref.org, ref.repo, &job->cancel);
      // The listing is untrusted: names that could leave the models directory are never used.
      auto unsafe = unsafe_gguf_names(files);
      if (!unsafe.empty()) {
        spdlog::warn("the hub listed unsafe file names for {}/{}, ignored: {}", ref.org, ref.repo,
                     fmt::join(unsafe, ", "));
      }
      std::string pick = pick_gguf_file(files);
      if (pick.empty() && !unsafe.empty()) {
        throw http_error(
            502, codes::DOWNLOAD_FAILED,
            fmt::format("The hub listed no usable GGUF file for {}/{}; ignored as unsafe "
                        "(not a relative path of letters, digits, '.', '-', '_'): {}",
                        ref.org, ref.repo, fmt::join(unsafe, ", ")),
            {{"model_ref", ref.canonical()}, {"unsafe_files", unsafe}});
      }
      if (pick.empty()) {
        throw common::not_found(codes::MODEL_NOT_FOUND,
                                fmt::format("Repository {}/{} has no GGUF file", ref.org, ref.repo),
                                {{"model_ref", ref.canonical()}, {"files", files.size()}});
      }
      std::string quant = quantization_from_name(pick);
      job->narrate(fmt::format("Selected {} ({}) from {} files", pick,
                               quant.empty() ? "unknown quantization" : quant, files.size()));
      ref.kind = api::ref_kind::hf_file;
      ref.file = pick;
      // The picked file may be downloading already under its own reference: share that one.
      std::shared_ptr<download_job> other;
      {
        std::lock_guard lock(mutex_);
        auto [it, inserted] = running_by_ref_.try_emplace(ref.canonical(), job);
        if (!inserted) other = it->second;
      }
      if (other) {
        job->narrate(fmt::format("{} is already being downloaded; waiting for it", pick));
        download_job::snapshot snap;
        for (uint64_t seen = 0;; seen = snap.version) {
          snap = other->wait_change(seen, std::chrono::seconds(1));
          if (snap.stage == download_stage::complete) break;
          if (snap.stage == download_stage::error) throw *snap.error;
        }
        entry = snap.result;
      }
    }
    if (!entry) entry = lookup(ref);
    if (!entry) entry = download_hf_file(*job, ref, hub);
  } catch (const http_error& e) {
    spdlog::warn("download {} ({}) failed: {}", job->id(), job->reference(), e.what());
    error = e;
  } catch (const std::exception& e) {
    spdlog::error("download {} ({}) failed: {}", job->id(), job->reference(), e.what());
    error = common::internal_error(fmt::format("download failed: {}", e.what()));
  }
  if (metrics_) {
    metrics_->counter_add("rbee_hive_downloads_total", "Model downloads by result", 1,
                          {{"result", entry ? "ok" : "error"}});
  }
  {
    // Off the running list before anyone can see the outcome, so a request that follows a
    // failure starts afresh instead of joining the finished job.
    std::lock_guard lock(mutex_);
    std::erase_if(running_by_ref_, [&](const auto& kv) { return kv.second == job; });
  }
  if (entry) {
    job->finish(*entry);
  } else {
    job->fail(*error);
  }
}

model_entry model_store::download_hf_file(download_job& job, const api::model_ref& ref,
                                          hub_client& hub) {
  std::string url = hub.file_url(ref.org, ref.repo, ref.file);
  std::filesystem::path dest = options_.models_dir / ref.relative_store_path();
  if (!is_inside_dir(options_.models_dir, dest)) {
    throw http_error(502, codes::DOWNLOAD_FAILED,
                     fmt::format("Refusing to write {}: it is not inside the models directory {}",
                                 dest.string(), options_.models_dir.string()),
                     {{"path", dest.string()}, {"models_dir", options_.models_dir.string()}});
  }
  job.narrate(fmt::format("Checking {}", url));
  remote_file_info info = hub.head(url, &job.cancel);

  // Disk space before any byte: what is still missing must fit.
  std::filesystem::path part = dest;
  part += ".part";
  std::error_code ec;
  uint64_t on_disk = std::filesystem::exists(part, ec) ? std::filesystem::file_size(part, ec) : 0;
  if (info.size_bytes) {
    uint64_t needed = *info.size_bytes > on_disk ? *info.size_bytes - on_disk : 0;
    uint64_t free = options_.disk_free(options_.models_dir);
    if (needed > free) {
      throw common::insufficient_storage(
          codes::DISK_FULL,
          fmt::format("Not enough disk space for {}: needs {} bytes, {} free in {}", ref.file,
                      needed, free, options_.models_dir.string()),
          {{"required_bytes", needed},
           {"available_bytes", free},
           {"path", options_.models_dir.string()}});
    }
  } else {
    job.narrate(
        "The hub did not say how large the file is; downloading without a disk-space check");
  }
  if (info.sha256.empty())
    job.narrate("The hub gave no SHA-256 for this file; it cannot be verified");
  common::ensure_dir(dest.parent_path());
  job.narrate(fmt::format("Downloading {} ({} bytes)", ref.file, info.size_bytes.value_or(0)));
  download_progress start;
  start.bytes_downloaded = on_disk;
  start.bytes_total = info.size_bytes.value_or(0);
  job.set_progress(start);

  uint64_t last_bytes = on_disk;
  int last_attempt = 1;
  std::string sha = hub.download(
      url, info, dest,
      [&](const download_progress& p) {
        if (p.attempt != last_attempt) {
          last_attempt = p.attempt;
          job.narrate(fmt::format("Transfer failed ({}); {} (attempt {}/{})", p.retry_cause,
                                  p.bytes_downloaded > 0
                                      ? "resuming at " + human_size(p.bytes_downloaded)
                                      : std::string("starting again"),
                                  p.attempt, hub.options().attempts));
        }
        if (metrics_ && p.bytes_downloaded > last_bytes) {
          metrics_->counter_add("rbee_hive_download_bytes_total", "Bytes downloaded from the hub",
                                static_cast<double>(p.bytes_downloaded - last_bytes));
        }
        last_bytes = std::max(last_bytes, p.bytes_downloaded);
        job.set_progress(p);
      },
      &job.cancel);

  gguf::header_summary header;
  try {
    header = read_model_header(dest);
  } catch (const http_error&) {
    std::filesystem::remove(dest, ec);  // a download that is not a model must not linger
    throw;
  }
  model_entry e = entry_from_header(header);
  e.provider = "hf";
  e.reference = ref.canonical();
  e.file = ref.file;
  e.local_path = dest.string();
  e.sha256 = sha;
  e.downloaded_at_unix = unix_now();
  e = catalog_.upsert(e);
  job.narrate(fmt::format("Verified and catalogued as '{}' ({}, {})", e.id, e.architecture,
                          e.quantization));
  return e;
}

model_entry model_store::add_local_file(const api::model_ref& ref) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(ref.path, ec)) {
    throw common::not_found(codes::MODEL_NOT_FOUND,
                            fmt::format("No model file at {}", ref.path.string()),
                            {{"path", ref.path.string()}});
  }
  gguf::header_summary header = read_model_header(ref.path);
  model_entry e = entry_from_header(header);
  e.provider = "file";
  e.reference = ref.canonical();
  e.file = ref.path.filename().string();
  e.local_path = ref.path.string();
  e.sha256 = sha256_file(ref.path);
  e.downloaded_at_unix = unix_now();
  return catalog_.upsert(e);
}

model_entry model_store::remove(const std::string& id) {
  auto e = catalog_.find_by_id(id);
  if (!e) {
    throw common::not_found(codes::MODEL_NOT_FOUND,
                            fmt::format("Model '{}' is not in the catalog", id), {{"id", id}});
  }
  if (e->provider == "hf" && !is_inside_dir(options_.models_dir, e->local_path)) {
    spdlog::warn(
        "model {}: not deleting {}: it is outside the models directory {}; only its catalog "
        "row is removed",
        id, e->local_path, options_.models_dir.string());
  } else if (e->provider == "hf") {
    std::error_code ec;
    std::filesystem::remove(e->local_path, ec);
    if (ec) spdlog::warn("could not delete {}: {}", e->local_path, ec.message());
  }
  catalog_.remove(id);
  return *e;
}

}  // namespace rbee::hive
