#include "hive/report.h"

#include <spdlog/spdlog.h>

#include "common/http_client.h"
#include "common/version.h"

namespace rbee::hive {

queen_reporter::queen_reporter(report_options options,
                               std::function<std::vector<worker_info>()> workers,
                               std::function<std::vector<worker_event>()> events,
                               std::function<nlohmann::json()> capabilities)
    : options_(std::move(options)),
      workers_(std::move(workers)),
      events_(std::move(events)),
      capabilities_(std::move(capabilities)) {
  thread_ = std::jthread([this](std::stop_token st) { loop(st); });
}

queen_reporter::~queen_reporter() {
  thread_.request_stop();
  cv_.notify_all();
}

void queen_reporter::notify() {
  {
    std::lock_guard lock(mutex_);
    pending_ = true;
  }
  cv_.notify_all();
}

nlohmann::json queen_reporter::make_report(const report_options& options, uint64_t seq,
                                           const std::string& reason,
                                           const std::vector<worker_info>& workers,
                                           const std::vector<worker_event>& events,
                                           const nlohmann::json& capabilities) {
  auto w = nlohmann::json::array();
  for (const auto& info : workers) w.push_back(info.to_json(true));
  auto ev = nlohmann::json::array();
  for (const auto& e : events) ev.push_back(e.to_json());
  return {{"node_name", options.node_name},
          {"version", common::version_string()},
          {"api_version", "v1"},
          {"hive_url", options.hive_url},
          {"seq", seq},
          {"sent_at_unix", std::chrono::duration_cast<std::chrono::seconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count()},
          {"reason", reason},
          {"workers", w},
          {"events", ev},
          {"capabilities", capabilities}};
}

void queen_reporter::send(const std::string& reason) {
  std::vector<worker_event> fresh;
  uint64_t newest = acked_event_seq_;
  for (auto& e : events_()) {
    if (e.seq > acked_event_seq_) {
      newest = std::max(newest, e.seq);
      fresh.push_back(std::move(e));
    }
  }
  nlohmann::json caps;
  try {
    caps = capabilities_();
  } catch (const std::exception& e) {
    caps = {{"error", e.what()}};
  }
  auto body = make_report(options_, ++seq_, reason, workers_(), fresh, caps);
  common::http_client client(options_.queen_url,
                             {.connect_timeout = std::chrono::milliseconds(2000),
                              .read_timeout = std::chrono::milliseconds(5000),
                              .bearer_token = options_.token});
  try {
    auto res = client.post_json("/v2/hives/report", body);
    if (res.ok()) {
      acked_event_seq_ = newest;
    } else {
      spdlog::warn("queen rejected the report (HTTP {}): {}", res.status, res.body.substr(0, 200));
    }
  } catch (const common::connection_error& e) {
    spdlog::warn("cannot report to the queen at {}: {}", options_.queen_url, e.what());
  }
}

void queen_reporter::stop_with_final_report() {
  thread_.request_stop();
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  send("shutdown");
}

void queen_reporter::loop(std::stop_token stop) {
  while (!stop.stop_requested()) {
    std::string reason;
    {
      std::unique_lock lock(mutex_);
      bool woke = cv_.wait_for(lock, stop, options_.interval, [&] { return pending_; });
      if (stop.stop_requested()) break;
      reason = woke ? "change" : "heartbeat";
      pending_ = false;
    }
    send(reason);
  }
}

}  // namespace rbee::hive
