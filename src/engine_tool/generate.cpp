#include <chrono>

#include <fmt/format.h>
#include <fmt/ostream.h>

#include "engine_tool/engine_tool.h"

namespace rbee::engine_tool {

namespace {

engine::model_ptr load(const generate_options& opts) {
  engine::model_params mp = engine::model_default_params();
  mp.backend = opts.backend;
  mp.device = opts.device;
  mp.n_threads = opts.n_threads;
  apply(opts.split, mp);
  return engine::model_load(opts.model, mp);
}

}  // namespace

void apply(const device_split& s, engine::model_params& mp) {
  mp.devices = s.devices;
  mp.split = s.split;
  mp.tensor_split = s.tensor_split;
}

std::string describe_parts(const engine::model& m, engine::backend_kind backend) {
  const auto& parts = engine::model_get_parts(m);
  if (parts.size() < 2) return {};
  const char* device_kind = backend == engine::backend_kind::cpu ? "cpu" : "cuda";
  // A tensor split's parts each run every layer: a slice of each.
  const bool tensor = parts[0].end_layer == parts[1].end_layer;
  std::string text = tensor ? fmt::format("tensor split: {} parts of every layer on", parts.size())
                            : "layer split:";
  for (const auto& p : parts) {
    text += fmt::format("{} {}:{}", &p == &parts.front() ? "" : ",", device_kind, p.device);
    if (!tensor) text += fmt::format(" layers {}-{}", p.first_layer, p.end_layer - 1);
  }
  return text;
}

int generate(const generate_options& opts, std::ostream& out, std::ostream& log) {
  if (opts.n_predict < 0)
    throw engine::engine_error(engine::error_code::invalid_argument, "-n must not be negative");
  const auto t0 = std::chrono::steady_clock::now();
  auto model = load(opts);
  if (const std::string parts = describe_parts(*model, opts.backend); !parts.empty())
    fmt::print(log, "{}\n", parts);
  const auto& mi = engine::model_get_info(*model);
  const std::vector<engine::token_id> prompt = engine::tokenize(*model, opts.prompt, true);
  if (prompt.empty())
    throw engine::engine_error(engine::error_code::invalid_argument, "the prompt is empty");

  engine::context_params cp = engine::context_default_params();
  cp.n_ctx = opts.n_ctx > 0 ? opts.n_ctx : static_cast<int>(prompt.size()) + opts.n_predict;
  cp.n_batch = static_cast<int>(prompt.size());
  cp.n_threads = opts.n_threads;
  auto ctx = engine::context_create(*model, cp);
  if (static_cast<int>(prompt.size()) > cp.n_ctx)
    throw engine::engine_error(
        engine::error_code::context_overflow,
        fmt::format("the prompt has {} tokens, the context {}", prompt.size(), cp.n_ctx));

  engine::sampling_params sp = engine::sampling_default_params();
  sp.temperature = opts.temperature;
  sp.seed = opts.seed;
  sp.top_k = opts.top_k;
  sp.top_p = opts.top_p;
  sp.min_p = opts.min_p;
  sp.repeat_penalty = opts.repeat_penalty;
  engine::sampler sampler(sp, mi.n_vocab);
  engine::detokenizer detok(*model);

  std::vector<engine::batch_entry> batch;
  for (size_t i = 0; i < prompt.size(); ++i)
    batch.push_back({prompt[i], static_cast<int32_t>(i), 0, i + 1 == prompt.size()});
  std::vector<engine::token_id> history = prompt;
  history.reserve(prompt.size() + static_cast<size_t>(opts.n_predict));

  const auto t1 = std::chrono::steady_clock::now();
  engine::decode(*ctx, batch);
  const auto t2 = std::chrono::steady_clock::now();
  int n_out = 0;
  for (int i = 0; i < opts.n_predict; ++i) {
    const engine::token_id next =
        engine::sample(*ctx, static_cast<int>(batch.size()) - 1, sampler, history, prompt.size());
    if (engine::token_is_end_of_generation(*model, next)) break;
    out << detok.push(next) << std::flush;
    history.push_back(next);
    ++n_out;
    if (i + 1 == opts.n_predict) break;
    batch.assign(1, {next, static_cast<int32_t>(history.size() - 1), 0, true});
    engine::decode(*ctx, batch);
  }
  out << detok.flush() << std::flush;
  const auto t3 = std::chrono::steady_clock::now();

  using ms = std::chrono::duration<double, std::milli>;
  const double prefill_ms = ms(t2 - t1).count(), gen_ms = ms(t3 - t2).count();
  fmt::print(log,
             "\nload {:.0f} ms | prompt {} tokens in {:.1f} ms ({:.1f} t/s) | generated {} tokens "
             "in {:.1f} ms ({:.1f} t/s)\n",
             ms(t1 - t0).count(), prompt.size(), prefill_ms, prompt.size() * 1000.0 / prefill_ms,
             n_out, gen_ms, n_out > 0 ? n_out * 1000.0 / gen_ms : 0.0);
  return 0;
}

int tokenize(const tokenize_options& opts, std::ostream& out) {
  const auto ids = engine::tokenize_file(opts.model, opts.text, opts.add_bos, opts.parse_special);
  fmt::print(out, "{}\n", fmt::join(ids, " "));
  return 0;
}

}  // namespace rbee::engine_tool
