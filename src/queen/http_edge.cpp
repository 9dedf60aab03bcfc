#include "queen/http_edge.h"

#include <cstdio>

#include "common/text.h"

namespace rbee::queen {

common::http_error to_http_error(const error& e) {
  return common::http_error(common::status_for_code(e.code), e.code, e.message, e.details,
                            e.retry_after_s);
}

common::http_handler route_table::counted(const std::string& pattern,
                                          common::http_handler handler) {
  return [this, pattern, handler = std::move(handler)](const httplib::Request& req,
                                                       httplib::Response& res) {
    auto count = [&](int status) {
      metrics_.counter_add("rbee_queen_requests_total", "HTTP requests by route and status", 1,
                           {{"route", pattern}, {"status", std::to_string(status)}});
    };
    try {
      handler(req, res);
      count(res.status);
    } catch (const error& e) {
      auto mapped = to_http_error(e);
      count(mapped.status);
      throw mapped;
    } catch (const common::http_error& e) {
      count(e.status);
      throw;
    } catch (const nlohmann::json::exception&) {
      count(400);
      throw;
    } catch (const std::exception&) {
      count(500);
      throw;
    }
  };
}

void route_table::get(const std::string& pattern, common::http_handler handler) {
  server_.get(pattern, counted(pattern, std::move(handler)));
}

void route_table::post(const std::string& pattern, common::http_handler handler) {
  server_.post(pattern, counted(pattern, std::move(handler)));
}

void route_table::del(const std::string& pattern, common::http_handler handler) {
  server_.del(pattern, counted(pattern, std::move(handler)));
}

void serve_sse(httplib::Response& res, std::function<void(common::sse_sink&)> producer) {
  common::serve_sse(res, [producer = std::move(producer)](common::sse_sink& sink) {
    try {
      producer(sink);
    } catch (const error& e) {
      throw to_http_error(e);  // common::serve_sse sends it as the stream's error event
    }
  });
}

std::string bearer_of(const httplib::Request& req) {
  std::string auth = req.get_header_value("Authorization");
  constexpr std::string_view scheme = "Bearer ";
  return auth.starts_with(scheme) ? auth.substr(scheme.size()) : std::string();
}

std::string client_of(const httplib::Request& req) {
  std::string key = bearer_of(req);
  if (key.empty()) return "addr-" + req.remote_addr;
  // An id that tells keys apart in the queue and in logs without revealing them.
  uint64_t hash = common::fnv1a().add(key).value;
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(hash));
  return "key-" + std::string(hex, 12);
}

std::string query(const httplib::Request& req, const char* name) {
  return req.has_param(name) ? req.get_param_value(name) : std::string();
}

node_record node_or_404(registry& nodes, const std::string& name) {
  auto node = nodes.get(name.empty() ? std::string(localhost_node) : name);
  if (!node) {
    throw error(common::codes::NODE_NOT_FOUND, "Node '" + name + "' not found",
                {{"node", name},
                 {"hint", "add it first: rbee setup add-node --name " + name +
                              " --ssh-host <host> --ssh-user <user> --install-path <path>"}});
  }
  return *node;
}

}  // namespace rbee::queen
