#include "api/hub_access.h"

#include <gtest/gtest.h>

#include "api/requests.h"
#include "common/errors.h"

namespace rbee::api {
namespace {

using nlohmann::json;

TEST(HubAccess, ReadsTheCallersEndpointAndToken) {
  auto hub = hub_access::from_json(
      {{"hub", {{"endpoint", "http://127.0.0.1:9000/mirror/"}, {"token", "hf_abc"}}}});
  EXPECT_EQ(hub.endpoint, "http://127.0.0.1:9000/mirror");
  EXPECT_EQ(hub.token, "hf_abc");
  EXPECT_EQ(hub.to_json(),
            (json{{"endpoint", "http://127.0.0.1:9000/mirror"}, {"token", "hf_abc"}}));

  EXPECT_TRUE(hub_access::from_json(json::object()).empty());
  EXPECT_TRUE(hub_access::from_json({{"hub", nullptr}}).empty());
  auto token_only = hub_access::from_json({{"hub", {{"token", "hf_x"}}}});
  EXPECT_EQ(token_only.to_json(), (json{{"token", "hf_x"}}));
}

// Errors name the field and never quote the token.
TEST(HubAccess, RefusesBadValuesWithoutQuotingTheToken) {
  auto refusal = [](const json& hub) -> common::http_error {
    try {
      hub_access::from_json({{"hub", hub}});
    } catch (const common::http_error& e) {
      return e;
    }
    ADD_FAILURE() << hub.dump() << " was accepted";
    return common::http_error(200, "", "");
  };
  EXPECT_EQ(refusal({{"endpoint", "ftp://mirror"}}).details.value("field", ""), "hub.endpoint");
  EXPECT_EQ(refusal({{"endpoint", "http://a b"}}).details.value("field", ""), "hub.endpoint");
  EXPECT_EQ(refusal("http://mirror").details.value("field", ""), "hub");

  auto bad_token = refusal({{"token", "hf_secret with space"}});
  EXPECT_EQ(bad_token.status, 400);
  EXPECT_EQ(bad_token.details.value("field", ""), "hub.token");
  EXPECT_EQ(std::string(bad_token.what()).find("hf_secret"), std::string::npos);
  EXPECT_EQ(bad_token.body().dump().find("hf_secret"), std::string::npos);
  EXPECT_EQ(
      refusal({{"token", std::string(max_hub_token_length + 1, 'a')}}).details.value("field", ""),
      "hub.token");
}

// A task carries the hub to the queen; its JSON (what may be logged) leaves it out.
TEST(HubAccess, ATaskReadsItsHubAndNeverWritesIt) {
  auto task = task_request::from_json(
      {{"model", "hf:org/repo:f.gguf"}, {"prompt", "p"}, {"hub", {{"token", "hf_secret"}}}});
  EXPECT_EQ(task.hub.token, "hf_secret");
  EXPECT_FALSE(task.to_json().contains("hub"));
  EXPECT_EQ(task.to_json().dump().find("hf_secret"), std::string::npos);
}

}  // namespace
}  // namespace rbee::api
