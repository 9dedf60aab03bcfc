#include "queen/hive_client.h"

#include <utility>

#include <spdlog/spdlog.h>

#include "common/errors.h"
#include "common/sse.h"
#include "common/text.h"

namespace rbee::queen {

namespace {

using nlohmann::json;
using namespace std::chrono_literals;

// A hive's answers are input like any other: fields of the wrong type count as absent.
std::string str_or(const json& j, const char* key, const std::string& def = "") {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : def;
}

int int_or(const json& j, const char* key, int def) {
  auto it = j.find(key);
  return it != j.end() && it->is_number_integer() ? it->get<int>() : def;
}

template <typename T>
T number_or(const json& j, const char* key, T def) {
  auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<T>() : def;
}

const json& array_at(const json& body, const char* key) {
  static const json empty = json::array();
  auto it = body.find(key);
  return it != body.end() && it->is_array() ? *it : empty;
}

json body_of(const common::http_response& res) {
  if (!res.ok()) throw error_from_response(res);
  auto body = json::parse(res.body, nullptr, false);
  if (!body.is_object()) throw internal("rbee-hive answered with something other than an object");
  return body;
}

download_event parse_download_event(const json& e) {
  using stage = download_event::stage_kind;
  const std::string name = str_or(e, "stage");
  download_event ev;
  ev.stage = name == "downloading" ? stage::downloading
             : name == "complete"  ? stage::complete
             : name == "error"     ? stage::error
             : name == "narration" ? stage::narration
                                   : stage::other;
  ev.bytes_downloaded = number_or<uint64_t>(e, "bytes_downloaded", 0);
  ev.bytes_total = number_or<uint64_t>(e, "bytes_total", 0);
  ev.speed_mbps = number_or<double>(e, "speed_mbps", 0);
  ev.attempt = int_or(e, "attempt", 0);
  ev.local_path = str_or(e, "local_path");
  ev.code = str_or(e, "code", std::string(common::codes::DOWNLOAD_FAILED));
  ev.message = str_or(e, "message", ev.stage == stage::narration ? "" : "download failed");
  return ev;
}

}  // namespace

worker_info parse_hive_worker(const json& j, const std::string& node) {
  try {
    worker_info w = worker_info::from_json(j);
    w.node = node;
    return w;
  } catch (const common::http_error& e) {  // the contract's verdict on a hive's record
    throw error(e.code, "a hive's worker record: " + e.message, e.details);
  }
}

hive_client::hive_client(hive_endpoint endpoint, std::chrono::milliseconds read_timeout,
                         std::function<bool()> still_wanted)
    : endpoint_(std::move(endpoint)),
      http_(endpoint_.base_url, common::client_options{.connect_timeout = 3s,
                                                       .read_timeout = read_timeout,
                                                       .bearer_token = endpoint_.token,
                                                       .still_wanted = std::move(still_wanted)}) {}

std::optional<std::string> hive_client::probe_version(const std::string& base_url,
                                                      std::chrono::milliseconds timeout) {
  try {
    common::http_client client(
        base_url, common::client_options{.connect_timeout = timeout, .read_timeout = timeout});
    auto res = client.get("/v1/health");
    if (!res.ok()) return std::nullopt;
    auto body = json::parse(res.body, nullptr, false);
    if (!body.is_object()) return std::nullopt;
    return str_or(body, "version");
  } catch (const common::connection_error&) {
    return std::nullopt;
  }
}

hive_worker_list hive_client::list_workers() {
  auto body = body_of(http_.get("/v1/workers/list"));
  hive_worker_list list;
  for (const auto& w : array_at(body, "workers")) {
    try {
      list.workers.push_back(parse_hive_worker(w, endpoint_.node));
    } catch (const error& e) {
      spdlog::warn("hive {}: ignoring malformed worker entry: {}", endpoint_.node, e.what());
      continue;
    }
    if (w.contains("error")) list.load_errors[list.workers.back().worker_id] = w["error"].dump();
  }
  for (const auto& e : array_at(body, "recent_exits")) {
    if (e.is_object()) list.recent_exits.push_back(worker_exit::from_json(e));
  }
  return list;
}

worker_info hive_client::spawn_worker(const spawn_request& request) {
  json body = {{"model_ref", request.model_ref},
               {"backend", request.backend},
               {"device", request.device.value_or(0)},
               {"min_slots", request.min_slots}};
  if (request.slots > 0) body["slots"] = request.slots;
  if (request.ctx > 0) body["ctx"] = request.ctx;
  if (request.keep_alive_s >= 0) body["keep_alive_s"] = request.keep_alive_s;
  if (!request.devices.empty()) {
    body["devices"] = request.devices;
    body["split"] = request.split;
  }
  worker_info w =
      parse_hive_worker(body_of(http_.post_json("/v1/workers/spawn", body)), endpoint_.node);
  if (w.model_ref.empty()) w.model_ref = request.model_ref;
  w.backend = request.backend;
  w.device = request.device.value_or(0);
  w.devices = request.devices;
  w.split = request.split;
  return w;
}

void hive_client::stop_worker(const std::string& worker_id) {
  auto res = http_.post_json("/v1/workers/shutdown", {{"worker_id", worker_id}});
  if (!res.ok()) throw error_from_response(res);
}

std::vector<catalog_model> hive_client::list_models() {
  auto res = http_.get("/v1/models/list");
  if (!res.ok()) throw error_from_response(res);
  auto body = json::parse(res.body, nullptr, false);
  const json& models = body.is_object() && body.contains("models") ? body["models"] : body;
  std::vector<catalog_model> out;
  if (!models.is_array()) return out;
  for (const auto& m : models) {
    if (m.is_object()) out.push_back(catalog_model::from_json(m));
  }
  return out;
}

void hive_client::remove_model(const std::string& model) {
  auto res = http_.del("/v1/models/" + common::url_encode(model));
  if (!res.ok()) throw error_from_response(res);
}

std::string hive_client::start_download(const std::string& model_ref, const api::hub_access& hub) {
  json request = {{"model_ref", model_ref}};
  if (!hub.empty()) request["hub"] = hub.to_json();
  auto body = body_of(http_.post_json("/v1/models/download", request));
  std::string id = str_or(body, "download_id");
  if (id.empty()) throw internal("hive returned no download_id");
  return id;
}

void hive_client::follow_download(const std::string& download_id,
                                  const std::function<bool(const download_event&)>& on_event) {
  common::http_response err;
  int status = http_.get_sse(
      "/v1/models/download/progress?id=" + download_id,
      [&](const common::sse_event& ev) {
        if (ev.is_done()) return false;
        auto e = json::parse(ev.data, nullptr, false);
        if (!e.is_object()) return true;
        return on_event(parse_download_event(e));
      },
      &err);
  if (status != 200) throw error_from_response(err);
}

hive_capabilities hive_client::capabilities() {
  auto caps = body_of(http_.get("/v1/capabilities"));
  hive_capabilities out;
  for (const auto& b : array_at(caps, "backends")) {
    if (b.is_string()) out.backends.push_back(b.get<std::string>());
    if (b.is_object() && b.contains("name") && b["name"].is_string()) {
      out.backends.push_back(b["name"].get<std::string>());
    }
  }
  out.devices = array_at(caps, "devices");
  return out;
}

bool hive_client::shutdown() {
  return http_.post_json("/v1/admin/shutdown", json::object()).ok();
}

void hive_client::follow_logs(const log_request& request,
                              const std::function<bool(const json& event)>& on_event) {
  std::string path = "/v1/logs?follow=" + std::string(request.follow ? "true" : "false");
  if (!request.worker_id.empty()) path += "&worker=" + common::url_encode(request.worker_id);
  if (request.tail > 0) path += "&tail=" + std::to_string(request.tail);
  if (request.since_unix > 0) path += "&since=" + std::to_string(request.since_unix);
  common::http_response err;
  int status = http_.get_sse(
      path,
      [&](const common::sse_event& ev) {
        if (ev.is_done()) return false;
        auto e = json::parse(ev.data, nullptr, false);
        return on_event(e.is_discarded() ? json{{"line", ev.data}} : e);
      },
      &err);
  if (status != 200) throw error_from_response(err);
}

}  // namespace rbee::queen
