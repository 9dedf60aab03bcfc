#include "queen/registry.h"

#include <gtest/gtest.h>

#include "queen/http_edge.h"

#include <filesystem>

#include "common/errors.h"
#include "common/secrets.h"

namespace rbee::queen {
namespace {

namespace fs = std::filesystem;

class RegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::temp_directory_path() / ("rbee-registry-" + common::random_token(6));
    fs::create_directories(dir);
  }
  void TearDown() override { fs::remove_all(dir); }
  fs::path db() const { return dir / "beehives.db"; }

  static node_record workstation() {
    node_record n;
    n.node_name = "workstation";
    n.ssh_host = "10.0.0.5";
    n.ssh_user = "vince";
    n.ssh_key_path = "/home/vince/.ssh/id_ed25519";
    n.install_path = "/opt/rbee";
    n.status = "reachable";
    n.last_connected_unix = 1700000000;
    return n;
  }

  fs::path dir;
};

TEST_F(RegistryTest, LocalhostIsBuiltIn) {
  registry r(db(), "/usr/local/bin");
  auto local = r.get("localhost");
  ASSERT_TRUE(local);
  EXPECT_TRUE(local->is_local());
  EXPECT_EQ(local->install_path, "/usr/local/bin");
  EXPECT_EQ(r.list().size(), 1u);
}

TEST_F(RegistryTest, AddGetListRemove) {
  {
    registry r(db(), "/bin");
    r.add(workstation());
    auto n = r.get("workstation");
    ASSERT_TRUE(n);
    EXPECT_EQ(n->ssh_host, "10.0.0.5");
    EXPECT_EQ(n->ssh_port, 22);
    EXPECT_EQ(n->ssh_user, "vince");
    EXPECT_EQ(n->ssh_key_path, "/home/vince/.ssh/id_ed25519");
    EXPECT_EQ(n->install_path, "/opt/rbee");
    EXPECT_EQ(n->last_connected_unix, 1700000000);
    auto all = r.list();
    ASSERT_EQ(all.size(), 2u);
    EXPECT_EQ(all[0].node_name, "localhost");
    EXPECT_EQ(all[1].node_name, "workstation");
  }
  // A fresh process sees the same file.
  registry again(db(), "/bin");
  ASSERT_TRUE(again.get("workstation"));
  EXPECT_TRUE(again.remove("workstation"));
  EXPECT_FALSE(again.remove("workstation"));
  EXPECT_FALSE(again.get("workstation"));
}

TEST_F(RegistryTest, DuplicateNameIsNodeExistsAndChangesNothing) {
  registry r(db(), "/bin");
  r.add(workstation());
  auto other = workstation();
  other.ssh_host = "10.9.9.9";
  try {
    r.add(other);
    FAIL() << "expected NODE_EXISTS";
  } catch (const error& e) {
    EXPECT_EQ(to_http_error(e).status, 409);
    EXPECT_EQ(e.code, "NODE_EXISTS");
    EXPECT_NE(e.message.find("already exists"), std::string::npos);
    EXPECT_NE(e.details.value("hint", "").find("remove-node"), std::string::npos);
  }
  EXPECT_EQ(r.get("workstation")->ssh_host, "10.0.0.5");
}

TEST_F(RegistryTest, StatusAndCapabilitiesAreStored) {
  registry r(db(), "/bin");
  r.add(workstation());
  r.set_status("workstation", "unreachable", "timed out", std::nullopt);
  auto n = r.get("workstation");
  EXPECT_EQ(n->status, "unreachable");
  EXPECT_EQ(n->last_error, "timed out");
  EXPECT_EQ(n->last_connected_unix, 1700000000);
  r.set_status("workstation", "reachable", "", 1700000100);
  r.set_capabilities("workstation", {"cpu", "cuda"},
                     nlohmann::json::array({{{"backend", "cuda"}, {"device", 0}}}));
  n = r.get("workstation");
  EXPECT_EQ(n->last_connected_unix, 1700000100);
  EXPECT_EQ(n->backends, (std::vector<std::string>{"cpu", "cuda"}));
  EXPECT_EQ(n->devices[0]["backend"], "cuda");
  auto j = to_json(*n);
  EXPECT_EQ(j["node_name"], "workstation");
  EXPECT_EQ(j["status"], "reachable");
}

TEST_F(RegistryTest, SchemaIsVersionedAndWal) {
  { registry r(db(), "/bin"); }
  auto raw = common::database::open(db());
  EXPECT_EQ(raw.user_version(), 1);
  auto st = raw.prepare("PRAGMA journal_mode");
  ASSERT_TRUE(st.step());
  EXPECT_EQ(st.column_text(0), "wal");
}

}  // namespace
}  // namespace rbee::queen
