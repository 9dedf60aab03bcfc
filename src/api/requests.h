#pragma once
// The requests of the wire contract (SPEC §3): a task (client -> queen, POST /v2/tasks) and an
// inference (queen -> worker, POST /v1/inference) share one body, generation_request. Each has
// one from_json, which is the whole validation: the first process a request reaches runs it, and
// a value it accepts passes every later hop. Errors are 400 INVALID_REQUEST naming the field
// (details.field), raised as common::http_error.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/hub_access.h"
#include "api/sampling.h"

namespace rbee::api {

// The prompt, or all message contents together: far beyond any context a worker loads, and
// small enough that a bad client cannot make a daemon hold megabytes per queued request.
inline constexpr size_t max_prompt_bytes = 256 * 1024;
inline constexpr size_t max_messages = 1024;
inline constexpr size_t max_stop_strings = 4;
inline constexpr size_t max_stop_length = 100;
inline constexpr size_t max_chat_template_name = 32;
inline constexpr size_t max_model_ref_length = 512;
inline constexpr size_t max_node_name_length = 64;
// Job and task ids travel in URLs (DELETE /v1/inference/{id}) and logs.
inline constexpr size_t max_job_id_length = 128;
// Choices per request (OpenAI's n; each takes a worker slot) and top log-probabilities.
inline constexpr limits<int64_t> n_choices_limits{1, 16};
inline constexpr limits<int64_t> logprobs_limits{0, 20};

inline constexpr size_t max_tools = 128;
inline constexpr size_t max_tool_name_length = 64;

// One call an assistant asked for, as OpenAI writes it: arguments are JSON text.
struct tool_call {
  std::string id;
  std::string name;
  std::string arguments;
};

struct chat_message {
  std::string role;  // "system", "user", "assistant" or "tool"
  std::string content;
  std::vector<tool_call> tool_calls;  // assistant: the calls it made
  std::string tool_call_id;           // tool: the call this message answers
  std::string name;                   // optional name of the author (or of the tool)
};

// A function the model may call (OpenAI's {"type":"function","function":{...}}).
struct tool_definition {
  std::string name;
  std::string description;
  nlohmann::json parameters = nlohmann::json::object();  // a JSON schema
};

// Constrained decoding (structured outputs): the answer is one JSON document of this kind,
// and generation ends where the document does. JSON: {"type": "json_object"} or
// {"type": "json_schema", "schema": {...}, "strict": bool}.
struct output_constraint {
  enum class kind { json_object, json_schema };
  kind type = kind::json_object;
  nlohmann::json schema;  // json_schema: a schema the compiler accepts (structured/json_schema.h)
  bool strict = false;    // json_schema: OpenAI's strict mode

  // 400 naming "constraint", "constraint.type" or "constraint.schema"; a schema error also
  // gives details.keyword and details.schema_path.
  static output_constraint from_json(const nlohmann::json& value);
  nlohmann::json to_json() const;
};

// OpenAI's JSON forms: [{"id", "type": "function", "function": {"name", "arguments"}}] and
// [{"type": "function", "function": {"name", "description", "parameters"}}].
nlohmann::json tool_calls_to_json(const std::vector<tool_call>& calls);
nlohmann::json tools_to_json(const std::vector<tool_definition>& tools);

// What to generate and how.
struct generation_request {
  // Exactly one of prompt and messages is given.
  std::string prompt;
  std::vector<chat_message> messages;
  std::string chat_template;           // a template family overriding the model's; messages only
  std::vector<tool_definition> tools;  // shown to the model by its chat template; messages only
  std::optional<int> max_tokens;       // unset: until end of generation or the end of the context
  sampling_options sampling;
  int n = 1;                    // choices, generated from one prefill of the prompt
  std::optional<int> logprobs;  // unset: none; k: each token's and its k best alternatives
  std::vector<std::string> stop;
  std::optional<output_constraint> constraint;

  static generation_request from_json(const nlohmann::json& body);
  void to_json(nlohmann::json& body) const;
};

// Tokens a resume point may carry: far beyond any context a worker loads.
inline constexpr size_t max_resume_tokens = size_t{1} << 20;

// Where a generation continues on another worker (worker failover, docs/failover.md): the
// prompt's tokens as the first worker rendered them, the tokens it generated, and its sampler's
// state after the last of them. JSON: {"prompt_tokens": [ids], "generated": [ids],
// "rng_state": "<16 hex digits>"}.
struct resume_point {
  std::vector<int32_t> prompt_tokens;  // never empty
  std::vector<int32_t> generated;
  uint64_t rng_state = 0;

  // 400 naming "resume", "resume.prompt_tokens", "resume.generated" or "resume.rng_state".
  static resume_point from_json(const nlohmann::json& value);
  nlohmann::json to_json() const;
};

// POST /v1/inference on a worker.
struct inference_request {
  std::string job_id;  // from_json generates "job-<hex>" when the body has none
  generation_request generation;
  // The worker reports where the generation could resume: the prompt's tokens in its started
  // event, and on every token event the tokens since the last one with the sampler's state
  // (api::resume_mark). One choice only (n = 1).
  bool resumable = false;
  // Continue from here: the prompt is these tokens (the messages are not rendered again) and
  // the generated ones are replayed, not sent again. One choice only.
  std::optional<resume_point> resume;

  static inference_request from_json(const nlohmann::json& body);
  nlohmann::json to_json() const;
};

// POST /v2/tasks on the queen (the OpenAI routes build one too).
inline constexpr int interactive_priority = 0;
inline constexpr int batch_priority = 100;
// A body's "priority" (absent: interactive). Throws 400 naming the field.
int priority_from_json(const nlohmann::json& body);

// The size of a worker a task starts, when it starts one (as Ollama's num_ctx and keep_alive):
// over the model's [models.<id>] settings and the hive's own sizing. A warm worker serves the
// task as it is.
// A worker forced onto several devices (docs/multi-gpu.md) splits its model by layers or by
// tensors: "devices" [0, 1] (up to max_split_devices indices of the task's backend, in part
// order) with "split": "layer" or "tensor". A warm worker serves such a task only when it
// holds the same devices with the same split.
inline constexpr size_t max_split_devices = 16;
struct device_split {
  std::vector<int> devices;  // empty: the body asks for no split
  std::string split;         // with devices: "layer" or "tensor"
};
// The "devices" and "split" fields of a body (a task; a hive's spawn request). Throws 400
// naming the field.
device_split device_split_from_json(const nlohmann::json& body);
// A "devices" list: 1 to max_split_devices device indices. Throws 400 naming "devices".
std::vector<int> device_indices_from_json(const nlohmann::json& list);

struct worker_overrides {
  std::optional<int> ctx;           // "ctx": positions per slot, [256, 1048576]
  std::optional<int> slots;         // "slots": [1, 256]
  std::optional<int> keep_alive_s;  // "keep_alive_s": idle seconds before it unloads, [0, 604800]
  std::vector<int> devices;         // "devices": a split's devices; empty: one device
  std::string split;                // "split" of the devices: "layer" or "tensor"
};

struct task_request {
  std::string task_id;  // assigned by from_json: "task-<hex>"
  std::optional<std::string> node;
  std::string model;  // the canonical id of the model reference (api/model_ref.h)
  generation_request generation;
  std::string backend;        // "" = any, else "cpu" or "cuda"
  std::optional<int> device;  // a device index of the backend; unset = any
  // Queue order among waiters: lower goes first. "interactive" is 0, "batch" 100; integers in
  // [-1000, 1000] as vLLM takes them.
  int priority = 0;
  // Who asked: set by the queen's edge from the caller's API key (never read from a body).
  std::string client;
  // The hub a download for this task uses ("hub": the caller's HF_ENDPOINT and HF_TOKEN).
  hub_access hub;
  worker_overrides worker;

  static task_request from_json(const nlohmann::json& body);
  // Leaves the hub out: the token goes to the hive by its own request only (queen/hive_client).
  nlohmann::json to_json() const;
  // The worker's request for this task: the job is named after the task.
  inference_request for_worker() const;
};

}  // namespace rbee::api
