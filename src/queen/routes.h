#pragma once
// The queen's HTTP edge (SPEC §3), one class per area; each route is a named handler that
// parses the request, calls the plain objects that do the work and writes the answer.
//   registry_routes  /v2/registry/beehives/*, /v2/hives/*  nodes and their hives
//   worker_routes    /v2/workers/*, /v2/models/*          workers and model catalogs
//   task_routes      /v2/tasks                            task streams and cancel
//   openai_routes    /v1/*                                the OpenAI-compatible API
//   admin_routes     /health, /metrics, /v2/admin/*, /v2/logs

#include <cstdint>
#include <map>
#include <string>

#include "queen/http_edge.h"
#include "queen/openai.h"

namespace rbee::queen {

using http_request = httplib::Request;
using http_response = httplib::Response;

class registry_routes {
 public:
  explicit registry_routes(queen_services& s) : s_(s) {}
  void add_to(route_table& routes);

  void add_node(const http_request& req, http_response& res);
  void list_nodes(const http_request& req, http_response& res);
  void remove_node(const http_request& req, http_response& res);
  void install_node(const http_request& req, http_response& res);
  void hive_report(const http_request& req, http_response& res);
  void start_hive(const http_request& req, http_response& res);
  void stop_hive(const http_request& req, http_response& res);
  void hive_status(const http_request& req, http_response& res);

 private:
  // Copies the hive and worker binaries to the node and checks the hive's version there,
  // narrating each step.
  void install_binaries(const node_record& node, common::sse_sink& sink);

  queen_services& s_;
};

class worker_routes {
 public:
  explicit worker_routes(queen_services& s) : s_(s) {}
  void add_to(route_table& routes);

  void list_workers(const http_request& req, http_response& res);
  void workers_health(const http_request& req, http_response& res);
  void shutdown_worker(const http_request& req, http_response& res);
  void download_model(const http_request& req, http_response& res);
  void list_models(const http_request& req, http_response& res);
  void remove_model(const http_request& req, http_response& res);

 private:
  queen_services& s_;
};

class task_routes {
 public:
  explicit task_routes(queen_services& s) : s_(s) {}
  void add_to(route_table& routes);

  void submit_task(const http_request& req, http_response& res);
  void cancel_task(const http_request& req, http_response& res);

 private:
  queen_services& s_;
};

class openai_routes {
 public:
  explicit openai_routes(queen_services& s) : s_(s) {}
  void add_to(route_table& routes);

  void completions(openai::endpoint kind, const http_request& req, http_response& res);
  void list_models(const http_request& req, http_response& res);
  void get_model(const http_request& req, http_response& res);

 private:
  // False (with the 401 answer written) when the API keys do not admit the request.
  bool authorized(const http_request& req, http_response& res) const;
  // The whole answer as one OpenAI object.
  void complete_at_once(const openai::response_meta& meta, const openai::request& r,
                        std::shared_ptr<admission_holder> holder, http_response& res);
  // The answer as OpenAI chunks on an SSE stream.
  void stream_chunks(const openai::response_meta& meta, const openai::request& r,
                     std::shared_ptr<admission_holder> holder, http_response& res);
  // Every model id the fleet can serve: loaded workers and the hives' catalogs.
  std::map<std::string, int64_t> model_ids();

  queen_services& s_;
};

class admin_routes {
 public:
  explicit admin_routes(queen_services& s) : s_(s) {}
  // health is served directly: it is polled often and must not wait on the metrics lock that
  // every streaming task takes.
  void add_to(common::http_server& server, route_table& routes);

  static void health(const http_request& req, http_response& res);
  void metrics(const http_request& req, http_response& res);
  void shutdown(const http_request& req, http_response& res);
  void logs(const http_request& req, http_response& res);

 private:
  queen_services& s_;
};

// Binds a member handler of an area to a route.
template <typename Area>
common::http_handler handler(Area* area,
                             void (Area::*method)(const http_request&, http_response&)) {
  return [area, method](const http_request& req, http_response& res) { (area->*method)(req, res); };
}

}  // namespace rbee::queen
