// rbee-engine: the engine's developer tool (generate, tokenize, bench, info, synth, convert,
// quantize).
// Results go to stdout, logs to stderr; errors print one line and exit 1.
#include <iostream>

#include <CLI/CLI.hpp>

#include "engine_tool/engine_tool.h"

namespace {

using rbee::engine::backend_kind;

const std::map<std::string, backend_kind> backends{{"cpu", backend_kind::cpu},
                                                   {"cuda", backend_kind::cuda}};
// --devices, --split and --tensor-split (docs/multi-gpu.md).
void add_split_options(CLI::App* cmd, rbee::engine_tool::device_split& s) {
  cmd->add_option("--devices", s.devices,
                  "Devices of a split, in part order, e.g. 0,1 (a device may repeat: two parts "
                  "on it; the CPU is device 0)")
      ->delimiter(',');
  cmd->add_option_function<std::string>(
         "--split",
         [&s](const std::string& mode) { s.split = rbee::engine::split_mode_from_string(mode); },
         "none; layer: consecutive layers on each device; tensor: a slice of every layer's "
         "heads and FFN on each device")
      ->check(CLI::IsMember({"none", "layer", "tensor"}));
  cmd->add_option("--tensor-split", s.tensor_split,
                  "Each device's share of the layers, e.g. 3,1 (default: by free memory)")
      ->delimiter(',');
}

}  // namespace

int main(int argc, char** argv) {
  namespace tool = rbee::engine_tool;
  CLI::App app{"rbee-engine: run, inspect, benchmark and make GGUF models"};
  app.set_version_flag("--version", tool::version_text());
  app.require_subcommand(1);

  tool::generate_options gen;
  auto* g = app.add_subcommand("generate", "Print the continuation of a prompt (streamed)");
  g->add_option("-m,--model", gen.model, "GGUF model file")->required();
  g->add_option("-p,--prompt", gen.prompt, "Prompt text (BOS is added)")->required();
  g->add_option("-n,--n-predict", gen.n_predict, "Tokens to generate")->capture_default_str();
  g->add_option("--temp", gen.temperature, "Temperature; 0 = greedy (the default)")
      ->capture_default_str();
  g->add_option("--seed", gen.seed, "Sampling seed")->capture_default_str();
  g->add_option("--top-k", gen.top_k, "Top-k, 0 = off")->capture_default_str();
  g->add_option("--top-p", gen.top_p, "Top-p, 1 = off")->capture_default_str();
  g->add_option("--min-p", gen.min_p, "Min-p, 0 = off")->capture_default_str();
  g->add_option("--repeat-penalty", gen.repeat_penalty, "Repeat penalty, 1 = off")
      ->capture_default_str();
  g->add_option("-c,--ctx-size", gen.n_ctx, "Context size, 0 = prompt + n-predict");
  g->add_option("-t,--threads", gen.n_threads, "Threads, 0 = physical cores");
  g->add_option("--backend", gen.backend, "cpu or cuda")
      ->transform(CLI::CheckedTransformer(backends, CLI::ignore_case));
  g->add_option("--device", gen.device, "CUDA device index");
  add_split_options(g, gen.split);

  tool::tokenize_options tok;
  bool no_bos = false;
  auto* t = app.add_subcommand("tokenize", "Print the token ids of a text");
  t->add_option("-m,--model", tok.model, "GGUF model file")->required();
  t->add_option("-p,--prompt", tok.text, "Text")->required();
  t->add_flag("--no-bos", no_bos, "Do not add BOS");
  t->add_flag("--parse-special", tok.parse_special, "Recognise special-token text");

  tool::bench_options bench;
  auto* b = app.add_subcommand(
      "bench",
      "Prompt processing (pp: one batched prefill of -p tokens) and generation (tg: -n "
      "single-token decodes) speed, like llama-bench; the context holds -p + -n tokens only");
  b->add_option("-m,--model", bench.model, "GGUF model file")->required();
  b->add_option("-p,--n-prompt", bench.n_prompt, "Prompt tokens (pp test)")->capture_default_str();
  b->add_option("-n,--n-gen", bench.n_gen, "Generated tokens (tg test)")->capture_default_str();
  b->add_option("-t,--threads", bench.n_threads, "Threads, 0 = physical cores");
  b->add_option("-r,--repetitions", bench.repetitions, "Repetitions")->capture_default_str();
  b->add_option("--backend", bench.backend, "cpu or cuda")
      ->transform(CLI::CheckedTransformer(backends, CLI::ignore_case));
  b->add_option("--device", bench.device, "CUDA device index");
  add_split_options(b, bench.split);
  b->add_flag("--json", bench.json, "JSON output");
  b->add_option("--json-schema", bench.json_schema,
                "Constrain the tg tokens to this JSON schema file (the document restarts when it "
                "ends) and report the mask's cost per token");
  b->add_option("--parallel", bench.parallel,
                "Sequence counts, e.g. 1,8,32: instead of pp/tg, N sequences each prefill -p "
                "tokens, then generate -n tokens together (aggregate t/s, as llama-batched-bench)")
      ->delimiter(',');
  b->add_option("-b,--batch-size", bench.n_batch, "Tokens per decode call of the --parallel test")
      ->capture_default_str();

  std::string info_model;
  auto* i = app.add_subcommand("info", "Architecture, hyperparameters, tensor types, vocab");
  i->add_option("-m,--model", info_model, "GGUF model file")->required();

  tool::synth_options synth;
  auto* s = app.add_subcommand("synth", "Write a random-weight model");
  s->add_option("--arch", synth.arch,
                "llama, qwen2, qwen3, gemma2, gemma3, phi3, mixtral, qwen2moe or qwen3moe")
      ->capture_default_str();
  s->add_option("--shape", synth.shape, "tiny, tinyllama or llama7b")->capture_default_str();
  s->add_option(
       "--type", synth.type,
       "f16 q8_0 q4_0 q4_1 q5_0 q5_1 q2_k q3_k_s q3_k_m q3_k_l q4_k_m q5_k_m q6_k iq4_nl iq4_xs")
      ->capture_default_str();
  s->add_option("-o,--output", synth.output, "Output GGUF")->required();
  s->add_option("--vocab-from", synth.vocab_from, "Copy the tokenizer of this GGUF");
  s->add_option("--chat-template", synth.chat_template_file,
                "Write this file's text as tokenizer.chat_template (a Jinja template)")
      ->check(CLI::ExistingFile);
  s->add_option("--seed", synth.seed, "Random seed")->capture_default_str();
  s->add_option("-t,--threads", synth.n_threads, "Threads, 0 = all");

  tool::convert_options conv;
  auto* cv = app.add_subcommand(
      "convert", "Convert a Hugging Face checkpoint (config.json + safetensors) to GGUF");
  cv->add_option("input", conv.input, "Directory with config.json and *.safetensors")
      ->required()
      ->check(CLI::ExistingDirectory);
  cv->add_option("-o,--output", conv.output, "Output GGUF")->required();
  cv->add_option("--type", conv.type, "f32, f16 or bf16")->capture_default_str();
  cv->add_option("--vocab-from", conv.vocab_from, "Copy the tokenizer of this GGUF")->required();

  std::string q_in, q_out, q_type;
  int q_threads = 0;
  auto* q = app.add_subcommand("quantize", "Quantize a GGUF model (llama.cpp-compatible)");
  q->add_option("input", q_in, "Input GGUF")->required();
  q->add_option("output", q_out, "Output GGUF")->required();
  q->add_option(
       "type", q_type,
       "q8_0 q4_0 q4_1 q5_0 q5_1 q2_k q3_k_s q3_k_m q3_k_l q4_k_m q5_k_m q6_k iq4_nl iq4_xs f16")
      ->required();
  q->add_option("-t,--threads", q_threads, "Threads, 0 = all");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  try {
    if (*g) return tool::generate(gen, std::cout, std::cerr);
    if (*t) {
      tok.add_bos = !no_bos;
      return tool::tokenize(tok, std::cout);
    }
    if (*b) return tool::bench(bench, std::cout, std::cerr);
    if (*i) return tool::info(info_model, std::cout);
    if (*s) return tool::synth(synth, std::cerr);
    if (*cv) return tool::convert(conv, std::cerr);
    if (*q) return tool::quantize(q_in, q_out, q_type, q_threads, std::cerr);
  } catch (const rbee::engine::engine_error& e) {
    std::cerr << "error: " << rbee::engine::to_string(e.code) << ": " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 2;
}
