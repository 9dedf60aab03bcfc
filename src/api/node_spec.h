#pragma once
// A node as an operator adds it (POST /v2/registry/beehives/add): how the queen reaches the
// machine over SSH and where rbee lives there. The queen's registry keeps it with its status.

#include <string>

#include <nlohmann/json.hpp>

namespace rbee::api {

inline constexpr size_t max_ssh_host_length = 253;
inline constexpr size_t max_ssh_user_length = 64;
inline constexpr size_t max_path_length = 4096;

// 1-64 letters, digits, '-', '_' or '.', not starting with '-' or '.': node names travel in
// URLs, file names and the narration. Throws 400 INVALID_REQUEST naming node_name otherwise.
void validate_node_name(const std::string& name);

struct node_spec {
  std::string node_name;
  std::string ssh_host;
  int ssh_port = 22;
  std::string ssh_user;
  std::string ssh_key_path;  // "" = the SSH client's default keys
  std::string install_path;
  std::string git_repo_url;
  std::string git_branch;

  // The fields' shapes and lengths (400 INVALID_REQUEST naming the field); whether the host,
  // user and paths are safe to hand to ssh is the queen's check (queen/ssh.h).
  static node_spec from_json(const nlohmann::json& body);
  nlohmann::json to_json() const;
};

}  // namespace rbee::api
