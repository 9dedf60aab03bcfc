#pragma once
// The queen's node registry (SPEC §3 "beehives"): one SQLite file ($RBEE_HOME/beehives.db, WAL,
// versioned schema). The built-in node `localhost` is always present and needs no SSH.

#include <cstdint>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/node_spec.h"

#include "common/sqlite.h"

namespace rbee::queen {

inline constexpr std::string_view localhost_node = "localhost";

// A node as added (api::node_spec) plus what the queen learns of it.
struct node_record : api::node_spec {
  std::string status = "unknown";  // unknown | reachable | unreachable | running | stopped
  int64_t last_connected_unix = 0;
  std::string last_error;
  std::vector<std::string> backends;
  nlohmann::json devices = nlohmann::json::array();

  bool is_local() const { return node_name == localhost_node; }
};

// {node_name, ssh_host, ...} as the list API returns it.
nlohmann::json to_json(const node_record& node);

class registry {
 public:
  // Opens (creating and migrating) the database and makes sure `localhost` exists, with
  // local_install_path (the queen's own directory) as its install path.
  registry(const std::filesystem::path& db_path, const std::string& local_install_path);

  // Throws queen::error NODE_EXISTS when the name is taken.
  void add(const node_record& node);
  std::optional<node_record> get(const std::string& node_name);
  std::vector<node_record> list();
  // False when there was no such node.
  bool remove(const std::string& node_name);
  void set_status(const std::string& node_name, const std::string& status,
                  const std::string& last_error, std::optional<int64_t> last_connected_unix);
  void set_capabilities(const std::string& node_name, const std::vector<std::string>& backends,
                        const nlohmann::json& devices);

 private:
  node_record read_row(common::statement& st);

  std::mutex mutex_;
  common::database db_;
};

}  // namespace rbee::queen
