// The queen's OpenAI API driven by real clients from npm (scenario 14 of spec/test-001.md and
// issue 15): the stock `openai` SDK and the Vercel AI SDK's OpenAI-compatible provider. The
// packages are installed at set-up time (scripts/install-test-clients.sh, run by `make test`)
// into .test-clients/; the tests reach nothing beyond loopback.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "gguf/gguf.h"
#include "queen/queen_fixture.h"

namespace rbee::e2e {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

const fs::path clients_dir = fs::path(RBEE_SOURCE_DIR) / ".test-clients" / "node_modules";
const fs::path scripts_dir = fs::path(RBEE_SOURCE_DIR) / "tests/e2e/openai";

// A queen with an API key, a client script and where its packages are.
class OpenAiClients : public ::testing::Test {
 protected:
  void SetUp() override {
    node_ = find_in_path("node");
    if (!node_) GTEST_SKIP() << "node is not installed (scripts/install-deps.sh installs it)";
    if (!have_hive_and_worker()) GTEST_SKIP() << "rbee-hive / llm-worker-rbee are not built";
    ASSERT_TRUE(fs::exists(clients_dir))
        << clients_dir << " is missing: run scripts/install-test-clients.sh (make test does)";
    // Node resolves a script's imports from its own folder upwards.
    fs::create_directory_symlink(clients_dir, work_.path() / "node_modules");
    q_.start({}, {{"RBEE_API_KEY", api_key}});
  }

  // Runs tests/e2e/openai/<script> with node; it prints "all checks passed" at the end.
  void run_script(const std::string& script, std::map<std::string, std::string> env) {
    fs::copy_file(scripts_dir / script, work_.path() / script);
    env["RBEE_OPENAI_BASE_URL"] = q_.url() + "/v1";
    env["RBEE_OPENAI_KEY"] = api_key;
    auto r = run_cli(node_->string(), {(work_.path() / script).string()}, env, "", 300s);
    EXPECT_EQ(r.exit_code, 0) << "stdout:\n"
                              << r.out << "\nstderr:\n"
                              << r.err << "\nqueen log:\n"
                              << q_.queen().log_text();
    EXPECT_NE(r.out.find("all checks passed"), std::string::npos) << r.out;
  }

  // A random-weight model whose GGUF carries `template_file` as its chat template.
  std::string synth_model_with_template(const std::string& template_file) {
    const auto model = work_.path() / "tools-model.gguf";
    auto r =
        run_cli("rbee-engine", {"synth", "--shape", "tiny", "--type", "q8_0", "--chat-template",
                                (scripts_dir / template_file).string(), "-o", model.string()});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return "file:" + model.string();
  }

  // stories260K as a model that ships the ChatML template (the published text, as the engine's
  // template tests hold it): rendered by rbee's Jinja engine, not by the no-template fallback.
  std::string stories_with_chatml_template() {
    std::ifstream in(fs::path(RBEE_SOURCE_DIR) /
                     "tests/engine/data/chat_templates/templates/chatml.jinja");
    std::stringstream text;
    text << in.rdbuf();
    const auto source = gguf::file::open(stories_model_path());
    gguf::writer w;
    for (const auto& entry : source.metadata()) w.set(entry);
    w.set_string("tokenizer.chat_template", text.str());
    for (const auto& t : source.tensors())
      w.add_tensor(t.name, t.type, t.shape, {t.data, t.n_bytes});
    const auto path = work_.path() / "stories-chatml.gguf";
    w.write(path.string());
    return "file:" + path.string();
  }

  static constexpr const char* api_key = "sdk-key-0123456789";
  std::optional<fs::path> node_;
  temp_home work_;
  queen_fixture q_;
};

TEST_F(OpenAiClients, StockSdkGetsPeerDefaultsLogprobsChoicesAndClearErrors) {
  run_script("openai_sdk.mjs",
             {{"RBEE_MODEL", stories_model_ref()},
              {"RBEE_GOLDEN", golden_continuation("Once upon a time")},
              {"RBEE_CHAT_GOLDEN", (scripts_dir / "golden-chat-stories260K.json").string()},
              {"RBEE_CHATML_MODEL", stories_with_chatml_template()}});
}

TEST_F(OpenAiClients, StockSdkToolRoundTripAndStructuredOutputs) {
  run_script("openai_tools.mjs", {{"RBEE_MODEL", synth_model_with_template("tools_template.jinja")},
                                  {"RBEE_TEXT_MODEL", stories_model_ref()}});
}

TEST_F(OpenAiClients, VercelAiSdkStreamsAToolCall) {
  run_script("vercel_ai.mjs", {{"RBEE_MODEL", synth_model_with_template("tools_template.jinja")}});
}

}  // namespace
}  // namespace rbee::e2e
