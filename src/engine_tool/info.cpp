#include <map>

#include <fmt/format.h>
#include <fmt/ostream.h>

#include "engine/chat_template.h"
#include "engine/model.h"
#include "engine_tool/engine_tool.h"
#include "gguf/gguf.h"
#include "template/template.h"

namespace rbee::engine_tool {

namespace {

std::string chat_family_of(const std::string& chat_template) {
  try {
    return std::string(engine::to_string(engine::detect_chat_template(chat_template).family)) +
           " family";
  } catch (const engine::engine_error&) {
    return "no known family";
  }
}

}  // namespace

std::string version_text() {
  return fmt::format("rbee-engine {} ({})", RBEE_PROJECT_VERSION, engine::build_backends());
}

int info(const std::string& model_path, std::ostream& out) {
  const engine::model_info mi = engine::read_model_info(model_path);
  // The header again, for what model_info leaves out (tensor types, tokenizer).
  const auto file = gguf::file::open(model_path);
  std::map<std::string, int> type_counts;
  for (const auto& t : file.tensors()) ++type_counts[std::string(gguf::to_string(t.type))];

  fmt::print(out, "file:           {}\n", model_path);
  fmt::print(out, "name:           {}\n", mi.name);
  fmt::print(out, "architecture:   {}\n", mi.architecture);
  fmt::print(out, "quantization:   {}\n", mi.quantization);
  fmt::print(out, "parameters:     {}\n", mi.n_params);
  fmt::print(out, "size:           {} bytes\n", mi.size_bytes);
  fmt::print(out, "context length: {}\n", mi.n_ctx_train);
  fmt::print(out, "embedding:      {}\n", mi.n_embd);
  fmt::print(out, "layers:         {}\n", mi.n_layer);
  fmt::print(out, "heads:          {} (kv {})\n", mi.n_head, mi.n_head_kv);
  fmt::print(out, "feed forward:   {}\n", mi.n_ff);
  fmt::print(out, "head dim:       {}\n", mi.head_dim);
  if (mi.n_expert > 0)
    fmt::print(out, "experts:        {} per layer, {} per token\n", mi.n_expert, mi.n_expert_used);
  if (mi.n_swa > 0)
    fmt::print(out, "sliding window: {} positions on {} of {} layers\n", mi.n_swa, mi.n_swa_layers,
               mi.n_layer);
  const auto key = [&](const std::string& k) { return mi.architecture + "." + k; };
  if (auto v = file.get_float(key("rope.freq_base"))) fmt::print(out, "rope base:      {}\n", *v);
  // What the engine reads, defaults included (gemma2 files may leave the caps out).
  const engine::hparams hp = engine::read_hparams(file);
  const auto cap = [](float c) { return c > 0 ? fmt::format("{:g}", c) : std::string("none"); };
  if (hp.architecture == "phi3")
    fmt::print(out, "long rope:      original context {}, attention factor {:g}{}\n", hp.n_ctx_orig,
               hp.rope_attn_factor,
               file.find_tensor("rope_factors_long.weight") ? "" : " (no factors)");
  if (hp.attn_softcap > 0 || hp.final_softcap > 0)
    fmt::print(out, "soft caps:      attention {}, logits {}\n", cap(hp.attn_softcap),
               cap(hp.final_softcap));
  if (auto v = file.get_float(key("attention.layer_norm_rms_epsilon")))
    fmt::print(out, "rms eps:        {:g}\n", *v);
  std::string types;
  for (const auto& [type, n] : type_counts)
    types += fmt::format("{}{} x{}", types.empty() ? "" : ", ", type, n);
  fmt::print(out, "tensors:        {} ({})\n", file.tensors().size(), types);
  fmt::print(out, "vocab:          {} tokens ({}), bos {}, eos {}\n", mi.n_vocab,
             file.get_string("tokenizer.ggml.model").value_or("?"), mi.bos, mi.eos);
  // The template runs in the Jinja engine; the family is what an override or a template the
  // engine cannot parse falls back to.
  std::string chat_template = "none (ChatML)";
  if (!mi.chat_template.empty()) {
    const std::string family = chat_family_of(mi.chat_template);
    try {
      tmpl::chat_template_program::parse(mi.chat_template);
      chat_template = "jinja (" + family + ")";
    } catch (const tmpl::template_error& e) {
      chat_template = family + " (jinja not supported: " + e.what() + ")";
    }
  }
  fmt::print(out, "chat template:  {}\n", chat_template);
  return 0;
}

}  // namespace rbee::engine_tool
