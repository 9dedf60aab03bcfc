#include "api/requests.h"

#include <gtest/gtest.h>

#include "common/errors.h"

namespace rbee::api {
namespace {

using nlohmann::json;

std::string rejected_field(const json& body) {
  try {
    task_request::from_json(body);
  } catch (const common::http_error& e) {
    EXPECT_EQ(e.status, 400);
    EXPECT_EQ(e.code, "INVALID_REQUEST");
    return e.details.value("field", "");
  }
  return "<accepted>";
}

TEST(GenerationRequest, OutputConstraintRoundTripsAndRefusesBadSchemas) {
  const json schema = {{"type", "object"},
                       {"properties", {{"a", {{"type", "integer"}}}}},
                       {"required", {"a"}},
                       {"additionalProperties", false}};
  auto g = generation_request::from_json(
      {{"prompt", "p"}, {"constraint", {{"type", "json_schema"}, {"schema", schema}}}});
  ASSERT_TRUE(g.constraint);
  EXPECT_EQ(g.constraint->type, output_constraint::kind::json_schema);
  EXPECT_EQ(g.constraint->schema, schema);
  json body;
  g.to_json(body);
  EXPECT_EQ(generation_request::from_json(body).constraint->to_json(), g.constraint->to_json());
  EXPECT_EQ(
      generation_request::from_json({{"prompt", "p"}, {"constraint", {{"type", "json_object"}}}})
          .constraint->type,
      output_constraint::kind::json_object);
  EXPECT_FALSE(generation_request::from_json({{"prompt", "p"}}).constraint);

  auto base = [](json constraint) {
    return json{{"model", "file:/m.gguf"}, {"prompt", "p"}, {"constraint", constraint}};
  };
  EXPECT_EQ(rejected_field(base("json")), "constraint");
  EXPECT_EQ(rejected_field(base({{"type", "regex"}})), "constraint.type");
  EXPECT_EQ(rejected_field(base({{"type", "json_schema"}})), "constraint.schema");
  EXPECT_EQ(rejected_field(base({{"type", "json_schema"}, {"schema", schema}, {"strict", 1}})),
            "constraint.strict");
  try {
    task_request::from_json(
        base({{"type", "json_schema"},
              {"schema", {{"properties", {{"age", {{"type", "integer"}, {"minimum", 0}}}}}}}}));
    FAIL() << "a schema with minimum was accepted";
  } catch (const common::http_error& e) {
    EXPECT_EQ(e.details.value("field", ""), "constraint.schema");
    EXPECT_EQ(e.details.value("keyword", ""), "minimum");
    EXPECT_EQ(e.details.value("schema_path", ""), "/properties/age");
    EXPECT_NE(e.message.find("minimum"), std::string::npos) << e.message;
  }
}

TEST(TaskRequest, ParsesEveryField) {
  auto r = task_request::from_json({{"node", "localhost"},
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
  EXPECT_EQ(r.generation.max_tokens, 20);
  EXPECT_EQ(*r.generation.sampling.top_k, 40);
  EXPECT_EQ(*r.generation.sampling.seed, 7);
  EXPECT_EQ(r.backend, "cuda");
  EXPECT_EQ(r.device, 1);
  EXPECT_EQ(r.task_id.rfind("task-", 0), 0u);
  auto body = r.for_worker().to_json();
  EXPECT_EQ(body["job_id"], r.task_id);
  EXPECT_EQ(body["prompt"], "Once upon a time");
  EXPECT_EQ(body["max_tokens"], 20);
  EXPECT_EQ(body["temperature"], 0.0);
  EXPECT_EQ(body["stop"], json({".", "!"}));
  EXPECT_FALSE(body.contains("messages"));
}

TEST(TaskRequest, OptionalSamplingFieldsStayUnsetSoTheWorkerDefaultsApply) {
  auto r = task_request::from_json({{"model", "m"}, {"prompt", "x"}});
  EXPECT_FALSE(r.node);
  EXPECT_FALSE(r.generation.max_tokens) << "the worker applies the default within its context";
  auto body = r.for_worker().to_json();
  EXPECT_FALSE(body.contains("max_tokens"));
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
                  {{{"role", "user"}, {"content", "x"}}, {{"role", "robot"}, {"content", "x"}}}}}),
            "messages[1].role");
  EXPECT_EQ(rejected_field({{"model", "m"}, {"messages", {"Hi"}}}), "messages[0]");
  EXPECT_EQ(rejected_field({{"model", "m"}, {"prompt", "x"}, {"chat_template", "chatml"}}),
            "chat_template");
  EXPECT_EQ(rejected_field({{"model", "m"},
                            {"messages", {{{"role", "user"}, {"content", "x"}}}},
                            {"chat_template", 5}}),
            "chat_template");
  EXPECT_EQ(rejected_field({{"model", 3}, {"prompt", "x"}}), "model");
  EXPECT_EQ(rejected_field({{"model", "m"}, {"prompt", "x"}, {"device", "cuda:0"}}), "device");
  EXPECT_EQ(rejected_field({{"model", "m"}, {"prompt", "x"}, {"device", -1}}), "device");
  EXPECT_EQ(rejected_field({{"model", "m"}, {"prompt", "x"}, {"stop", {""}}}), "stop");
  EXPECT_EQ(rejected_field({{"model", "m"}, {"prompt", "x"}, {"n", 0}}), "n");
  EXPECT_EQ(rejected_field({{"model", "m"}, {"prompt", "x"}, {"n", 17}}), "n");
  EXPECT_EQ(rejected_field({{"model", "m"}, {"prompt", "x"}, {"n", 1.5}}), "n");
  EXPECT_EQ(rejected_field({{"model", "m"}, {"prompt", "x"}, {"logprobs", 21}}), "logprobs");
  EXPECT_EQ(rejected_field({{"model", "m"}, {"prompt", "x"}, {"logprobs", true}}), "logprobs");
  EXPECT_EQ(rejected_field({{"model", "m"}, {"prompt", "x"}, {"logit_bias", {{"x", 1}}}}),
            "logit_bias");
}

TEST(TaskRequest, TheModelIsKeptAsItsCanonicalId) {
  EXPECT_EQ(task_request::from_json({{"model", "file:/m/./x.gguf"}, {"prompt", "x"}}).model,
            "file:/m/x.gguf");
  EXPECT_EQ(task_request::from_json({{"model", "hf:Org/Repo"}, {"prompt", "x"}}).model,
            "hf:Org/Repo");
  EXPECT_EQ(task_request::from_json({{"model", "m"}, {"prompt", "x"}, {"device", "2"}}).device, 2);
}

TEST(InferenceRequest, WhatTheQueenWritesTheWorkerReadsBackUnchanged) {
  auto task = task_request::from_json({{"model", "m"},
                                       {"messages", {{{"role", "user"}, {"content", "Hi"}}}},
                                       {"chat_template", "chatml"},
                                       {"max_tokens", 9},
                                       {"temperature", 0.5},
                                       {"seed", 3},
                                       {"presence_penalty", 0.25},
                                       {"logit_bias", {{"5", -100}}},
                                       {"n", 3},
                                       {"logprobs", 0},
                                       {"stop", {"\n"}}});
  auto back = inference_request::from_json(task.for_worker().to_json());
  EXPECT_EQ(back.job_id, task.task_id);
  ASSERT_EQ(back.generation.messages.size(), 1u);
  EXPECT_EQ(back.generation.messages[0].content, "Hi");
  EXPECT_EQ(back.generation.chat_template, "chatml");
  EXPECT_EQ(back.generation.max_tokens, 9);
  EXPECT_EQ(back.generation.sampling.temperature, 0.5);
  EXPECT_EQ(back.generation.sampling.seed, 3);
  EXPECT_EQ(back.generation.stop, task.generation.stop);
  EXPECT_EQ(back.generation.sampling.presence_penalty, 0.25);
  EXPECT_EQ(back.generation.sampling.logit_bias, task.generation.sampling.logit_bias);
  EXPECT_EQ(back.generation.n, 3);
  EXPECT_EQ(back.generation.logprobs, 0);
  // Unset stays unset: one choice, no log-probabilities, no max_tokens.
  auto plain = inference_request::from_json(
      task_request::from_json({{"model", "m"}, {"prompt", "x"}}).for_worker().to_json());
  EXPECT_EQ(plain.generation.n, 1);
  EXPECT_FALSE(plain.generation.logprobs);
  EXPECT_FALSE(plain.generation.max_tokens);
}

TEST(InferenceRequest, JobIdsArePlainOrGenerated) {
  EXPECT_EQ(inference_request::from_json({{"prompt", "x"}}).job_id.rfind("job-", 0), 0u);
  EXPECT_THROW(inference_request::from_json({{"prompt", "x"}, {"job_id", "a/b"}}),
               common::http_error);
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
            "messages[1].content");
}

TEST(TaskRequest, MessagesGoToTheWorkerForItsChatTemplate) {
  json messages = {{{"role", "system"}, {"content", "Be brief."}},
                   {{"role", "user"}, {"content", "Hi"}}};
  auto r = task_request::from_json(
      {{"model", "m"}, {"messages", messages}, {"chat_template", "chatml"}, {"max_tokens", 4}});
  EXPECT_TRUE(r.generation.prompt.empty());
  auto body = r.for_worker().to_json();
  EXPECT_EQ(body["messages"], messages);
  EXPECT_EQ(body["chat_template"], "chatml");
  EXPECT_FALSE(body.contains("prompt"));
  EXPECT_EQ(body["max_tokens"], 4);

  // Without an override the worker uses the model's own template.
  auto own =
      task_request::from_json({{"model", "m"}, {"messages", messages}}).for_worker().to_json();
  EXPECT_EQ(own["messages"], messages);
  EXPECT_FALSE(own.contains("chat_template"));
}

}  // namespace
}  // namespace rbee::api

namespace rbee::api {
namespace {

json tool_conversation() {
  return json::parse(R"({"model": "m",
    "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
               "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
    "messages": [
      {"role": "user", "content": "Weather in Paris?"},
      {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
        "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
      {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "22 C"}]})");
}

TEST(TaskRequest, ToolsAndToolMessagesTravelToTheWorker) {
  auto task = task_request::from_json(tool_conversation());
  const auto& g = task.generation;
  ASSERT_EQ(g.tools.size(), 1u);
  EXPECT_EQ(g.tools[0].name, "get_weather");
  EXPECT_EQ(g.tools[0].parameters["properties"]["city"]["type"], "string");
  ASSERT_EQ(g.messages.size(), 3u);
  ASSERT_EQ(g.messages[1].tool_calls.size(), 1u);
  EXPECT_EQ(g.messages[1].tool_calls[0].id, "call_1");
  EXPECT_EQ(g.messages[1].content, "");
  EXPECT_EQ(g.messages[2].tool_call_id, "call_1");
  EXPECT_EQ(g.messages[2].name, "get_weather");

  auto back = inference_request::from_json(task.for_worker().to_json()).generation;
  ASSERT_EQ(back.tools.size(), 1u);
  EXPECT_EQ(back.tools[0].description, "Weather");
  EXPECT_EQ(back.messages[1].tool_calls[0].arguments, R"({"city": "Paris"})");
  EXPECT_EQ(back.messages[2].tool_call_id, "call_1");
}

TEST(TaskRequest, MalformedToolsAndToolMessagesAreNamed) {
  auto with = [](const char* pointer, json value) {
    json body = tool_conversation();
    body[json::json_pointer(pointer)] = std::move(value);
    return body;
  };
  EXPECT_EQ(rejected_field(with("/tools", "all")), "tools");
  EXPECT_EQ(rejected_field(with("/tools/0/type", "code")), "tools[0]");
  EXPECT_EQ(rejected_field(with("/tools/0/function/name", "rm -rf /")), "tools[0].function.name");
  EXPECT_EQ(rejected_field(with("/tools/0/function/parameters", "x")),
            "tools[0].function.parameters");
  EXPECT_EQ(rejected_field(with("/messages/1/tool_calls/0/function/arguments", json::object())),
            "messages[1].tool_calls[0].function.arguments");
  EXPECT_EQ(rejected_field(with("/messages/1/tool_calls/0/id", 7)), "messages[1].tool_calls[0].id");
  EXPECT_EQ(rejected_field(with("/messages/0/tool_calls", json::array())),
            "messages[0].tool_calls");
  EXPECT_EQ(rejected_field(with("/messages/2/tool_call_id", "")), "messages[2].tool_call_id");
  json prompt_with_tools = tool_conversation();
  prompt_with_tools.erase("messages");
  prompt_with_tools["prompt"] = "x";
  EXPECT_EQ(rejected_field(prompt_with_tools), "tools");
}

TEST(TaskRequest, ASizeForTheWorkerItStartsIsChecked) {
  const json base = {{"model", "hf:org/repo"}, {"prompt", "x"}};
  json body = base;
  body.update({{"ctx", 4096}, {"slots", 4}, {"keep_alive_s", 600}});
  const auto r = task_request::from_json(body);
  EXPECT_EQ(r.worker.ctx, 4096);
  EXPECT_EQ(r.worker.slots, 4);
  EXPECT_EQ(r.worker.keep_alive_s, 600);
  EXPECT_EQ(task_request::from_json(r.to_json()).worker.slots, 4);
  EXPECT_FALSE(task_request::from_json(base).worker.ctx);
  for (const auto& [field, value] : std::vector<std::pair<std::string, json>>{
           {"ctx", 100}, {"ctx", "big"}, {"slots", 0}, {"slots", 1000}, {"keep_alive_s", -1}}) {
    json bad = base;
    bad[field] = value;
    EXPECT_EQ(rejected_field(bad), field) << bad.dump();
  }
}

TEST(TaskRequest, ALayerSplitAcrossDevicesIsCheckedAndRoundTrips) {
  const json base = {{"model", "hf:org/repo"}, {"prompt", "x"}};
  json body = base;
  body.update({{"devices", {0, 1}}, {"split", "layer"}});
  const auto r = task_request::from_json(body);
  EXPECT_EQ(r.worker.devices, (std::vector<int>{0, 1}));
  EXPECT_EQ(task_request::from_json(r.to_json()).worker.devices, (std::vector<int>{0, 1}));
  EXPECT_EQ(task_request::from_json(r.to_json()).worker.split, "layer");
  json tensor = base;
  tensor.update({{"devices", {0, 1}}, {"split", "tensor"}});
  EXPECT_EQ(task_request::from_json(tensor).worker.split, "tensor");
  EXPECT_EQ(task_request::from_json(task_request::from_json(tensor).to_json()).worker.split,
            "tensor");
  EXPECT_TRUE(task_request::from_json(base).worker.devices.empty());
  json none = base;
  none["split"] = "none";
  EXPECT_TRUE(task_request::from_json(none).worker.devices.empty());
  for (const auto& [field, extra] : std::vector<std::pair<std::string, json>>{
           {"split", {{"devices", {0, 1}}}},                    // devices without a split
           {"split", {{"devices", {0, 1}}, {"split", "row"}}},  // no such mode
           {"devices", {{"split", "layer"}}},                   // a split without devices
           {"devices", {{"devices", json::array()}, {"split", "layer"}}},
           {"devices", {{"devices", {0, -1}}, {"split", "layer"}}},
           {"devices", {{"devices", {0, "1"}}, {"split", "layer"}}},
           {"devices", {{"devices", "0,1"}, {"split", "layer"}}},
           {"devices", {{"devices", std::vector<int>(17, 0)}, {"split", "layer"}}}}) {
    json bad = base;
    bad.update(extra);
    EXPECT_EQ(rejected_field(bad), field) << bad.dump();
  }
}

// Failover: the resume point a worker takes, and what it refuses.
TEST(InferenceRequest, AResumePointRoundTripsAndIsChecked) {
  json body = {{"prompt", "x"},
               {"resumable", true},
               {"resume", {{"prompt_tokens", {1, 2}}, {"generated", {3}}, {"rng_state", "0a"}}}};
  auto r = inference_request::from_json(body);
  EXPECT_TRUE(r.resumable);
  ASSERT_TRUE(r.resume);
  EXPECT_EQ(r.resume->prompt_tokens, (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(r.resume->generated, (std::vector<int32_t>{3}));
  EXPECT_EQ(r.resume->rng_state, 10u);
  EXPECT_EQ(inference_request::from_json(r.to_json()).resume->rng_state, 10u);
  auto field_of = [](const json& b) -> std::string {
    try {
      inference_request::from_json(b);
    } catch (const common::http_error& e) {
      return e.details.value("field", "");
    }
    return "<accepted>";
  };
  json bad = body;
  bad["resume"]["rng_state"] = "xyz";
  EXPECT_EQ(field_of(bad), "resume.rng_state");
  bad = body;
  bad["resume"]["prompt_tokens"] = json::array();
  EXPECT_EQ(field_of(bad), "resume.prompt_tokens");
  bad = body;
  bad["resume"]["generated"] = {1.5};
  EXPECT_EQ(field_of(bad), "resume.generated");
  bad = body;
  bad["resume"] = "now";
  EXPECT_EQ(field_of(bad), "resume");
  bad = body;
  bad["n"] = 2;
  EXPECT_EQ(field_of(bad), "resume");
}

}  // namespace
}  // namespace rbee::api
