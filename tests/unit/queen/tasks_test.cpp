#include "queen/tasks.h"

#include <gtest/gtest.h>

#include "common/errors.h"

namespace rbee::queen {
namespace {

using nlohmann::json;

std::string rejected_field(const json& body) {
  try {
    parse_task_request(body);
  } catch (const common::http_error& e) {
    EXPECT_EQ(e.status, 400);
    EXPECT_EQ(e.code, "INVALID_REQUEST");
    return e.details.value("field", "");
  }
  return "<accepted>";
}

TEST(TaskRequest, ParsesEveryField) {
  auto r = parse_task_request({{"node", "localhost"},
                               {"model", "file:/m.gguf"},
                               {"prompt", "Once upon a time"},
                               {"max_tokens", 20},
                               {"temperature", 0.0},
                               {"top_p", 0.9},
                               {"top_k", 40},
                               {"min_p", 0.05},
                               {"repeat_penalty", 1.1},
                               {"seed", 7},
                               {"stop", {".", "!"}},
                               {"backend", "cuda"},
                               {"device", 1}});
  EXPECT_EQ(*r.node, "localhost");
  EXPECT_EQ(r.max_tokens, 20);
  EXPECT_EQ(*r.sampling.top_k, 40);
  EXPECT_EQ(*r.sampling.seed, 7);
  EXPECT_EQ(r.backend, "cuda");
  EXPECT_EQ(r.device, "1");
  EXPECT_EQ(r.task_id.rfind("task-", 0), 0u);
  auto body = worker_inference_body(r);
  EXPECT_EQ(body["job_id"], r.task_id);
  EXPECT_EQ(body["prompt"], "Once upon a time");
  EXPECT_EQ(body["max_tokens"], 20);
  EXPECT_EQ(body["temperature"], 0.0);
  EXPECT_EQ(body["stop"], json({".", "!"}));
  EXPECT_FALSE(body.contains("messages"));
}

TEST(TaskRequest, OptionalSamplingFieldsStayUnsetSoTheWorkerDefaultsApply) {
  auto r = parse_task_request({{"model", "m"}, {"prompt", "x"}});
  EXPECT_FALSE(r.node);
  EXPECT_EQ(r.max_tokens, 256);
  auto body = worker_inference_body(r);
  EXPECT_FALSE(body.contains("temperature"));
  EXPECT_FALSE(body.contains("seed"));
}

TEST(TaskRequest, InvalidFieldsAreNamed) {
  EXPECT_EQ(rejected_field({{"prompt", "x"}}), "model");
  EXPECT_EQ(rejected_field({{"model", ""}, {"prompt", "x"}}), "model");
  EXPECT_EQ(rejected_field({{"model", "m"}}), "prompt");
  EXPECT_EQ(rejected_field({{"model", "m"}, {"prompt", ""}}), "prompt");
  EXPECT_EQ(rejected_field({{"model", "m"}, {"prompt", "x"}, {"max_tokens", 0}}), "max_tokens");
  EXPECT_EQ(rejected_field({{"model", "m"}, {"prompt", "x"}, {"max_tokens", 10'000'000}}),
            "max_tokens");
  EXPECT_EQ(rejected_field({{"model", "m"}, {"prompt", "x"}, {"temperature", -1}}), "temperature");
  // Finding 12: what the worker refuses, the queen refuses before any cold start.
  EXPECT_EQ(rejected_field({{"model", "m"}, {"prompt", "x"}, {"seed", -1}}), "seed");
  EXPECT_EQ(rejected_field({{"model", "m"}, {"prompt", "x"}, {"repeat_penalty", 0.05}}),
            "repeat_penalty");
  EXPECT_EQ(rejected_field({{"model", "m"}, {"prompt", "x"}, {"top_p", "high"}}), "top_p");
  EXPECT_EQ(rejected_field({{"model", "m"}, {"prompt", "x"}, {"backend", "tpu"}}), "backend");
  EXPECT_EQ(rejected_field({{"model", "m"}, {"prompt", "x"}, {"stop", {1, 2}}}), "stop");
  EXPECT_EQ(rejected_field({{"model", "m"}, {"messages", json::array()}}), "messages");
  EXPECT_EQ(rejected_field({{"model", "m"}, {"messages", {{{"role", "user"}}}}}),
            "messages[0].content");
  EXPECT_EQ(rejected_field(
                {{"model", "m"},
                 {"messages",
                  {{{"role", "user"}, {"content", "x"}}, {{"role", "tool"}, {"content", "x"}}}}}),
            "messages[1].role");
  EXPECT_EQ(rejected_field({{"model", "m"}, {"messages", {"Hi"}}}), "messages[0]");
  EXPECT_EQ(rejected_field({{"model", "m"}, {"prompt", "x"}, {"chat_template", "chatml"}}),
            "chat_template");
  EXPECT_EQ(rejected_field({{"model", "m"},
                            {"messages", {{{"role", "user"}, {"content", "x"}}}},
                            {"chat_template", 5}}),
            "chat_template");
  EXPECT_EQ(rejected_field({{"model", 3}, {"prompt", "x"}}), "model");
}

TEST(TaskRequest, ModelReferencesMustHaveAKnownFormat) {
  auto with_model = [](const std::string& m) { return json{{"model", m}, {"prompt", "x"}}; };
  for (const char* ok : {"hf:org/repo", "hf:org/repo:sub/model-Q4_K_M.gguf", "file:/m/x.gguf",
                         "tinyllama-q4_k_m", "llama3:8b"}) {
    EXPECT_EQ(rejected_field(with_model(ok)), "<accepted>") << ok;
  }
  for (const char* bad : {"ftp://example.com/model.gguf", "http://hub/x.gguf", "hf:repo-only",
                          "hf:/repo", "file:relative.gguf", "../etc/passwd", "a b", "dir/model"}) {
    EXPECT_EQ(rejected_field(with_model(bad)), "model") << bad;
  }
}

TEST(TaskRequest, PromptAndMessagesAreCappedAt256KiB) {
  std::string big(256 * 1024 + 1, 'a');
  EXPECT_EQ(rejected_field({{"model", "m"}, {"prompt", big}}), "prompt");
  EXPECT_EQ(rejected_field({{"model", "m"}, {"prompt", big.substr(1)}}), "<accepted>");
  // The cap is on all message contents together, not per message.
  std::string half(128 * 1024 + 1, 'b');
  EXPECT_EQ(rejected_field(
                {{"model", "m"},
                 {"messages",
                  {{{"role", "user"}, {"content", half}}, {{"role", "user"}, {"content", half}}}}}),
            "messages");
}

TEST(TaskRequest, MessagesGoToTheWorkerForItsChatTemplate) {
  json messages = {{{"role", "system"}, {"content", "Be brief."}},
                   {{"role", "user"}, {"content", "Hi"}}};
  auto r = parse_task_request(
      {{"model", "m"}, {"messages", messages}, {"chat_template", "chatml"}, {"max_tokens", 4}});
  EXPECT_TRUE(r.prompt.empty());
  auto body = worker_inference_body(r);
  EXPECT_EQ(body["messages"], messages);
  EXPECT_EQ(body["chat_template"], "chatml");
  EXPECT_FALSE(body.contains("prompt"));
  EXPECT_EQ(body["max_tokens"], 4);

  // Without an override the worker uses the model's own template.
  auto own = worker_inference_body(parse_task_request({{"model", "m"}, {"messages", messages}}));
  EXPECT_EQ(own["messages"], messages);
  EXPECT_FALSE(own.contains("chat_template"));
}

}  // namespace
}  // namespace rbee::queen

namespace rbee::queen {
namespace {

TEST(Narration, ExtraFieldsNeverOverrideItsOwn) {
  auto e = narration("rbee-hive", "download_progress", "Downloading: 40%",
                     {{"type", "downloading"}, {"percent", 40}, {"node", "n"}});
  EXPECT_EQ(e["type"], "narration");
  EXPECT_EQ(e["actor"], "rbee-hive");
  EXPECT_EQ(e["action"], "download_progress");
  EXPECT_EQ(e["human"], "Downloading: 40%");
  EXPECT_EQ(e["percent"], 40);
  EXPECT_EQ(e["node"], "n");
}

}  // namespace
}  // namespace rbee::queen
