#include "client/queen_client.h"

#include "common/text.h"

namespace rbee::client {

using common::url_encode;
using nlohmann::json;

queen_client::queen_client(client_config config) : config_(std::move(config)) {}

common::http_client queen_client::client(std::chrono::milliseconds read_timeout,
                                         const std::function<bool()>& still_wanted) const {
  common::client_options o;
  o.still_wanted = still_wanted;
  o.connect_timeout = config_.connect_timeout;
  o.read_timeout = read_timeout;
  if (config_.api_key) o.bearer_token = *config_.api_key;
  return common::http_client(config_.queen_url, o);
}

json queen_client::expect_json(const common::http_response& res) const {
  res.throw_if_error();
  if (res.body.empty()) return json::object();
  auto body = json::parse(res.body, nullptr, false);
  if (body.is_discarded()) {
    throw common::internal_error("queen answered with malformed JSON (HTTP " +
                                 std::to_string(res.status) + ")");
  }
  return body;
}

void queen_client::stream(const std::string& method, const std::string& path, const json& body,
                          const event_fn& on_event, const std::function<bool()>& still_wanted) {
  auto c = client(config_.read_timeout, still_wanted);
  common::http_response err;
  auto handler = [&](const common::sse_event& ev) {
    if (ev.is_done()) return false;
    auto e = json::parse(ev.data, nullptr, false);
    if (e.is_discarded()) return true;  // not ours to interpret; keep reading
    return on_event(e);
  };
  int status =
      method == "GET" ? c.get_sse(path, handler, &err) : c.post_sse(path, body, handler, &err);
  if (status != 200) throw err.to_http_error();
}

json queen_client::health() {
  return expect_json(client(config_.connect_timeout).get("/health"));
}

bool queen_client::healthy(std::chrono::milliseconds timeout) {
  common::client_options o;
  o.connect_timeout = timeout;
  o.read_timeout = timeout;
  try {
    return common::http_client(config_.queen_url, o).get("/health").ok();
  } catch (const common::connection_error&) {
    return false;
  }
}

json queen_client::add_node(const node_spec& n) {
  return expect_json(
      client(config_.read_timeout).post_json("/v2/registry/beehives/add", n.to_json()));
}

json queen_client::list_nodes() {
  return expect_json(client(config_.read_timeout).get("/v2/registry/beehives/list"));
}

json queen_client::remove_node(const std::string& node_name) {
  return expect_json(client(config_.read_timeout)
                         .post_json("/v2/registry/beehives/remove", {{"node_name", node_name}}));
}

void queen_client::install(const std::string& node_name, const event_fn& on_event) {
  stream("POST", "/v2/registry/beehives/install", {{"node_name", node_name}}, on_event);
}

json queen_client::list_workers() {
  return expect_json(client(config_.read_timeout).get("/v2/workers/list"));
}

json queen_client::workers_health(const std::string& node) {
  return expect_json(
      client(config_.read_timeout).get("/v2/workers/health?node=" + url_encode(node)));
}

json queen_client::shutdown_worker(const std::string& worker_id) {
  return expect_json(
      client(config_.read_timeout).post_json("/v2/workers/shutdown", {{"worker_id", worker_id}}));
}

void queen_client::run_task(const json& request, const event_fn& on_event,
                            const std::function<bool()>& still_wanted) {
  json body = request;
  if (!config_.hub.empty()) body["hub"] = config_.hub.to_json();
  stream("POST", "/v2/tasks", body, on_event, still_wanted);
}

void queen_client::cancel_task(const std::string& task_id) {
  auto res = client(config_.connect_timeout).del("/v2/tasks/" + url_encode(task_id));
  res.throw_if_error();
}

void queen_client::chat_completion(const json& body, const event_fn& on_chunk,
                                   const std::function<bool()>& still_wanted) {
  stream("POST", "/v1/chat/completions", body, on_chunk, still_wanted);
}

void queen_client::download_model(const std::string& node, const std::string& model,
                                  const event_fn& on_event) {
  json body = {{"node", node}, {"model", model}};
  if (!config_.hub.empty()) body["hub"] = config_.hub.to_json();
  stream("POST", "/v2/models/download", body, on_event);
}

json queen_client::list_models(const std::string& node) {
  return expect_json(client(config_.read_timeout).get("/v2/models/list?node=" + url_encode(node)));
}

json queen_client::remove_model(const std::string& node, const std::string& model) {
  return expect_json(client(config_.read_timeout)
                         .post_json("/v2/models/remove", {{"node", node}, {"model", model}}));
}

void queen_client::logs(const log_query& q, const event_fn& on_event) {
  std::string path =
      "/v2/logs?node=" + url_encode(q.node) + "&follow=" + (q.follow ? "true" : "false");
  if (!q.worker.empty()) path += "&worker=" + url_encode(q.worker);
  if (q.tail > 0) path += "&tail=" + std::to_string(q.tail);
  if (q.since_unix > 0) path += "&since=" + std::to_string(q.since_unix);
  stream("GET", path, nullptr, on_event);
}

json queen_client::start_hive(const std::string& node) {
  return expect_json(client(config_.read_timeout).post_json("/v2/hives/start", {{"node", node}}));
}

json queen_client::stop_hive(const std::string& node) {
  return expect_json(client(config_.read_timeout).post_json("/v2/hives/stop", {{"node", node}}));
}

json queen_client::hive_status(const std::string& node) {
  return expect_json(client(config_.read_timeout).get("/v2/hives/status?node=" + url_encode(node)));
}

void queen_client::shutdown_queen() {
  client(config_.read_timeout).post_json("/v2/admin/shutdown", json::object()).throw_if_error();
}

}  // namespace rbee::client
