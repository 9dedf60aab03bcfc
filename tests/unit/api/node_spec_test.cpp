#include "api/node_spec.h"

#include <gtest/gtest.h>

#include "common/errors.h"

namespace rbee::api {
namespace {

std::string rejected_field(const nlohmann::json& body) {
  try {
    node_spec::from_json(body);
  } catch (const common::http_error& e) {
    EXPECT_EQ(e.status, 400);
    return e.details.value("field", "");
  }
  return "<accepted>";
}

TEST(NodeSpec, WhatTheCliWritesTheQueenReadsBack) {
  node_spec n{.node_name = "gpu-1",
              .ssh_host = "10.0.0.7",
              .ssh_port = 2222,
              .ssh_user = "rbee",
              .ssh_key_path = "/home/rbee/.ssh/id_ed25519",
              .install_path = "/opt/rbee",
              .git_repo_url = "",
              .git_branch = ""};
  EXPECT_EQ(node_spec::from_json(n.to_json()).to_json(), n.to_json());
  EXPECT_FALSE(n.to_json().contains("git_branch")) << "unset optional fields are left out";
}

TEST(NodeSpec, InvalidFieldsAreNamed) {
  nlohmann::json ok = {
      {"node_name", "n"}, {"ssh_host", "h"}, {"ssh_user", "u"}, {"install_path", "/opt/rbee"}};
  EXPECT_EQ(rejected_field(ok), "<accepted>");
  for (const char* bad : {"", "-x", ".x", "a/b", "a b", "x\n"}) {
    auto body = ok;
    body["node_name"] = bad;
    EXPECT_EQ(rejected_field(body), "node_name") << bad;
  }
  auto body = ok;
  body["ssh_port"] = 70000;
  EXPECT_EQ(rejected_field(body), "ssh_port");
  body = ok;
  body.erase("install_path");
  EXPECT_EQ(rejected_field(body), "install_path");
}

}  // namespace
}  // namespace rbee::api
