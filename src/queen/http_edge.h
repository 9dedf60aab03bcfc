#pragma once
// What the queen's HTTP handlers share: the route table that counts requests for /metrics, the
// mapping of queen::error to an HTTP status and the one JSON error shape (the only place that
// gives a domain error its status), and small request helpers.

#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/errors.h"
#include "common/http_server.h"
#include "common/metrics.h"
#include "common/sse.h"
#include "queen/errors.h"
#include "queen/hive_manager.h"
#include "queen/registry.h"
#include "queen/scheduler.h"
#include "queen/ssh.h"
#include "queen/tasks.h"

namespace rbee::queen {

// The status a domain error answers with (by its code, SPEC §3) and the error shape.
common::http_error to_http_error(const error& e);

// Every route of the queen goes through here: a queen::error is answered in the error shape,
// and each request is counted by route and status.
class route_table {
 public:
  route_table(common::http_server& server, common::metrics_registry& metrics)
      : server_(server), metrics_(metrics) {}
  void get(const std::string& pattern, common::http_handler handler);
  void post(const std::string& pattern, common::http_handler handler);
  void del(const std::string& pattern, common::http_handler handler);

 private:
  common::http_handler counted(const std::string& pattern, common::http_handler handler);

  common::http_server& server_;
  common::metrics_registry& metrics_;
};

// The objects the handlers work with, owned by queen_app.
struct queen_services {
  registry& nodes;
  scheduler& sched;
  hive_manager& hives;
  task_runner& tasks;
  ssh_runner& ssh;
  ssh_options ssh_config;  // of the queen's SSH connections (timeouts, attempts)
  common::metrics_registry& metrics;
  const common::clock& clock;
  std::string bin_dir;
  std::vector<std::string> api_keys;
  std::atomic<bool>& shutting_down;       // refuse new tasks
  std::atomic<bool>& shutdown_requested;  // POST /v2/admin/shutdown
};

// An SSE response whose producer may throw queen::error: it ends the stream as an error event.
void serve_sse(httplib::Response& res, std::function<void(common::sse_sink&)> producer);

std::string bearer_of(const httplib::Request& req);
// Who is asking, for fair queueing and per-client limits: an id derived from the API key
// ("key-" and 12 hex digits: the key itself is never kept), else the peer's address.
std::string client_of(const httplib::Request& req);
// A query parameter, "" when absent.
std::string query(const httplib::Request& req, const char* name);
// The named node ("" = localhost); NODE_NOT_FOUND with a hint otherwise.
node_record node_or_404(registry& nodes, const std::string& name);

// Hands an admission back to the scheduler unless a stream consumed it. Built in place
// (make_shared with arguments): a copy would give the reservation back twice.
struct admission_holder {
  admission_holder(scheduler& s, admission admitted) : sched(s), a(std::move(admitted)) {}
  admission_holder(const admission_holder&) = delete;
  admission_holder& operator=(const admission_holder&) = delete;
  ~admission_holder() {
    if (!consumed) sched.abandon(a);
  }
  scheduler& sched;
  admission a;
  bool consumed = false;
};

}  // namespace rbee::queen
