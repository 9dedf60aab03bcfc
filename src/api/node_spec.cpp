#include "api/node_spec.h"

#include "api/requests.h"
#include "common/errors.h"
#include "common/json.h"

namespace rbee::api {

void validate_node_name(const std::string& name) {
  bool ok = !name.empty() && name.size() <= max_node_name_length && name.front() != '-' &&
            name.front() != '.';
  for (char c : name) {
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '-' || c == '_' || c == '.');
  }
  if (!ok) {
    throw common::invalid_request("node_name",
                                  "node_name must be 1-64 letters, digits, '-', '_' or '.'");
  }
}

node_spec node_spec::from_json(const nlohmann::json& body) {
  if (!body.is_object()) throw common::bad_request("request body must be a JSON object");
  node_spec n;
  n.node_name = common::require_string(body, "node_name", max_node_name_length);
  validate_node_name(n.node_name);
  n.ssh_host = common::require_string(body, "ssh_host", max_ssh_host_length);
  n.ssh_port = static_cast<int>(common::int_in_range(body, "ssh_port", 22, 1, 65535));
  n.ssh_user = common::require_string(body, "ssh_user", max_ssh_user_length);
  n.ssh_key_path = common::string_or(body, "ssh_key_path", "", max_path_length);
  n.install_path = common::require_string(body, "install_path", max_path_length);
  n.git_repo_url = common::string_or(body, "git_repo_url", "", max_path_length);
  n.git_branch = common::string_or(body, "git_branch", "", 256);
  return n;
}

nlohmann::json node_spec::to_json() const {
  nlohmann::json body = {{"node_name", node_name},
                         {"ssh_host", ssh_host},
                         {"ssh_port", ssh_port},
                         {"ssh_user", ssh_user},
                         {"install_path", install_path}};
  if (!ssh_key_path.empty()) body["ssh_key_path"] = ssh_key_path;
  if (!git_repo_url.empty()) body["git_repo_url"] = git_repo_url;
  if (!git_branch.empty()) body["git_branch"] = git_branch;
  return body;
}

}  // namespace rbee::api
