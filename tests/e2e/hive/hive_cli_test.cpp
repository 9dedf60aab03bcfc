// The rbee-hive command line: --version, detect, local catalog commands, and the refusal to
// listen on a public address without a token.
#include "hive_fixture.h"

namespace rbee::e2e::hive_test {
namespace {

class HiveCli : public hive_fixture {
 protected:
  std::map<std::string, std::string> env() const {
    return {{"RBEE_HOME", home.str()},
            {"RBEE_CONFIG", config_file.string()},
            {"HF_ENDPOINT", hub.url()}};
  }
};

TEST_F(HiveCli, VersionAndDetect) {
  auto version = run_cli("rbee-hive", {"--version"}, env());
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_TRUE(version.out.starts_with("rbee-hive 0.")) << version.out;

  auto detect = run_cli("rbee-hive", {"detect"}, env());
  EXPECT_EQ(detect.exit_code, 0) << detect.err;
  EXPECT_NE(detect.out.find("backends: cpu"), std::string::npos) << detect.out;
  EXPECT_NE(detect.out.find("cores"), std::string::npos);

  auto json_detect = run_cli("rbee-hive", {"detect", "--json"}, env());
  ASSERT_EQ(json_detect.exit_code, 0);
  auto caps = json::parse(json_detect.out);
  EXPECT_EQ(caps["backends"][0], "cpu");
  EXPECT_GT(caps["ram_total_bytes"].get<uint64_t>(), 0u);

  EXPECT_EQ(run_cli("rbee-hive", {"no-such-command"}, env()).exit_code, 2);
}

TEST_F(HiveCli, LocalModelsDownloadListRemove) {
  auto dl = run_cli("rbee-hive", {"models", "download", test_ref}, env());
  ASSERT_EQ(dl.exit_code, 0) << dl.err;
  EXPECT_NE(dl.err.find("Downloading " + test_file), std::string::npos) << dl.err;

  auto list = run_cli("rbee-hive", {"models", "list", "--json"}, env());
  ASSERT_EQ(list.exit_code, 0) << list.err;
  auto models = json::parse(list.out)["models"];
  ASSERT_EQ(models.size(), 1u);
  EXPECT_EQ(models[0]["quantization"], "Q4_K_M");
  EXPECT_EQ(models[0]["sha256"], hub.sha256(test_repo, test_file));
  std::string id = models[0]["id"];

  auto bad = run_cli("rbee-hive", {"models", "download", "hf:../../etc"}, env());
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("Invalid model reference"), std::string::npos) << bad.err;

  auto rm = run_cli("rbee-hive", {"models", "rm", id}, env());
  EXPECT_EQ(rm.exit_code, 0) << rm.err;
  EXPECT_NE(rm.out.find("removed"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(models[0]["local_path"].get<std::string>()));
  auto rm_again = run_cli("rbee-hive", {"models", "rm", id}, env());
  EXPECT_EQ(rm_again.exit_code, 1);
  EXPECT_NE(rm_again.err.find("not in the catalog"), std::string::npos);
}

TEST_F(HiveCli, RefusesAPublicAddressWithoutAToken) {
  auto r = run_cli("rbee-hive", {"daemon", "--addr", "0.0.0.0:" + std::to_string(free_port())},
                   env(), "", 20s);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("RBEE_HIVE_TOKEN"), std::string::npos) << r.err;

  auto bad_addr = run_cli("rbee-hive", {"daemon", "--addr", "127.0.0.1:notaport"}, env(), "", 20s);
  EXPECT_NE(bad_addr.exit_code, 0);
}

}  // namespace
}  // namespace rbee::e2e::hive_test
