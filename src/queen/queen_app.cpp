#include "queen/queen_app.h"

#include <signal.h>

#include <set>
#include <thread>

#include <spdlog/spdlog.h>

#include "api/stream_events.h"
#include "common/errors.h"
#include "common/json.h"
#include "common/paths.h"
#include "common/secrets.h"
#include "common/sse.h"
#include "common/text.h"
#include "common/thread_priority.h"
#include "common/version.h"
#include "queen/openai.h"

namespace rbee::queen {

namespace {

using common::url_encode;
using nlohmann::json;
using namespace std::chrono_literals;

void validate_node_name(const std::string& name) {
  bool ok = !name.empty() && name.size() <= 64 && name.front() != '-' && name.front() != '.';
  for (char c : name) {
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '-' || c == '_' || c == '.');
  }
  if (!ok) {
    throw common::invalid_request("node_name",
                                  "node_name must be 1-64 letters, digits, '-', '_' or '.'");
  }
}

std::string bearer_of(const httplib::Request& req) {
  std::string auth = req.get_header_value("Authorization");
  constexpr std::string_view scheme = "Bearer ";
  return auth.starts_with(scheme) ? auth.substr(scheme.size()) : std::string();
}

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

std::string query(const httplib::Request& req, const char* name) {
  return req.has_param(name) ? req.get_param_value(name) : std::string();
}

}  // namespace

void queen_app::block_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

queen_app::queen_app(queen_options options)
    : options_(std::move(options)), clock_(common::system_clock_instance()) {
  if (options_.bin_dir.empty()) options_.bin_dir = common::self_executable_dir();
  if (options_.database.empty()) options_.database = options_.rbee_home / "beehives.db";
  common::ensure_dir(options_.rbee_home, 0700);
  common::server_options server;
  server.name = "queen-rbee";
  server.host = options_.host;
  server.port = options_.port;
  server.api_tokens = options_.api_keys;
  server.limits = options_.connection_limits;
  // Hive reports carry the node token and the OpenAI routes answer in OpenAI's error shape:
  // both check credentials themselves.
  server.public_paths = {"/health", "/v2/hives/report", "/v1/chat/completions", "/v1/completions",
                         "/v1/models"};
  common::require_token_for_non_loopback(server);

  ssh_options ssh{.rbee_home = options_.rbee_home,
                  .connect_timeout_s = options_.ssh_connect_timeout_s,
                  .attempts = 3,
                  .initial_backoff = options_.ssh_backoff,
                  .command_timeout = 300s};
  ssh_ = std::make_unique<openssh_runner>(ssh);
  registry_ = std::make_unique<registry>(options_.database, options_.bin_dir);
  scheduler_options sched{.queue_size = options_.queue_size,
                          .max_workers_per_model = options_.max_workers_per_model,
                          .default_slots = 1,
                          .max_slots_per_worker = options_.slots_per_worker,
                          .queue_timeout = options_.queue_timeout,
                          .retry_after_s = 2};
  scheduler_ = std::make_unique<scheduler>(sched, clock_);
  hive_manager_options hm{.rbee_home = options_.rbee_home,
                          .bin_dir = options_.bin_dir,
                          .local_hive_port = options_.local_hive_port,
                          .remote_hive_port = options_.remote_hive_port,
                          .queen_url = options_.public_url,
                          .hf_endpoint = options_.hf_endpoint,
                          .hf_token = options_.hf_token,
                          .connect_attempts = 3,
                          .connect_timeout = options_.hive_connect_timeout,
                          .connect_backoff = 1s,
                          .report_stale_after = options_.hive_stale_after,
                          .monitor_interval = 5s,
                          .ssh = ssh};
  hives_ = std::make_unique<hive_manager>(hm, *registry_, *scheduler_, launcher_, *ssh_, clock_);
  tasks_ = std::make_unique<task_runner>(
      task_runner_options{.loading_timeout = options_.loading_timeout, .max_dispatch_attempts = 3},
      *registry_, *hives_, *scheduler_, metrics_);
  server_ = std::make_unique<common::http_server>(server);
  register_routes();
}

queen_app::~queen_app() {
  shutdown();
}

void queen_app::start() {
  server_->start();
  if (options_.public_url.empty()) {
    std::string host = common::is_loopback(options_.host) || options_.host == "0.0.0.0"
                           ? "127.0.0.1"
                           : options_.host;
    hives_->set_queen_url("http://" + host + ":" + std::to_string(server_->port()));
  }
  hives_->start_monitor();
  spdlog::info("queen-rbee {} listening on {} (registry {})", common::version_string(),
               server_->base_url(), options_.database.string());
}

int queen_app::run_until_stopped() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  timespec tick{0, 200'000'000};
  while (!shutdown_requested_) {
    int sig = sigtimedwait(&set, nullptr, &tick);
    if (sig == SIGTERM || sig == SIGINT) {
      spdlog::info("signal {}: shutting down", sig);
      break;
    }
  }
  shutdown();
  return 0;
}

void queen_app::shutdown() {
  if (stopped_) return;
  stopped_ = true;
  shutting_down_ = true;
  tasks_->cancel_all(5s);
  server_->stop();
  hives_->stop_monitor();
  hives_->stop_started_hives(30s);
  hives_->close_ssh_masters();
  spdlog::info("queen-rbee stopped");
}

void queen_app::route(const std::string& method, const std::string& pattern,
                      common::http_handler h) {
  // Counts requests by route and status for /metrics.
  auto counted = [this, pattern, h = std::move(h)](const httplib::Request& req,
                                                   httplib::Response& res) {
    auto count = [&](int status) {
      metrics_.counter_add("rbee_queen_requests_total", "HTTP requests by route and status", 1,
                           {{"route", pattern}, {"status", std::to_string(status)}});
    };
    try {
      h(req, res);
      count(res.status);
    } catch (const common::http_error& e) {
      count(e.status);
      throw;
    } catch (const json::exception&) {
      count(400);
      throw;
    } catch (const std::exception&) {
      count(500);
      throw;
    }
  };
  if (method == "GET") {
    server_->get(pattern, counted);
  } else if (method == "POST") {
    server_->post(pattern, counted);
  } else {
    server_->del(pattern, counted);
  }
}

void queen_app::register_routes() {
  using common::http_server;

  // Not through route(): health is polled often and must not wait on the metrics lock that
  // every streaming task takes.
  server_->get("/health", [](const httplib::Request&, httplib::Response& res) {
    // The pid lets `rbee queen stop` on this machine wait until the process is gone.
    http_server::send_json(res, 200,
                           {{"status", "ok"},
                            {"version", common::version_string()},
                            {"api_version", "v2"},
                            {"pid", ::getpid()}});
  });

  route("POST", "/v2/hives/report", [this](const httplib::Request& req, httplib::Response& res) {
    hives_->handle_report(bearer_of(req), common::parse_body(req.body));
    http_server::send_json(res, 200, {{"ok", true}});
  });

  // ---- registry ----
  route("POST", "/v2/registry/beehives/add",
        [this](const httplib::Request& req, httplib::Response& res) {
          auto body = common::parse_body(req.body);
          node_record n;
          n.node_name = common::require_string(body, "node_name", 64);
          validate_node_name(n.node_name);
          n.ssh_host = common::require_string(body, "ssh_host", 253);
          n.ssh_port = static_cast<int>(common::int_in_range(body, "ssh_port", 22, 1, 65535));
          n.ssh_user = common::require_string(body, "ssh_user", 64);
          n.ssh_key_path = common::expand_user(common::string_or(body, "ssh_key_path", "", 4096));
          n.install_path = common::require_string(body, "install_path", 4096);
          n.git_repo_url = common::string_or(body, "git_repo_url", "", 4096);
          n.git_branch = common::string_or(body, "git_branch", "", 256);
          ssh_target target{n.ssh_host, n.ssh_port, n.ssh_user, n.ssh_key_path};
          try {
            validate_ssh_target(target);
            validate_install_path(n.install_path);
          } catch (const std::invalid_argument& e) {
            std::string what = e.what();
            throw common::invalid_request(what.substr(0, what.find(' ')), what);
          }
          if (registry_->get(n.node_name)) {
            throw common::conflict(
                common::codes::NODE_EXISTS, "Node '" + n.node_name + "' already exists",
                {{"node", n.node_name},
                 {"hint", "remove it first: rbee setup remove-node --name " + n.node_name}});
          }
          try {
            run_ssh(*ssh_, target, ssh_->options(), remote_command({"echo", "rbee-ok"}));
          } catch (const ssh_error& e) {
            throw common::unavailable(common::codes::NODE_UNREACHABLE, e.what(), 5,
                                      {{"node", n.node_name},
                                       {"host", n.ssh_host},
                                       {"cause", to_string(e.diagnosis().kind)},
                                       {"hint", e.diagnosis().hint}});
          }
          n.status = "reachable";
          n.last_connected_unix = clock_.unix_now();
          registry_->add(n);
          http_server::send_json(
              res, 201, {{"node", to_json(n)}, {"message", "Node '" + n.node_name + "' saved"}});
        });

  route("GET", "/v2/registry/beehives/list",
        [this](const httplib::Request&, httplib::Response& res) {
          json nodes = json::array();
          for (const auto& n : registry_->list()) nodes.push_back(to_json(n));
          http_server::send_json(res, 200, {{"nodes", nodes}});
        });

  route("POST", "/v2/registry/beehives/remove",
        [this](const httplib::Request& req, httplib::Response& res) {
          auto body = common::parse_body(req.body);
          auto name = common::require_string(body, "node_name", 64);
          if (name == localhost_node) {
            throw common::invalid_request("node_name",
                                          "the built-in node 'localhost' cannot be removed");
          }
          if (auto node = registry_->get(name)) {
            // A hive this queen talks to must not outlive its node entry, nor its SSH connection.
            if (hives_->known_endpoint(name)) hives_->stop_hive(*node);
            hives_->close_ssh_master(*node);
          }
          if (!registry_->remove(name)) {
            throw common::not_found(common::codes::NODE_NOT_FOUND, "Node '" + name + "' not found",
                                    {{"node", name}});
          }
          http_server::send_json(res, 200, {{"message", "Node '" + name + "' removed"}});
        });

  route("POST", "/v2/registry/beehives/install",
        [this](const httplib::Request& req, httplib::Response& res) {
          auto body = common::parse_body(req.body);
          auto name = common::require_string(body, "node_name", 64);
          auto node = registry_->get(name);
          if (!node) {
            throw common::not_found(common::codes::NODE_NOT_FOUND, "Node '" + name + "' not found",
                                    {{"node", name}});
          }
          if (node->is_local()) {
            throw common::invalid_request(
                "node_name", "'localhost' runs the queen's own binaries; nothing to install");
          }
          if (common::optional_bool(body, "build_from_git", false)) {
            throw common::invalid_request(
                "build_from_git",
                "building on the node is not supported; install copies the "
                "queen's own binaries");
          }
          common::serve_sse(res, [this, n = *node](common::sse_sink& sink) {
            ssh_target target{n.ssh_host, n.ssh_port, n.ssh_user, n.ssh_key_path};
            auto step = [&](const char* action, std::string human) {
              sink.send(narration("queen-rbee", action, std::move(human), {{"node", n.node_name}}));
            };
            try {
              validate_install_path(n.install_path);  // rows saved before paths were checked
              step("install_mkdir", "Creating " + n.install_path + " on " + n.ssh_host);
              run_ssh(*ssh_, target, ssh_->options(),
                      remote_command({"mkdir", "-p", n.install_path}));
              for (const char* binary : {"rbee-hive", "llm-worker-rbee"}) {
                auto local = std::filesystem::path(options_.bin_dir) / binary;
                step("install_copy",
                     std::string("Copying ") + binary + " to " + n.ssh_host + ":" + n.install_path);
                // Beside the old binary, then renamed: a running hive keeps its file intact.
                std::string final_path = n.install_path + "/" + binary;
                std::string temp_path = final_path + ".rbee-new";
                auto copied = ssh_->copy(target, local.string(), temp_path);
                if (!copied.ok()) throw ssh_error(diagnose_ssh(copied, target));
                run_ssh(*ssh_, target, ssh_->options(),
                        remote_command({"sh", "-c", "chmod 755 \"$1\" && mv -f \"$1\" \"$2\"", "sh",
                                        temp_path, final_path}));
              }
              step("install_verify", "Verifying rbee-hive --version on " + n.ssh_host);
              auto out = run_ssh(*ssh_, target, ssh_->options(),
                                 remote_command({n.install_path + "/rbee-hive", "--version"}));
              std::string version = out.out;
              while (!version.empty() && (version.back() == '\n' || version.back() == '\r')) {
                version.pop_back();
              }
              auto parsed = common::parse_semver(version.substr(version.find_last_of(' ') + 1));
              if (!parsed || !common::compatible(*parsed, common::current_version())) {
                throw common::http_error(
                    common::status_for_code(common::codes::VERSION_MISMATCH),
                    common::codes::VERSION_MISMATCH,
                    "Version mismatch: queen " + common::version_string() + ", hive " + version,
                    {{"node", n.node_name}});
              }
              registry_->set_status(n.node_name, "reachable", "", clock_.unix_now());
              sink.send(narration(
                  "queen-rbee", "install_complete",
                  "Installed rbee " + version + " on '" + n.node_name + "' in " + n.install_path,
                  {{"node", n.node_name}, {"version", version}}));
            } catch (const ssh_error& e) {
              sink.send({{"type", "error"},
                         {"code", common::codes::NODE_UNREACHABLE},
                         {"message", e.what()},
                         {"details", {{"hint", e.diagnosis().hint}, {"node", n.node_name}}}});
            } catch (const std::invalid_argument& e) {
              sink.send({{"type", "error"},
                         {"code", common::codes::INVALID_REQUEST},
                         {"message", e.what()}});
            }
          });
        });

  // ---- hives ----
  auto node_or_404 = [this](const std::string& name) {
    auto node = registry_->get(name.empty() ? std::string(localhost_node) : name);
    if (!node) {
      throw common::not_found(
          common::codes::NODE_NOT_FOUND, "Node '" + name + "' not found",
          {{"node", name},
           {"hint", "add it first: rbee setup add-node --name " + name +
                        " --ssh-host <host> --ssh-user <user> --install-path <path>"}});
    }
    return *node;
  };

  route("POST", "/v2/hives/start",
        [this, node_or_404](const httplib::Request& req, httplib::Response& res) {
          auto body = common::parse_body(req.body, true);
          auto node = node_or_404(common::string_or(body, "node", localhost_node, 64));
          auto ep = hives_->ensure_hive(node);
          http_server::send_json(res, 200,
                                 {{"node", node.node_name},
                                  {"url", ep.base_url},
                                  {"version", ep.version},
                                  {"running", true}});
        });
  route("POST", "/v2/hives/stop",
        [this, node_or_404](const httplib::Request& req, httplib::Response& res) {
          auto body = common::parse_body(req.body, true);
          auto node = node_or_404(common::string_or(body, "node", localhost_node, 64));
          bool stopped = hives_->stop_hive(node);
          http_server::send_json(res, 200, {{"node", node.node_name}, {"stopped", stopped}});
        });
  route("GET", "/v2/hives/status",
        [this, node_or_404](const httplib::Request& req, httplib::Response& res) {
          auto node = node_or_404(query(req, "node"));
          auto version = hives_->hive_version(node);
          http_server::send_json(res, 200,
                                 {{"node", node.node_name},
                                  {"url", hives_->hive_url(node)},
                                  {"running", version.has_value()},
                                  {"version", version ? json(*version) : json()}});
        });

  // ---- workers ----
  route("GET", "/v2/workers/list", [this](const httplib::Request&, httplib::Response& res) {
    for (const auto& n : registry_->list()) {
      if (!hives_->known_endpoint(n.node_name)) continue;
      try {
        hives_->refresh_workers(n.node_name);
      } catch (const std::exception& e) {
        spdlog::warn("workers of {}: {}", n.node_name, e.what());
      }
    }
    json workers = json::array();
    for (const auto& w : scheduler_->workers()) {
      if (!w.pending) workers.push_back(to_json(w));
    }
    http_server::send_json(res, 200, {{"workers", workers}});
  });

  route("GET", "/v2/workers/health",
        [this, node_or_404](const httplib::Request& req, httplib::Response& res) {
          auto node = node_or_404(query(req, "node"));
          json out = json::array();
          if (hives_->known_endpoint(node.node_name)) hives_->refresh_workers(node.node_name);
          for (const auto& w : scheduler_->workers()) {
            if (w.pending || w.info.node != node.node_name) continue;
            json entry = to_json(w);
            try {
              common::client_options o;
              o.connect_timeout = 2s;
              o.read_timeout = 5s;
              o.bearer_token = w.info.token;
              auto h = common::http_client(w.info.url, o).get("/v1/health");
              auto body = json::parse(h.body, nullptr, false);
              entry["health"] = body.is_object() ? body.value("status", "unknown") : "unknown";
            } catch (const common::connection_error& e) {
              entry["health"] = "unreachable";
              entry["error"] = e.what();
            }
            out.push_back(entry);
          }
          http_server::send_json(res, 200, {{"node", node.node_name}, {"workers", out}});
        });

  route("POST", "/v2/workers/shutdown",
        [this, node_or_404](const httplib::Request& req, httplib::Response& res) {
          auto body = common::parse_body(req.body);
          auto id = common::require_string(body, "worker_id", 256);
          std::optional<worker_view> found;
          for (const auto& w : scheduler_->workers()) {
            if (w.info.worker_id == id && !w.pending) found = w;
          }
          if (!found) {
            throw common::not_found(
                common::codes::WORKER_NOT_FOUND, "Worker '" + id + "' not found",
                {{"worker_id", id}, {"hint", "list workers: rbee workers list"}});
          }
          auto ep = hives_->ensure_hive(node_or_404(found->info.node));
          auto r =
              hives_->hive_client(ep, 35s).post_json("/v1/workers/shutdown", {{"worker_id", id}});
          r.throw_if_error();
          hives_->refresh_workers(found->info.node);
          http_server::send_json(res, 200,
                                 {{"worker_id", id},
                                  {"node", found->info.node},
                                  {"message", "Worker '" + id + "' shut down"}});
        });

  // ---- tasks ----
  route("POST", "/v2/tasks", [this](const httplib::Request& req, httplib::Response& res) {
    common::batch_work_scope batch;  // a burst of tasks must not delay /health
    if (shutting_down_) {
      throw common::unavailable(common::codes::NODE_UNREACHABLE, "queen-rbee is shutting down", 5);
    }
    auto request = task_request::from_json(common::parse_body(req.body));
    auto holder = std::make_shared<admission_holder>(*scheduler_, tasks_->admit(request));
    res.set_header("X-Task-Id", request.task_id);
    common::serve_sse(res, [this, request, holder](common::sse_sink& sink) {
      holder->consumed = true;
      tasks_->run(
          request, std::move(holder->a), [&sink](const json& event) { return sink.send(event); },
          [&sink](std::string_view token) {
            return sink.send_raw(
                common::sse_data_frame(token, api::to_string(api::event_type::token)));
          },
          [&sink] { return sink.connected(); });
    });
  });

  route("DELETE", R"(/v2/tasks/([A-Za-z0-9._:-]+))",
        [this](const httplib::Request& req, httplib::Response& res) {
          tasks_->cancel(req.matches[1].str());
          res.status = 204;
        });

  // ---- models ----
  route("POST", "/v2/models/download",
        [this, node_or_404](const httplib::Request& req, httplib::Response& res) {
          auto body = common::parse_body(req.body);
          auto node = node_or_404(common::string_or(body, "node", localhost_node, 64));
          auto model = common::require_string(body, "model", 2048);
          common::serve_sse(res, [this, node, model](common::sse_sink& sink) {
            auto send = [&sink](const json& e) { return sink.send(e); };
            try {
              auto ep = hives_->ensure_hive(node, send);
              tasks_->ensure_model(ep, model, send);
            } catch (const common::http_error& e) {
              json ev = {{"type", "error"}, {"code", e.code}, {"message", e.message}};
              if (!e.details.is_null()) ev["details"] = e.details;
              sink.send(ev);
            }
          });
        });

  route("GET", "/v2/models/list",
        [this, node_or_404](const httplib::Request& req, httplib::Response& res) {
          auto node = node_or_404(query(req, "node"));
          auto ep = hives_->ensure_hive(node);
          auto r = hives_->hive_client(ep).get("/v1/models/list");
          r.throw_if_error();
          auto body = r.json_body();
          if (body.is_object()) body["node"] = node.node_name;
          http_server::send_json(res, 200, body);
        });

  route("POST", "/v2/models/remove",
        [this, node_or_404](const httplib::Request& req, httplib::Response& res) {
          auto body = common::parse_body(req.body);
          auto node = node_or_404(common::string_or(body, "node", localhost_node, 64));
          auto model = common::require_string(body, "model", 2048);
          auto ep = hives_->ensure_hive(node);
          auto r = hives_->hive_client(ep).del("/v1/models/" + url_encode(model));
          r.throw_if_error();
          http_server::send_json(
              res, 200,
              {{"node", node.node_name},
               {"model", model},
               {"message", "Model '" + model + "' removed from '" + node.node_name + "'"}});
        });

  // ---- logs ----
  route("GET", "/v2/logs",
        [this, node_or_404](const httplib::Request& req, httplib::Response& res) {
          auto node = node_or_404(query(req, "node"));
          auto ep = hives_->ensure_hive(node);
          std::string path =
              "/v1/logs?follow=" + std::string(query(req, "follow") == "true" ? "true" : "false");
          if (auto worker = query(req, "worker"); !worker.empty()) {
            path += "&worker=" + url_encode(worker);
          }
          common::serve_sse(res, [this, ep, path](common::sse_sink& sink) {
            common::http_response err;
            // Log lines may be rare: the hive's keep-alives let a client that left, or a queen
            // that stops, end this relay.
            auto client = hives_->hive_client(ep, 24h, [&sink] { return sink.connected(); });
            int status = client.get_sse(
                path,
                [&](const common::sse_event& ev) {
                  if (ev.is_done()) return false;
                  auto e = json::parse(ev.data, nullptr, false);
                  return sink.send(e.is_discarded() ? json{{"line", ev.data}} : e);
                },
                &err);
            if (status != 200) throw err.to_http_error();
          });
        });

  // ---- admin, metrics ----
  route("POST", "/v2/admin/shutdown", [this](const httplib::Request&, httplib::Response& res) {
    shutdown_requested_ = true;
    http_server::send_json(res, 202, {{"message", "queen-rbee is shutting down"}});
  });

  route("GET", "/metrics", [this](const httplib::Request&, httplib::Response& res) {
    metrics_.gauge_set("rbee_queen_queue_depth", "Tasks waiting in the queue",
                       static_cast<double>(scheduler_->queue_depth()));
    metrics_.gauge_set("rbee_queen_active_tasks", "Tasks streaming now",
                       static_cast<double>(tasks_->active()));
    std::map<std::pair<std::string, std::string>, int> by_state;
    for (const auto& w : scheduler_->workers()) {
      ++by_state[{w.info.node, std::string(w.pending ? "spawning" : to_string(w.info.state))}];
    }
    for (const auto& n : registry_->list()) {
      for (auto s : {worker_state::spawning, worker_state::loading, worker_state::idle,
                     worker_state::busy, worker_state::draining, worker_state::error}) {
        std::string state(to_string(s));
        auto it = by_state.find({n.node_name, state});
        metrics_.gauge_set("rbee_queen_workers", "Workers by node and state",
                           it == by_state.end() ? 0 : it->second,
                           {{"node", n.node_name}, {"state", state}});
      }
    }
    res.status = 200;
    res.set_content(metrics_.render(), "text/plain; version=0.0.4");
  });

  // ---- OpenAI ----
  auto openai_auth = [this](const httplib::Request& req, httplib::Response& res) {
    if (options_.api_keys.empty()) return true;
    std::string token = bearer_of(req);
    for (const auto& k : options_.api_keys) {
      if (!token.empty() && common::constant_time_equals(k, token)) return true;
    }
    std::string_view code =
        token.empty() ? common::codes::MISSING_API_KEY : common::codes::INVALID_API_KEY;
    http_server::send_json(
        res, 401,
        openai::error_body(401, code,
                           token.empty() ? "Missing API key: send 'Authorization: Bearer <key>'"
                                         : "Invalid API key"));
    return false;
  };
  auto openai_error = [](httplib::Response& res, const common::http_error& e) {
    json param = e.details.is_object() && e.details.contains("field") ? e.details["field"] : json();
    if (e.retry_after_s) res.set_header("Retry-After", std::to_string(*e.retry_after_s));
    http_server::send_json(res, e.status, openai::error_body(e.status, e.code, e.message, param));
  };
  auto completions = [this, openai_auth, openai_error](openai::endpoint kind) {
    return [this, kind, openai_auth, openai_error](const httplib::Request& req,
                                                   httplib::Response& res) {
      common::batch_work_scope batch;  // a burst of tasks must not delay /health
      if (!openai_auth(req, res)) return;
      openai::request r;
      std::shared_ptr<admission_holder> holder;
      try {
        r = openai::parse_request(kind, common::parse_body(req.body));
        holder = std::make_shared<admission_holder>(*scheduler_, tasks_->admit(r.task));
      } catch (const common::http_error& e) {
        openai_error(res, e);
        return;
      }
      std::string id =
          (kind == openai::endpoint::chat ? "chatcmpl-" : "cmpl-") + common::random_token(12);
      int64_t created = clock_.unix_now();
      if (!r.stream) {
        holder->consumed = true;
        openai::collector c;
        // The handler runs on the client's connection: a client that left cancels the task.
        tasks_->run(
            r.task, std::move(holder->a),
            [&c](const json& e) {
              c.on_event(e);
              return true;  // a client that left is seen through the probe below
            },
            {}, &common::guarded_server::peer_connected);
        if (c.error.is_null() && !c.ended) {
          c.error = {{"code", common::codes::INTERNAL},
                     {"message", "the task ended without a result"}};
        }
        if (!c.error.is_null()) {
          std::string code = c.error.value("code", std::string(common::codes::INTERNAL));
          openai_error(res, common::http_error(common::status_for_code(code), code,
                                               c.error.value("message", "task failed")));
          return;
        }
        http_server::send_json(res, 200, openai::response(kind, id, r.task.model, created, c));
        return;
      }
      common::serve_sse(res, [this, kind, r, holder, id, created](common::sse_sink& sink) {
        holder->consumed = true;
        bool first = true;
        tasks_->run(
            r.task, std::move(holder->a),
            [&](const json& e) {
              std::string type = e.value("type", "");
              if (type == "token") {
                bool ok = sink.send(openai::chunk(kind, id, r.task.model, created, e.value("t", ""),
                                                  nullptr, first));
                first = false;
                return ok;
              }
              if (type == "end") {
                auto last =
                    openai::chunk(kind, id, r.task.model, created, "",
                                  openai::finish_reason(e.value("stop_reason", "eos")), first);
                if (r.include_usage) {
                  last["usage"] = openai::usage(e.value("tokens_in", 0), e.value("tokens_out", 0));
                }
                return sink.send(last);
              }
              if (type == "error") {
                std::string code = e.value("code", std::string(common::codes::INTERNAL));
                return sink.send(openai::error_body(common::status_for_code(code), code,
                                                    e.value("message", "task failed")));
              }
              return sink.connected();  // narration is not part of the OpenAI stream
            },
            {}, [&sink] { return sink.connected(); });
      });
    };
  };
  route("POST", "/v1/chat/completions", completions(openai::endpoint::chat));
  route("POST", "/v1/completions", completions(openai::endpoint::completion));

  route("GET", "/v1/models",
        [this, openai_auth](const httplib::Request& req, httplib::Response& res) {
          if (!openai_auth(req, res)) return;
          std::set<std::string> ids;
          for (const auto& w : scheduler_->workers()) {
            if (!w.info.model_ref.empty()) ids.insert(w.info.model_ref);
          }
          for (const auto& n : registry_->list()) {
            auto ep = hives_->known_endpoint(n.node_name);
            if (!ep) continue;
            try {
              auto r = hives_->hive_client(*ep, 5s).get("/v1/models/list");
              auto body = json::parse(r.body, nullptr, false);
              const json& models =
                  body.is_object() && body.contains("models") ? body["models"] : body;
              if (!r.ok() || !models.is_array()) continue;
              for (const auto& m : models) {
                if (m.is_object() && m.contains("reference") && m["reference"].is_string()) {
                  ids.insert(m["reference"].get<std::string>());
                }
              }
            } catch (const common::connection_error& e) {
              spdlog::warn("models of {}: {}", n.node_name, e.what());
            }
          }
          json data = json::array();
          for (const auto& id : ids) {
            data.push_back({{"id", id}, {"object", "model"}, {"created", 0}, {"owned_by", "rbee"}});
          }
          http_server::send_json(res, 200, {{"object", "list"}, {"data", data}});
        });
}

}  // namespace rbee::queen
