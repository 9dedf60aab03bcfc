// Task streams (POST /v2/tasks) and their cancel.

#include "api/stream_events.h"
#include "common/json.h"
#include "common/thread_priority.h"
#include "queen/routes.h"

namespace rbee::queen {

void task_routes::add_to(route_table& routes) {
  routes.post("/v2/tasks", handler(this, &task_routes::submit_task));
  routes.del(R"(/v2/tasks/([A-Za-z0-9._:-]+))", handler(this, &task_routes::cancel_task));
}

void task_routes::submit_task(const http_request& req, http_response& res) {
  common::batch_work_scope batch;  // a burst of tasks must not delay /health
  if (s_.shutting_down) {
    throw unavailable(common::codes::NODE_UNREACHABLE, "queen-rbee is shutting down", 5);
  }
  auto request = task_request::from_json(common::parse_body(req.body));
  request.client = client_of(req);
  auto holder = std::make_shared<admission_holder>(s_.sched, s_.tasks.admit(request));
  res.set_header("X-Task-Id", request.task_id);
  serve_sse(res, [this, request, holder](common::sse_sink& sink) {
    holder->consumed = true;
    s_.tasks.run(
        request, std::move(holder->a),
        [&sink](const nlohmann::json& event) { return sink.send(event); },
        [&sink](std::string_view token) {
          return sink.send_raw(
              common::sse_data_frame(token, api::to_string(api::event_type::token)));
        },
        [&sink] { return sink.connected(); });
  });
}

void task_routes::cancel_task(const http_request& req, http_response& res) {
  s_.tasks.cancel(req.matches[1].str());
  res.status = 204;
}

}  // namespace rbee::queen
