#include "api/worker_record.h"

#include <array>
#include <limits>
#include <type_traits>
#include <utility>

#include "api/requests.h"
#include "common/errors.h"
#include "common/json.h"

namespace rbee::api {

namespace {

constexpr std::array<std::pair<worker_state, std::string_view>, 8> state_names = {{
    {worker_state::spawning, "spawning"},
    {worker_state::loading, "loading"},
    {worker_state::idle, "idle"},
    {worker_state::busy, "busy"},
    {worker_state::draining, "draining"},
    {worker_state::stopping, "stopping"},
    {worker_state::stopped, "stopped"},
    {worker_state::error, "error"},
}};

constexpr size_t max_text = 4096;

std::string text_or(const nlohmann::json& j, const char* field, std::string fallback = "") {
  if (!j.contains(field) || j[field].is_null()) return fallback;
  return common::require_string(j, field, max_text);
}

template <class Int>
Int integer_or(const nlohmann::json& j, const char* field, Int fallback) {
  constexpr int64_t lowest = std::is_signed_v<Int> ? std::numeric_limits<Int>::min() : 0;
  constexpr int64_t highest = sizeof(Int) < sizeof(int64_t) ? std::numeric_limits<Int>::max()
                                                            : std::numeric_limits<int64_t>::max();
  auto v = common::optional_int(j, field, lowest, highest);
  return v ? static_cast<Int>(*v) : fallback;
}

}  // namespace

std::string_view to_string(worker_state s) {
  for (const auto& [state, name] : state_names) {
    if (state == s) return name;
  }
  return "error";
}

std::optional<worker_state> parse_worker_state(std::string_view s) {
  for (const auto& [state, name] : state_names) {
    if (name == s) return state;
  }
  return std::nullopt;
}

bool accepts_tasks(worker_state s) {
  return s == worker_state::idle || s == worker_state::busy;
}

nlohmann::json worker_record::to_json(bool include_token) const {
  nlohmann::json j = {{"worker_id", worker_id},
                      {"model_ref", model_ref},
                      {"model_id", model_id},
                      {"state", to_string(state)},
                      {"url", url},
                      {"backend", backend},
                      {"device", device},
                      {"devices", devices.empty() ? std::vector<int>{device} : devices},
                      {"port", port},
                      {"pid", pid},
                      {"slots_total", slots_total},
                      {"slots_busy", slots_busy},
                      {"ctx", ctx},
                      {"memory_bytes", memory_bytes},
                      {"memory_used_bytes", memory_used_bytes},
                      {"tokens_per_second", tokens_per_second},
                      {"keep_alive_s", keep_alive_s},
                      {"started_at_unix", started_at_unix},
                      {"ready_at_unix", ready_at_unix},
                      {"unload_at_unix", unload_at_unix}};
  if (!devices.empty()) j["split"] = split;
  if (include_token) j["token"] = token;
  return j;
}

worker_record worker_record::from_json(const nlohmann::json& j) {
  if (!j.is_object()) throw common::bad_request("a worker record must be a JSON object");
  worker_record w;
  w.worker_id = text_or(j, "worker_id");
  if (w.worker_id.empty()) throw common::invalid_request("worker_id", "worker without worker_id");
  w.model_ref = text_or(j, "model_ref");
  w.model_id = text_or(j, "model_id");
  w.url = text_or(j, "url");
  w.token = text_or(j, "token");
  w.backend = text_or(j, "backend", "cpu");
  w.device = integer_or<int>(j, "device", 0);
  if (common::present(j, "devices")) {
    w.devices = device_indices_from_json(j["devices"]);
    if (w.devices.size() == 1 && w.devices[0] == w.device) w.devices.clear();  // one device
    // Records from before tensor splits name none: theirs were layer splits.
    if (!w.devices.empty()) w.split = text_or(j, "split", "layer");
    if (!w.devices.empty() && w.split != "layer" && w.split != "tensor")
      throw common::invalid_request("split", "a worker's split must be \"layer\" or \"tensor\"");
  }
  w.port = integer_or<int>(j, "port", 0);
  w.pid = integer_or<int64_t>(j, "pid", -1);
  const std::string state = text_or(j, "state", "loading");
  auto parsed = parse_worker_state(state);
  if (!parsed) throw common::invalid_request("state", "unknown worker state '" + state + "'");
  w.state = *parsed;
  w.slots_total = integer_or<int>(j, "slots_total", 0);
  w.slots_busy = integer_or<int>(j, "slots_busy", 0);
  w.ctx = integer_or<int>(j, "ctx", 0);
  w.memory_bytes = integer_or<uint64_t>(j, "memory_bytes", 0);
  w.memory_used_bytes = integer_or<uint64_t>(j, "memory_used_bytes", 0);
  if (common::present(j, "tokens_per_second")) {
    if (!j["tokens_per_second"].is_number() || j["tokens_per_second"].get<double>() < 0) {
      throw common::invalid_request("tokens_per_second", "must be a non-negative number");
    }
    w.tokens_per_second = j["tokens_per_second"].get<double>();
  }
  w.keep_alive_s = integer_or<int>(j, "keep_alive_s", 0);
  w.started_at_unix = integer_or<int64_t>(j, "started_at_unix", 0);
  w.ready_at_unix = integer_or<int64_t>(j, "ready_at_unix", 0);
  w.unload_at_unix = integer_or<int64_t>(j, "unload_at_unix", 0);
  return w;
}

nlohmann::json worker_exit::to_json() const {
  nlohmann::json j = {{"worker_id", worker_id},
                      {"model_ref", model_ref},
                      {"event", "removed"},
                      {"reason", reason},
                      {"exit_status", exit_status},
                      {"at_unix", at_unix},
                      {"seq", seq}};
  if (!code.empty()) j["code"] = code;
  return j;
}

worker_exit worker_exit::from_json(const nlohmann::json& j) {
  worker_exit e;
  if (!j.is_object()) return e;
  auto text = [&](const char* field, std::string& out) {
    if (auto it = j.find(field); it != j.end() && it->is_string()) out = it->get<std::string>();
  };
  auto integer = [&](const char* field, auto& out) {
    if (auto it = j.find(field); it != j.end() && it->is_number_integer())
      out = it->get<std::remove_reference_t<decltype(out)>>();
  };
  text("worker_id", e.worker_id);
  text("model_ref", e.model_ref);
  text("reason", e.reason);
  text("code", e.code);
  integer("exit_status", e.exit_status);
  integer("at_unix", e.at_unix);
  integer("seq", e.seq);
  return e;
}

}  // namespace rbee::api
