#pragma once
// The commands of the `rbee-engine` developer tool, as functions. Results go to `out`
// (stdout), logs and progress to `log` (stderr). Each returns the process exit code; errors
// of the engine (engine_error) propagate to the caller, which prints them and exits 1.
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "engine/engine.h"

namespace rbee::engine_tool {

// Several devices (docs/multi-gpu.md): --devices 0,1 --split layer [--tensor-split 3,1], or
// --devices 0,1 --split tensor.
struct device_split {
  std::vector<int> devices;
  engine::split_mode split = engine::split_mode::none;
  std::vector<float> tensor_split;
};
// Sets the model parameters of a split (devices, mode, shares).
void apply(const device_split& s, engine::model_params& mp);
// "layer split: cuda:0 layers 0-3, cuda:1 layers 4-7" or "tensor split: 2 parts of every
// layer on cuda:0, cuda:1" for a model in several parts; empty for one part.
std::string describe_parts(const engine::model& m, engine::backend_kind backend);

struct generate_options {
  std::string model;
  std::string prompt;
  int n_predict = 64;
  float temperature = 0.0f;  // greedy by default: reproducible output
  uint64_t seed = 0xFFFFFFFF;
  int top_k = 40;
  float top_p = 0.95f;
  float min_p = 0.05f;
  float repeat_penalty = 1.0f;
  int n_threads = 0;
  int n_ctx = 0;  // 0: prompt + n_predict
  engine::backend_kind backend = engine::backend_kind::cpu;
  int device = 0;
  device_split split;
};
// Prints only the continuation, flushed token by token; stops at end of generation.
int generate(const generate_options& opts, std::ostream& out, std::ostream& log);

struct tokenize_options {
  std::string model;
  std::string text;
  bool add_bos = true;
  bool parse_special = false;
};
// One line: the token ids separated by spaces.
int tokenize(const tokenize_options& opts, std::ostream& out);

struct bench_options {
  std::string model;
  int n_prompt = 128;
  int n_gen = 64;
  int n_threads = 0;
  int repetitions = 3;
  engine::backend_kind backend = engine::backend_kind::cpu;
  int device = 0;
  device_split split;
  bool json = false;
  std::string json_schema;    // a JSON schema file: tg tokens are constrained to it
  std::vector<int> parallel;  // sequence counts: the batched test instead of pp/tg
  int n_batch = 512;          // the batched test's tokens per decode call
};
// llama-bench's pp/tg tests: pp = one batched prefill of n_prompt tokens, tg = n_gen
// single-token decodes. The context holds n_prompt + n_gen positions only, as llama-bench's.
// With json_schema, each tg token is masked to the schema first (structured/), and the
// mask's share of the time is reported.
// With `parallel`, llama-batched-bench's test instead, for each count N: N sequences of one
// context each prefill n_prompt tokens (decode calls of up to n_batch tokens), then decode
// n_gen steps of one token per sequence together; PP and TG are the aggregate tokens per
// second of the two phases. TG steps compute every sequence's logits but feed random tokens
// (no sampling), as llama-batched-bench does.
int bench(const bench_options& opts, std::ostream& out, std::ostream& log);

// `rbee-engine --version`: the tool and the backends of this build, with the CUDA kernels'
// architectures ("rbee-engine 0.1.0 (cpu, cuda (sm 90))").
std::string version_text();

// Architecture, hyperparameters, tensor type counts, vocabulary and chat template family.
int info(const std::string& model_path, std::ostream& out);

struct synth_options {
  std::string arch = "llama";  // llama qwen2 qwen3 gemma2 gemma3 phi3 mixtral qwen2moe qwen3moe
  std::string shape = "tiny";  // tiny | tinyllama | llama7b
  std::string type = "f16";    // a file kind of type_mix.h: f16, q8_0, q4_k_m, iq4_xs, ...
  std::string output;
  std::string vocab_from;  // GGUF whose tokenizer.* metadata to copy; empty: a byte-level vocab
  std::string chat_template_file;  // its text becomes tokenizer.chat_template; empty: none
  uint64_t seed = 42;
  int n_threads = 0;
};
// Writes a random-weight model of an architecture and shape, streaming one tensor at a time.
int synth(const synth_options& opts, std::ostream& log);

struct convert_options {
  std::string input;         // a directory with config.json and *.safetensors
  std::string output;        // the GGUF to write
  std::string type = "f16";  // f32 f16 bf16 for the matrices (vectors stay f32)
  std::string vocab_from;    // GGUF whose tokenizer.* metadata to copy
};
// Converts a Hugging Face checkpoint of llama, mistral, qwen2, qwen3, gemma2 or gemma3 to GGUF
// with llama.cpp's names and keys, streaming one tensor at a time.
int convert(const convert_options& opts, std::ostream& log);

// Re-quantizes a GGUF model (a file kind of type_mix.h: q8_0, q4_k_m, q3_k_m, iq4_xs, ...) with
// llama.cpp's type mix, streaming one tensor at a time.
int quantize(const std::string& input, const std::string& output, const std::string& type,
             int n_threads, std::ostream& log);

}  // namespace rbee::engine_tool
