#include "queen/registry.h"

#include <array>

#include "common/errors.h"
#include "queen/errors.h"

namespace rbee::queen {

namespace {

constexpr std::array<std::string_view, 1> migrations = {
    R"sql(
CREATE TABLE beehives (
  node_name TEXT PRIMARY KEY,
  ssh_host TEXT NOT NULL,
  ssh_port INTEGER NOT NULL DEFAULT 22,
  ssh_user TEXT NOT NULL DEFAULT '',
  ssh_key_path TEXT NOT NULL DEFAULT '',
  install_path TEXT NOT NULL DEFAULT '',
  git_repo_url TEXT NOT NULL DEFAULT '',
  git_branch TEXT NOT NULL DEFAULT '',
  status TEXT NOT NULL DEFAULT 'unknown',
  last_connected_unix INTEGER NOT NULL DEFAULT 0,
  last_error TEXT NOT NULL DEFAULT '',
  backends_json TEXT NOT NULL DEFAULT '[]',
  devices_json TEXT NOT NULL DEFAULT '[]'
);
)sql"};

constexpr std::string_view select_columns =
    "SELECT node_name, ssh_host, ssh_port, ssh_user, ssh_key_path, install_path, git_repo_url, "
    "git_branch, status, last_connected_unix, last_error, backends_json, devices_json "
    "FROM beehives";

}  // namespace

nlohmann::json to_json(const node_record& node) {
  return {{"node_name", node.node_name},
          {"ssh_host", node.ssh_host},
          {"ssh_port", node.ssh_port},
          {"ssh_user", node.ssh_user},
          {"ssh_key_path", node.ssh_key_path},
          {"install_path", node.install_path},
          {"git_repo_url", node.git_repo_url},
          {"git_branch", node.git_branch},
          {"status", node.status},
          {"last_connected_unix", node.last_connected_unix},
          {"last_error", node.last_error},
          {"backends", node.backends},
          {"devices", node.devices}};
}

registry::registry(const std::filesystem::path& db_path, const std::string& local_install_path)
    : db_(common::database::open(db_path)) {
  common::migrate(db_, migrations);
  // The built-in node follows the queen's own directory (binaries may move between runs).
  auto st = db_.prepare(
      "INSERT INTO beehives (node_name, ssh_host, install_path, status) "
      "VALUES (?1, 'localhost', ?2, 'unknown') "
      "ON CONFLICT(node_name) DO UPDATE SET install_path = excluded.install_path");
  st.bind(1, std::string(localhost_node)).bind(2, local_install_path).run();
}

node_record registry::read_row(common::statement& st) {
  node_record n;
  n.node_name = st.column_text(0);
  n.ssh_host = st.column_text(1);
  n.ssh_port = static_cast<int>(st.column_int64(2));
  n.ssh_user = st.column_text(3);
  n.ssh_key_path = st.column_text(4);
  n.install_path = st.column_text(5);
  n.git_repo_url = st.column_text(6);
  n.git_branch = st.column_text(7);
  n.status = st.column_text(8);
  n.last_connected_unix = st.column_int64(9);
  n.last_error = st.column_text(10);
  auto backends = nlohmann::json::parse(st.column_text(11), nullptr, false);
  if (backends.is_array()) {
    for (const auto& b : backends) {
      if (b.is_string()) n.backends.push_back(b.get<std::string>());
    }
  }
  auto devices = nlohmann::json::parse(st.column_text(12), nullptr, false);
  n.devices = devices.is_array() ? devices : nlohmann::json::array();
  return n;
}

void registry::add(const node_record& node) {
  std::lock_guard lock(mutex_);
  common::transaction tx(db_);
  auto exists = db_.prepare("SELECT 1 FROM beehives WHERE node_name = ?1");
  exists.bind(1, node.node_name);
  if (exists.step()) {
    throw error(common::codes::NODE_EXISTS, "Node '" + node.node_name + "' already exists",
                {{"node", node.node_name},
                 {"hint", "remove it first: rbee setup remove-node --name " + node.node_name}});
  }
  auto st = db_.prepare(
      "INSERT INTO beehives (node_name, ssh_host, ssh_port, ssh_user, ssh_key_path, "
      "install_path, git_repo_url, git_branch, status, last_connected_unix, last_error, "
      "backends_json, devices_json) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, "
      "?13)");
  st.bind(1, node.node_name)
      .bind(2, node.ssh_host)
      .bind(3, node.ssh_port)
      .bind(4, node.ssh_user)
      .bind(5, node.ssh_key_path)
      .bind(6, node.install_path)
      .bind(7, node.git_repo_url)
      .bind(8, node.git_branch)
      .bind(9, node.status)
      .bind(10, node.last_connected_unix)
      .bind(11, node.last_error)
      .bind(12, nlohmann::json(node.backends).dump())
      .bind(13, node.devices.dump())
      .run();
  tx.commit();
}

std::optional<node_record> registry::get(const std::string& node_name) {
  std::lock_guard lock(mutex_);
  auto st = db_.prepare(std::string(select_columns) + " WHERE node_name = ?1");
  st.bind(1, node_name);
  if (!st.step()) return std::nullopt;
  return read_row(st);
}

std::vector<node_record> registry::list() {
  std::lock_guard lock(mutex_);
  auto st = db_.prepare(std::string(select_columns) + " ORDER BY node_name");
  std::vector<node_record> out;
  while (st.step()) out.push_back(read_row(st));
  return out;
}

bool registry::remove(const std::string& node_name) {
  std::lock_guard lock(mutex_);
  auto st = db_.prepare("DELETE FROM beehives WHERE node_name = ?1");
  st.bind(1, node_name).run();
  return db_.changes() > 0;
}

void registry::set_status(const std::string& node_name, const std::string& status,
                          const std::string& last_error,
                          std::optional<int64_t> last_connected_unix) {
  std::lock_guard lock(mutex_);
  auto st = db_.prepare(
      "UPDATE beehives SET status = ?2, last_error = ?3, "
      "last_connected_unix = COALESCE(?4, last_connected_unix) WHERE node_name = ?1");
  st.bind(1, node_name).bind(2, status).bind(3, last_error).bind(4, last_connected_unix).run();
}

void registry::set_capabilities(const std::string& node_name,
                                const std::vector<std::string>& backends,
                                const nlohmann::json& devices) {
  std::lock_guard lock(mutex_);
  auto st =
      db_.prepare("UPDATE beehives SET backends_json = ?2, devices_json = ?3 WHERE node_name = ?1");
  st.bind(1, node_name).bind(2, nlohmann::json(backends).dump()).bind(3, devices.dump()).run();
}

}  // namespace rbee::queen
