#include "common/config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <set>

namespace rbee::common {
namespace {

namespace fs = std::filesystem;

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root = fs::temp_directory_path() /
           ("rbee-config-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(root / "home");
    sources.home_dir = root / "home";
    sources.system_config = root / "etc" / "config.toml";
    sources.getenv = [this](std::string_view name) -> std::optional<std::string> {
      auto it = env.find(std::string(name));
      if (it == env.end()) return std::nullopt;
      return it->second;
    };
  }
  void TearDown() override { fs::remove_all(root); }

  fs::path write(const fs::path& p, const std::string& text) {
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
    return p;
  }
  fs::path user_file() const { return root / "home" / ".config" / "rbee" / "config.toml"; }

  fs::path root;
  std::map<std::string, std::string> env;
  config_sources sources;
};

TEST_F(ConfigTest, DefaultsWhenNothingIsSet) {
  auto c = config::load({}, sources);
  EXPECT_EQ(c.queen_url(), "http://127.0.0.1:8080");
  EXPECT_EQ(c.hf_endpoint(), "https://huggingface.co");
  EXPECT_EQ(c.api_key(), std::nullopt);
  EXPECT_TRUE(c.api_keys().empty());
  EXPECT_EQ(c.queen_port(), 8080);
  EXPECT_EQ(c.hive_port(), 9200);
  EXPECT_EQ(c.worker_idle_timeout(), std::chrono::seconds(300));
  EXPECT_EQ(c.hive_health_interval(), std::chrono::seconds(30));
  EXPECT_EQ(c.loading_timeout(), std::chrono::seconds(300));
  EXPECT_EQ(c.ram_limit_bytes(), std::nullopt);
  EXPECT_EQ(c.log_level(), "info");
  EXPECT_EQ(c.source("queen.url"), config_source::default_value);
  EXPECT_EQ(c.source("hf.token"), config_source::unset);
  EXPECT_TRUE(c.file().empty());
}

TEST_F(ConfigTest, FlagBeatsEnvBeatsFileBeatsDefault) {
  write(user_file(),
        "queen.url = \"http://file:1\"\n[hive]\nport = 9300\nhealth_interval_s = 10\n"
        "[queen]\nqueue_size = 5\n");
  env["RBEE_QUEEN_URL"] = "http://env:2";
  env["RBEE_HIVE_PORT"] = "9400";
  auto c = config::load({{"queen.url", "http://flag:3"}}, sources);
  EXPECT_EQ(c.queen_url(), "http://flag:3");
  EXPECT_EQ(c.source("queen.url"), config_source::flag);
  EXPECT_EQ(c.hive_port(), 9400);
  EXPECT_EQ(c.source("hive.port"), config_source::env);
  EXPECT_EQ(c.hive_health_interval(), std::chrono::seconds(10));
  EXPECT_EQ(c.source("hive.health_interval_s"), config_source::file);
  EXPECT_EQ(c.queue_size(), 5);
  EXPECT_EQ(c.worker_idle_timeout(), std::chrono::seconds(300));
  EXPECT_EQ(c.source("worker.idle_timeout_s"), config_source::default_value);
  EXPECT_EQ(c.file(), user_file());
}

TEST_F(ConfigTest, EmptyEnvVarCountsAsUnset) {
  env["RBEE_QUEEN_URL"] = "";
  EXPECT_EQ(config::load({}, sources).queen_url(), "http://127.0.0.1:8080");
}

TEST_F(ConfigTest, FileSearchOrderRbeeConfigThenUserThenSystem) {
  write(sources.system_config, "log = \"error\"\n");
  EXPECT_EQ(config::load({}, sources).log_level(), "error");
  EXPECT_EQ(config::load({}, sources).file(), sources.system_config);

  write(user_file(), "log = \"warn\"\n");
  EXPECT_EQ(config::load({}, sources).log_level(), "warn");

  auto explicit_file = write(root / "explicit.toml", "log = \"debug\"\n");
  env["RBEE_CONFIG"] = explicit_file.string();
  EXPECT_EQ(config::load({}, sources).log_level(), "debug");
  EXPECT_EQ(config::load({}, sources).file(), explicit_file);

  env["RBEE_CONFIG"] = (root / "missing.toml").string();
  EXPECT_THROW(config::load({}, sources), config_error);
}

TEST_F(ConfigTest, ApiKeysFromListAndSingleKey) {
  write(user_file(), "api_key = \"k-main\"\n[queen]\napi_keys = [\"k-a\", \"k-b\"]  # two\n");
  auto c = config::load({}, sources);
  EXPECT_EQ(c.api_key(), "k-main");
  EXPECT_EQ(c.api_keys(), (std::vector<std::string>{"k-a", "k-b", "k-main"}));
  env["RBEE_API_KEYS"] = "x, y";
  EXPECT_EQ(config::load({}, sources).api_keys(), (std::vector<std::string>{"x", "y", "k-main"}));
}

TEST_F(ConfigTest, HomeIsUserExpanded) {
  env["RBEE_HOME"] = "/srv/rbee";
  EXPECT_EQ(config::load({}, sources).rbee_home(), fs::path("/srv/rbee"));
}

TEST_F(ConfigTest, InvalidFileNamesFileAndLine) {
  auto p = write(user_file(), "# comment\nlog = \"info\"\nqueen.port = eighty\n");
  try {
    config::load({}, sources);
    FAIL() << "expected config_error";
  } catch (const config_error& e) {
    std::string what = e.what();
    EXPECT_NE(what.find(p.string() + ":3:"), std::string::npos) << what;
    EXPECT_NE(what.find("eighty"), std::string::npos) << what;
  }
}

TEST_F(ConfigTest, UnknownKeysAreErrors) {
  write(user_file(), "[queen]\nprot = 1\n");
  try {
    config::load({}, sources);
    FAIL();
  } catch (const config_error& e) {
    EXPECT_NE(std::string(e.what()).find("queen.prot"), std::string::npos) << e.what();
  }
  fs::remove(user_file());
  EXPECT_THROW(config::load({{"nope", "1"}}, sources), config_error);
}

TEST_F(ConfigTest, BadValueInEnvNamesTheVariable) {
  env["RBEE_QUEEN_PORT"] = "80a";
  auto c = config::load({}, sources);
  try {
    c.queen_port();
    FAIL();
  } catch (const config_error& e) {
    EXPECT_NE(std::string(e.what()).find("RBEE_QUEEN_PORT"), std::string::npos) << e.what();
  }
  env["RBEE_QUEEN_PORT"] = "70000";
  EXPECT_THROW(config::load({}, sources).queen_port(), config_error);
}

TEST(ConfigParser, TomlSubset) {
  auto m = parse_config_text(
      "# top\n"
      "a = \"x # not a comment\"  # comment\n"
      "b = 42\n"
      "c = true\n"
      "d = 'lit\\eral'\n"
      "e = -1.5e3\n"
      "f = 1_000\n"
      "\n"
      "[sec]\r\n"
      "  g = \"tab\\there \\\"q\\\"\"\r\n"
      "h = []\n",
      "t.toml");
  EXPECT_EQ(m["a"], "x # not a comment");
  EXPECT_EQ(m["b"], "42");
  EXPECT_EQ(m["c"], "true");
  EXPECT_EQ(m["d"], "lit\\eral");
  EXPECT_EQ(m["e"], "-1.5e3");
  EXPECT_EQ(m["f"], "1000");
  EXPECT_EQ(m["sec.g"], "tab\there \"q\"");
  EXPECT_EQ(m["sec.h"], "");
}

TEST(ConfigParser, ErrorsCarryLineNumbers) {
  auto error_of = [](std::string_view text) {
    try {
      parse_config_text(text, "f.toml");
    } catch (const config_error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(error_of("a = \"x\"\nb = \"unterminated\n").substr(0, 9), "f.toml:2:");
  EXPECT_EQ(error_of("[sec\n").substr(0, 9), "f.toml:1:");
  EXPECT_EQ(error_of("\n\njust words\n").substr(0, 9), "f.toml:3:");
  EXPECT_EQ(error_of("a = 1\na = 2\n").substr(0, 9), "f.toml:2:");
  EXPECT_EQ(error_of("a = \"x\" y\n").substr(0, 9), "f.toml:1:");
  EXPECT_EQ(error_of("a = [1, 2]\n").substr(0, 9), "f.toml:1:");
}

TEST(ConfigKeys, EveryKeyIsDocumentedAndUnique) {
  std::set<std::string_view> names, envs;
  for (const auto& k : config_keys()) {
    EXPECT_FALSE(k.doc.empty()) << k.name;
    EXPECT_TRUE(names.insert(k.name).second) << k.name;
    if (!k.env_var.empty()) {
      EXPECT_TRUE(envs.insert(k.env_var).second) << k.env_var;
    }
  }
  EXPECT_NE(find_config_key("queen.url"), nullptr);
  EXPECT_EQ(find_config_key("queen.url")->env_var, "RBEE_QUEEN_URL");
  EXPECT_EQ(find_config_key("hf.token")->env_var, "HF_TOKEN");
  EXPECT_EQ(env_var_for("worker.token"), "RBEE_WORKER_TOKEN");
  EXPECT_THROW(env_var_for("nope"), std::out_of_range);
}

TEST(ConfigKeys, EveryKeyHasAnEnvVarAndAOneLineDoc) {
  for (const auto& k : config_keys()) {
    EXPECT_FALSE(k.env_var.empty()) << k.name;
    EXPECT_EQ(k.doc.find('\n'), std::string_view::npos) << k.name;
    EXPECT_TRUE(k.doc.ends_with(".")) << k.name;
  }
  for (std::string_view secret : {"api_key", "hive.token", "worker.token", "hf.token"}) {
    ASSERT_NE(find_config_key(secret), nullptr) << secret;
    EXPECT_TRUE(find_config_key(secret)->secret) << secret;
  }
}

TEST(ConfigKeys, DocsListEveryKeyAndEnvVar) {
  std::ifstream in(fs::path(RBEE_SOURCE_DIR) / "docs" / "configuration.md");
  ASSERT_TRUE(in) << "docs/configuration.md is missing";
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (const auto& k : config_keys()) {
    EXPECT_NE(text.find("`" + std::string(k.name) + "`"), std::string::npos)
        << k.name << " is not in docs/configuration.md";
    EXPECT_NE(text.find("`" + std::string(k.env_var) + "`"), std::string::npos)
        << k.env_var << " is not in docs/configuration.md";
  }
}

TEST_F(ConfigTest, HiveAndWorkerKeys) {
  auto c = config::load({}, sources);
  EXPECT_EQ(c.download_attempts(), 6);
  EXPECT_EQ(c.download_backoff(), std::chrono::milliseconds(1000));
  EXPECT_EQ(c.download_stall_timeout(), std::chrono::seconds(60));
  EXPECT_EQ(c.hive_report_interval(), std::chrono::milliseconds(15000));
  EXPECT_EQ(c.worker_stop_grace(), std::chrono::milliseconds(30000));
  EXPECT_EQ(c.disk_limit_bytes(), std::nullopt);
  EXPECT_EQ(c.worker_binary(), std::nullopt);
  EXPECT_EQ(c.hive_token(), std::nullopt);
  EXPECT_EQ(c.worker_token(), std::nullopt);

  write(user_file(), "[hive]\ntoken = \"\"\ndownload_attempts = 2\n");
  env["RBEE_DOWNLOAD_BACKOFF_MS"] = "5";
  env["RBEE_DISK_LIMIT"] = "1000";
  env["RBEE_WORKER_TOKEN"] = "w-secret";
  env["RBEE_HIVE_TOKEN_FILE"] = "~/hive.token";
  c = config::load({}, sources);
  EXPECT_EQ(c.hive_token(), std::nullopt) << "an empty token is no token";
  EXPECT_EQ(c.download_attempts(), 2);
  EXPECT_EQ(c.download_backoff(), std::chrono::milliseconds(5));
  EXPECT_EQ(c.disk_limit_bytes(), 1000u);
  EXPECT_EQ(c.worker_token(), "w-secret");
  EXPECT_EQ(c.source("worker.token"), config_source::env);
  EXPECT_FALSE(c.hive_token_file()->string().starts_with("~")) << "user-expanded";

  env["RBEE_DOWNLOAD_ATTEMPTS"] = "0";
  try {
    config::load({}, sources).download_attempts();
    FAIL();
  } catch (const config_error& e) {
    EXPECT_NE(std::string(e.what()).find("RBEE_DOWNLOAD_ATTEMPTS"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace rbee::common
