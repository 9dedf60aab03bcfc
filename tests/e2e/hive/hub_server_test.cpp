// The stand-in hub behaves like the real one where the hive depends on it: headers, Range,
// redirects, the model API and injected faults.
#include "harness/hub_server.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "common/log.h"

namespace rbee::e2e {
namespace {

const std::filesystem::path model =
    std::filesystem::path(RBEE_SHARED_MODELS_DIR) / "stories260K.gguf";
const std::string repo = "karpathy/stories";
const std::string file = "stories260K.gguf";

std::string file_bytes() {
  std::ifstream in(model, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class HubServer : public ::testing::Test {
 protected:
  void SetUp() override {
    hub.add_file(repo, file, model);
    hub.start();
  }
  httplib::Client client() { return httplib::Client("127.0.0.1", hub.port()); }
  hub_server hub;
};

TEST_F(HubServer, HeadGivesSizeAndLfsHash) {
  auto c = client();
  auto res = c.Head(("/" + repo + "/resolve/main/" + file).c_str());
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  auto size = std::to_string(std::filesystem::file_size(model));
  EXPECT_EQ(res->get_header_value("X-Linked-Size"), size);
  EXPECT_EQ(res->get_header_value("Content-Length"), size);
  std::string quoted_sha = fmt::format("\"{}\"", common::sha256_hex(file_bytes()));
  EXPECT_EQ(res->get_header_value("X-Linked-Etag"), quoted_sha);
  EXPECT_EQ(hub.sha256(repo, file), common::sha256_hex(file_bytes()));
}

TEST_F(HubServer, ServesRangesAndRecordsThem) {
  auto c = client();
  auto res = c.Get(("/" + repo + "/resolve/main/" + file).c_str(), {{"Range", "bytes=1000-"}});
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 206);
  EXPECT_EQ(res->body, file_bytes().substr(1000));
  auto gets = hub.downloads(repo, file);
  ASSERT_EQ(gets.size(), 1u);
  EXPECT_EQ(gets[0].range, "bytes=1000-");
}

TEST_F(HubServer, DropsTheConnectionAtTheInjectedOffset) {
  hub.set_fault(repo, file, {.drop_at_byte = 500000, .drop_attempts = 1});
  auto c = client();
  std::string got;
  auto res = c.Get(("/" + repo + "/resolve/main/" + file).c_str(), [&](const char* data, size_t n) {
    got.append(data, n);
    return true;
  });
  EXPECT_FALSE(res && res->status == 200 && got.size() == file_bytes().size());
  EXPECT_EQ(got.size(), 500000u);
  // The second attempt is served in full.
  auto again = c.Get(("/" + repo + "/resolve/main/" + file).c_str());
  ASSERT_TRUE(again);
  EXPECT_EQ(again->body, file_bytes());
}

TEST_F(HubServer, InjectedStatusesModelApiAndRedirects) {
  auto c = client();
  hub.set_fault(repo, file, {.status = 403});
  EXPECT_EQ(c.Get(("/" + repo + "/resolve/main/" + file).c_str())->status, 403);
  hub.clear_fault(repo, file);
  EXPECT_EQ(c.Get("/nobody/none/resolve/main/x.gguf")->status, 404);

  auto listing = c.Get(("/api/models/" + repo).c_str());
  ASSERT_TRUE(listing);
  EXPECT_EQ(listing->status, 200);
  EXPECT_NE(listing->body.find("\"rfilename\":\"stories260K.gguf\""), std::string::npos);
  EXPECT_EQ(c.Get("/api/models/nobody/none")->status, 404);

  hub.use_redirects(true);
  auto redirect = c.Get(("/" + repo + "/resolve/main/" + file).c_str());
  ASSERT_TRUE(redirect);
  EXPECT_EQ(redirect->status, 302);
  EXPECT_EQ(redirect->get_header_value("Location"), "/cdn/" + repo + "/" + file);
  EXPECT_FALSE(redirect->get_header_value("X-Linked-Etag").empty());

  hub.require_token("hf_secret");
  EXPECT_EQ(c.Get(("/api/models/" + repo).c_str())->status, 401);
  EXPECT_EQ(c.Get(("/api/models/" + repo).c_str(), {{"Authorization", "Bearer hf_secret"}})->status,
            200);
}

}  // namespace
}  // namespace rbee::e2e
