#pragma once
// The operator's web dashboard (docs/dashboard.md): its static files at / and /dashboard/*
// (public: the page asks for the API key itself), and GET /v2/events, the one SSE feed of fleet
// snapshots the page lives on (behind the API key like every data route).

#include <nlohmann/json.hpp>

#include "queen/routes.h"

namespace rbee::queen {

class dashboard_routes {
 public:
  explicit dashboard_routes(queen_services& s) : s_(s) {}
  void add_to(route_table& routes);

  static void index(const http_request& req, http_response& res);
  static void file(const http_request& req, http_response& res);
  void events(const http_request& req, http_response& res);

  // What the fleet looks like now: nodes and their hives, workers, queue, running totals. Built
  // from what the queen already holds; nothing is asked of the hives.
  nlohmann::json fleet_snapshot() const;

 private:
  queen_services& s_;
};

}  // namespace rbee::queen
