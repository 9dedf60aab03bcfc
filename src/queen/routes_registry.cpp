// Nodes (the registry) and their hives.

#include <stdlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "common/json.h"
#include "common/paths.h"
#include "common/version.h"
#include "queen/install_bundle.h"
#include "queen/narration.h"
#include "queen/routes.h"

namespace rbee::queen {

namespace {

using common::http_server;
using nlohmann::json;

// Each SSH field checked on its own, so the error names the field it is about.
void validate_ssh_fields(const node_record& n) {
  if (!is_safe_ssh_host(n.ssh_host)) {
    throw invalid_field("ssh_host", "ssh_host '" + n.ssh_host +
                                        "' is not a valid host name (letters, digits, '.', '-', "
                                        "'_', ':' only, not starting with '-')");
  }
  if (!is_safe_ssh_user(n.ssh_user)) {
    throw invalid_field("ssh_user", "ssh_user '" + n.ssh_user +
                                        "' is not a valid user name (letters, digits, '.', '-', "
                                        "'_' only, not starting with '-')");
  }
  if (!n.ssh_key_path.empty() &&
      (n.ssh_key_path.front() == '-' || n.ssh_key_path.find('\0') != std::string::npos)) {
    throw invalid_field("ssh_key_path", "ssh_key_path must be a path, not an option");
  }
  try {
    validate_install_path(n.install_path);
  } catch (const std::invalid_argument& e) {
    throw invalid_field("install_path", e.what());
  }
}

ssh_target target_of(const node_record& n) {
  return ssh_target{n.ssh_host, n.ssh_port, n.ssh_user, n.ssh_key_path};
}

// What the node said about itself, for events and errors.
json platform_json(const node_platform& p) {
  return {{"os", p.os_name},
          {"kernel", p.kernel},
          {"release", p.release},
          {"machine", p.machine},
          {"glibc", p.glibc ? json(p.glibc->to_string()) : json()}};
}

// A directory of the queen's own for the programs' copies the node gets; removed with them.
class scratch_dir {
 public:
  scratch_dir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "rbee-install-XXXXXX").string();
    if (!mkdtemp(pattern.data())) {
      throw internal("cannot create a temporary directory in " +
                     std::filesystem::temp_directory_path().string() + ": " + std::strerror(errno));
    }
    path_ = pattern;
  }
  ~scratch_dir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  scratch_dir(const scratch_dir&) = delete;
  scratch_dir& operator=(const scratch_dir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// One file to place on a node.
struct file_to_install {
  std::filesystem::path local;
  std::string remote;
  const char* mode;  // chmod's
};

// Copies each file beside its old version, then renames them all in one command: a running
// hive keeps its files intact, and a copy cut short leaves the old installation whole.
void install_files(ssh_runner& ssh, const ssh_target& target, const ssh_options& options,
                   const std::vector<file_to_install>& files) {
  std::vector<std::string> renames = {"sh", "-c",
                                      "while [ $# -gt 0 ]; do chmod \"$1\" \"$2.rbee-new\" && "
                                      "mv -f \"$2.rbee-new\" \"$2\" || exit 1; shift 2; done",
                                      "sh"};
  for (const auto& file : files) {
    auto copied = ssh.copy(target, file.local.string(), file.remote + ".rbee-new");
    if (!copied.ok()) throw ssh_error(diagnose_ssh(copied, target));
    renames.insert(renames.end(), {file.mode, file.remote});
  }
  run_ssh(ssh, target, options, remote_command(renames));
}

}  // namespace

void registry_routes::add_to(route_table& routes) {
  routes.post("/v2/hives/report", handler(this, &registry_routes::hive_report));
  routes.post("/v2/registry/beehives/add", handler(this, &registry_routes::add_node));
  routes.get("/v2/registry/beehives/list", handler(this, &registry_routes::list_nodes));
  routes.post("/v2/registry/beehives/remove", handler(this, &registry_routes::remove_node));
  routes.post("/v2/registry/beehives/install", handler(this, &registry_routes::install_node));
  routes.post("/v2/hives/start", handler(this, &registry_routes::start_hive));
  routes.post("/v2/hives/stop", handler(this, &registry_routes::stop_hive));
  routes.get("/v2/hives/status", handler(this, &registry_routes::hive_status));
}

void registry_routes::hive_report(const http_request& req, http_response& res) {
  s_.hives.handle_report(bearer_of(req), common::parse_body(req.body));
  http_server::send_json(res, 200, {{"ok", true}});
}

void registry_routes::add_node(const http_request& req, http_response& res) {
  node_record n;
  static_cast<api::node_spec&>(n) = api::node_spec::from_json(common::parse_body(req.body));
  n.ssh_key_path = common::expand_user(n.ssh_key_path);
  validate_ssh_fields(n);
  if (s_.nodes.get(n.node_name)) {
    throw error(common::codes::NODE_EXISTS, "Node '" + n.node_name + "' already exists",
                {{"node", n.node_name},
                 {"hint", "remove it first: rbee setup remove-node --name " + n.node_name}});
  }
  try {
    run_ssh(s_.ssh, target_of(n), s_.ssh_config, remote_command({"echo", "rbee-ok"}));
  } catch (const ssh_error& e) {
    throw unavailable(common::codes::NODE_UNREACHABLE, e.what(), 5,
                      {{"node", n.node_name},
                       {"host", n.ssh_host},
                       {"cause", to_string(e.diagnosis().kind)},
                       {"hint", e.diagnosis().hint}});
  }
  n.status = "reachable";
  n.last_connected_unix = s_.clock.unix_now();
  s_.nodes.add(n);
  http_server::send_json(res, 201,
                         {{"node", to_json(n)}, {"message", "Node '" + n.node_name + "' saved"}});
}

void registry_routes::list_nodes(const http_request&, http_response& res) {
  json nodes = json::array();
  for (const auto& n : s_.nodes.list()) nodes.push_back(to_json(n));
  http_server::send_json(res, 200, {{"nodes", nodes}});
}

void registry_routes::remove_node(const http_request& req, http_response& res) {
  auto body = common::parse_body(req.body);
  auto name = common::require_string(body, "node_name", 64);
  if (name == localhost_node) {
    throw invalid_field("node_name", "the built-in node 'localhost' cannot be removed");
  }
  if (auto node = s_.nodes.get(name)) {
    // A hive this queen talks to must not outlive its node entry, nor its SSH connection.
    if (s_.hives.known_endpoint(name)) s_.hives.stop_hive(*node);
    s_.hives.close_ssh_master(*node);
  }
  if (!s_.nodes.remove(name)) {
    throw error(common::codes::NODE_NOT_FOUND, "Node '" + name + "' not found", {{"node", name}});
  }
  http_server::send_json(res, 200, {{"message", "Node '" + name + "' removed"}});
}

void registry_routes::install_node(const http_request& req, http_response& res) {
  auto body = common::parse_body(req.body);
  auto name = common::require_string(body, "node_name", 64);
  auto node = s_.nodes.get(name);
  if (!node) {
    throw error(common::codes::NODE_NOT_FOUND, "Node '" + name + "' not found", {{"node", name}});
  }
  if (node->is_local()) {
    throw invalid_field("node_name",
                        "'localhost' runs the queen's own binaries; nothing to install");
  }
  if (common::optional_bool(body, "build_from_git", false)) {
    throw invalid_field("build_from_git",
                        "building on the node is not supported; install copies the "
                        "queen's own binaries");
  }
  serve_sse(res, [this, n = *node](common::sse_sink& sink) {
    try {
      install_binaries(n, sink);
    } catch (const ssh_error& e) {
      sink.send({{"type", "error"},
                 {"code", common::codes::NODE_UNREACHABLE},
                 {"message", e.what()},
                 {"details", {{"hint", e.diagnosis().hint}, {"node", n.node_name}}}});
    } catch (const std::invalid_argument& e) {
      sink.send(
          {{"type", "error"}, {"code", common::codes::INVALID_REQUEST}, {"message", e.what()}});
    }
  });
}

void registry_routes::install_binaries(const node_record& n, common::sse_sink& sink) {
  const ssh_target target = target_of(n);
  auto step = [&](const char* action, std::string human, json fields = json::object()) {
    fields["node"] = n.node_name;
    sink.send(narration("queen-rbee", action, std::move(human), std::move(fields)));
  };
  validate_install_path(n.install_path);  // rows saved before paths were checked
  const std::vector<std::string> binaries = {"rbee-hive", "llm-worker-rbee"};
  std::vector<std::filesystem::path> programs;
  for (const auto& binary : binaries)
    programs.push_back(std::filesystem::path(s_.bin_dir) / binary);
  runtime_bundle bundle;
  try {
    bundle = collect_runtime_bundle(programs);
  } catch (const std::runtime_error& e) {
    throw internal(std::string("cannot gather the files to install: ") + e.what());
  }
  std::string interpreter;
  try {
    interpreter = installed_interpreter(bundle, n.install_path);
  } catch (const std::runtime_error& e) {
    throw error(common::codes::UNSUPPORTED_PLATFORM,
                "Cannot install on '" + n.node_name + "': " + e.what(),
                {{"node", n.node_name}, {"install_path", n.install_path}});
  }
  const std::string needs_text = "Linux " + bundle.oldest_kernel.to_string() + " or newer on " +
                                 bundle.machine + "; it brings its own glibc" +
                                 (bundle.glibc ? " " + bundle.glibc->to_string() : "");

  // Nothing is copied to a node that cannot run it.
  step("install_probe", "Checking the system of " + n.ssh_host + " (OS, CPU, kernel)");
  auto probe = run_ssh(s_.ssh, target, s_.ssh_config, platform_probe_command(bundle.interpreter));
  const node_platform platform = parse_platform_probe(probe.out);
  if (auto mismatch = platform_mismatch(platform, bundle); !mismatch.empty()) {
    throw error(
        common::codes::UNSUPPORTED_PLATFORM, "Cannot install on '" + n.node_name + "': " + mismatch,
        {{"node", n.node_name},
         {"found", platform_json(platform)},
         {"needs", {{"machine", bundle.machine}, {"kernel", bundle.oldest_kernel.to_string()}}}});
  }
  step("install_platform", "Found " + describe(platform) + " (rbee needs " + needs_text + ")",
       {{"found", platform_json(platform)}});

  // The node gets copies whose ELF interpreter is the shipped loader.
  scratch_dir scratch;
  std::vector<std::filesystem::path> copies;
  for (size_t i = 0; i < binaries.size(); ++i) {
    copies.push_back(scratch.path() / binaries[i]);
    try {
      write_with_interpreter(programs[i], interpreter, copies.back());
    } catch (const std::runtime_error& e) {
      throw internal(std::string("cannot prepare the programs to install: ") + e.what());
    }
  }

  step("install_mkdir", "Creating " + n.install_path + " on " + n.ssh_host);
  const std::string lib_dir = n.install_path + "/lib";
  run_ssh(s_.ssh, target, s_.ssh_config, remote_command({"mkdir", "-p", n.install_path, lib_dir}));
  std::vector<file_to_install> files;
  for (const auto& library : bundle.libraries) {
    files.push_back({library, lib_dir + "/" + library.filename().string(), "644"});
  }
  files.push_back({bundle.loader, lib_dir + "/" + bundle.loader_name, "755"});
  for (size_t i = 0; i < binaries.size(); ++i) {
    files.push_back({copies[i], n.install_path + "/" + binaries[i], "755"});
  }
  step("install_copy",
       "Copying rbee-hive, llm-worker-rbee, glibc's loader and " +
           std::to_string(bundle.libraries.size()) + " libraries (" +
           std::to_string(bundle.library_bytes / 1000000) + " MB) to " + n.ssh_host + ":" +
           n.install_path,
       {{"libraries", bundle.libraries.size()}});
  install_files(s_.ssh, target, s_.ssh_config, files);
  step("install_verify", "Verifying rbee-hive --version on " + n.ssh_host);
  auto out = run_ssh(s_.ssh, target, s_.ssh_config,
                     remote_command({n.install_path + "/rbee-hive", "--version"}));
  std::string version = out.out;
  while (!version.empty() && (version.back() == '\n' || version.back() == '\r')) {
    version.pop_back();
  }
  auto parsed = common::parse_semver(version.substr(version.find_last_of(' ') + 1));
  if (!parsed || !common::compatible(*parsed, common::current_version())) {
    throw error(common::codes::VERSION_MISMATCH,
                "Version mismatch: queen " + common::version_string() + ", hive " + version,
                {{"node", n.node_name}});
  }
  s_.nodes.set_status(n.node_name, "reachable", "", s_.clock.unix_now());
  sink.send(
      narration("queen-rbee", "install_complete",
                "Installed rbee " + version + " on '" + n.node_name + "' in " + n.install_path,
                {{"node", n.node_name}, {"version", version}}));
}

void registry_routes::start_hive(const http_request& req, http_response& res) {
  auto body = common::parse_body(req.body, true);
  auto node = node_or_404(s_.nodes, common::string_or(body, "node", localhost_node, 64));
  auto ep = s_.hives.ensure_hive(node);
  http_server::send_json(
      res, 200,
      {{"node", node.node_name}, {"url", ep.base_url}, {"version", ep.version}, {"running", true}});
}

void registry_routes::stop_hive(const http_request& req, http_response& res) {
  auto body = common::parse_body(req.body, true);
  auto node = node_or_404(s_.nodes, common::string_or(body, "node", localhost_node, 64));
  bool stopped = s_.hives.stop_hive(node);
  http_server::send_json(res, 200, {{"node", node.node_name}, {"stopped", stopped}});
}

void registry_routes::hive_status(const http_request& req, http_response& res) {
  auto node = node_or_404(s_.nodes, query(req, "node"));
  auto version = s_.hives.hive_version(node);
  http_server::send_json(res, 200,
                         {{"node", node.node_name},
                          {"url", s_.hives.hive_url(node)},
                          {"running", version.has_value()},
                          {"version", version ? json(*version) : json()}});
}

}  // namespace rbee::queen
