#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <numeric>
#include <optional>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ostream.h>
#include <nlohmann/json.hpp>

#include "engine/sampling.h"
#include "engine_tool/engine_tool.h"
#include "structured/json_schema.h"
#include "structured/token_constraint.h"

namespace rbee::engine_tool {

namespace {

struct result {
  std::string test;  // "pp128", "tg64"
  int n_prompt = 0;
  int n_gen = 0;
  std::vector<double> ns;  // one per repetition
  double avg_ns() const { return std::accumulate(ns.begin(), ns.end(), 0.0) / ns.size(); }
  std::vector<double> ts() const {
    std::vector<double> out;
    for (double t : ns) out.push_back((n_prompt + n_gen) * 1e9 / t);
    return out;
  }
};

std::pair<double, double> mean_sd(const std::vector<double>& v) {
  const double mean = std::accumulate(v.begin(), v.end(), 0.0) / v.size();
  double var = 0;
  for (double x : v) var += (x - mean) * (x - mean);
  return {mean, v.size() > 1 ? std::sqrt(var / (v.size() - 1)) : 0.0};
}

std::string human_size(uint64_t bytes) {
  if (bytes >= (1ull << 30)) return fmt::format("{:.2f} GiB", bytes / double(1ull << 30));
  return fmt::format("{:.2f} MiB", bytes / double(1ull << 20));
}

std::string human_params(uint64_t n) {
  if (n >= 1000000000ull) return fmt::format("{:.2f} B", n / 1e9);
  if (n >= 1000000ull) return fmt::format("{:.2f} M", n / 1e6);
  return fmt::format("{:.2f} K", n / 1e3);
}

// Size label like llama.cpp's model type ("1B", "7B", "260K").
std::string size_label(uint64_t n) {
  if (n >= 1000000000ull) return fmt::format("{}B", (n + 500000000ull) / 1000000000ull);
  if (n >= 1000000ull) return fmt::format("{}M", (n + 500000ull) / 1000000ull);
  return fmt::format("{}K", (n + 500ull) / 1000ull);
}

std::shared_ptr<const structured::grammar> schema_grammar(const std::string& path) {
  std::ifstream file(path);
  if (!file)
    throw engine::engine_error(engine::error_code::invalid_argument, "cannot read " + path);
  std::stringstream text;
  text << file.rdbuf();
  const auto schema = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (schema.is_discarded())
    throw engine::engine_error(engine::error_code::invalid_argument, path + " is not JSON");
  try {
    return std::make_shared<const structured::grammar>(structured::json_schema_grammar(schema));
  } catch (const structured::schema_error& e) {
    throw engine::engine_error(engine::error_code::invalid_argument,
                               path + ": " + e.what() + " (at '" + e.path + "')");
  }
}

structured::token_vocabulary constraint_vocabulary(const engine::model& m, int n_vocab) {
  std::vector<structured::token> end_tokens;
  for (engine::token_id t = 0; t < n_vocab; ++t)
    if (engine::token_is_end_of_generation(m, t)) end_tokens.push_back(t);
  return structured::token_vocabulary(engine::text_token_pieces(m), std::move(end_tokens));
}

engine::model_ptr load_model(const bench_options& opts) {
  engine::model_params mp = engine::model_default_params();
  mp.backend = opts.backend;
  mp.device = opts.device;
  mp.n_threads = opts.n_threads;
  apply(opts.split, mp);
  return engine::model_load(opts.model, mp);
}

// "CUDA", or "CUDA x2 (layer split)" / "CUDA x2 (tensor split)" for a model in parts on two
// devices.
std::string backend_name(const bench_options& opts) {
  const std::string name = opts.backend == engine::backend_kind::cpu ? "CPU" : "CUDA";
  if (opts.split.split == engine::split_mode::none) return name;
  return fmt::format("{} x{} ({} split)", name, std::max<size_t>(1, opts.split.devices.size()),
                     engine::to_string(opts.split.split));
}

std::string model_type_of(const engine::model_info& mi) {
  return fmt::format("{} {} {}", mi.architecture, size_label(mi.n_params), mi.quantization);
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The batched test of one sequence count: seconds of each repetition's two phases.
struct parallel_result {
  int n_parallel = 0;
  std::vector<double> pp_s, tg_s;
  std::vector<double> pp_ts(int n_prompt) const { return rates(pp_s, n_prompt); }
  std::vector<double> tg_ts(int n_gen) const { return rates(tg_s, n_gen); }

 private:
  std::vector<double> rates(const std::vector<double>& secs, int per_seq) const {
    std::vector<double> out;
    for (double t : secs) out.push_back(static_cast<double>(n_parallel) * per_seq / t);
    return out;
  }
};

void check_parallel_options(const bench_options& opts) {
  if (opts.n_prompt < 1 || opts.n_gen < 1 || opts.repetitions < 1 || opts.n_batch < 1)
    throw engine::engine_error(engine::error_code::invalid_argument,
                               "bench --parallel needs -p >= 1, -n >= 1, -r >= 1 and -b >= 1");
  for (int n : opts.parallel)
    if (n < 1)
      throw engine::engine_error(engine::error_code::invalid_argument,
                                 fmt::format("bench --parallel: {} is not a sequence count", n));
  if (!opts.json_schema.empty())
    throw engine::engine_error(engine::error_code::invalid_argument,
                               "bench: --json-schema applies to the tg test, not to --parallel");
}

void print_parallel(const bench_options& opts, const engine::model_info& mi,
                    const std::vector<parallel_result>& results, std::ostream& out) {
  const std::string model_type = model_type_of(mi);
  if (opts.json) {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& r : results) {
      const auto [pp, pp_sd] = mean_sd(r.pp_ts(opts.n_prompt));
      const auto [tg, tg_sd] = mean_sd(r.tg_ts(opts.n_gen));
      arr.push_back({{"model_filename", opts.model},
                     {"model_type", model_type},
                     {"backends", backend_name(opts)},
                     {"n_parallel", r.n_parallel},
                     {"n_prompt", opts.n_prompt},
                     {"n_gen", opts.n_gen},
                     {"n_batch", opts.n_batch},
                     {"n_kv", r.n_parallel * (opts.n_prompt + opts.n_gen)},
                     {"t_pp_s", mean_sd(r.pp_s).first},
                     {"pp_avg_ts", pp},
                     {"pp_stddev_ts", pp_sd},
                     {"t_tg_s", mean_sd(r.tg_s).first},
                     {"tg_avg_ts", tg},
                     {"tg_stddev_ts", tg_sd}});
    }
    out << arr.dump(2) << "\n";
    return;
  }
  fmt::print(out, "{} ({}), {}\n", model_type, human_size(mi.size_bytes), backend_name(opts));
  fmt::print(out, "| {:>6} | {:>6} | {:>4} | {:>7} | {:>8} | {:>20} | {:>8} | {:>20} |\n", "PP",
             "TG", "B", "N_KV", "T_PP s", "S_PP t/s", "T_TG s", "S_TG t/s");
  out << "| -----: | -----: | ---: | ------: | -------: | -------------------: | -------: | "
         "-------------------: |\n";
  for (const auto& r : results) {
    const auto [pp, pp_sd] = mean_sd(r.pp_ts(opts.n_prompt));
    const auto [tg, tg_sd] = mean_sd(r.tg_ts(opts.n_gen));
    fmt::print(out, "| {:>6} | {:>6} | {:>4} | {:>7} | {:>8.3f} | {:>20} | {:>8.3f} | {:>20} |\n",
               opts.n_prompt, opts.n_gen, r.n_parallel, r.n_parallel * (opts.n_prompt + opts.n_gen),
               mean_sd(r.pp_s).first, fmt::format("{:.2f} ± {:.2f}", pp, pp_sd),
               mean_sd(r.tg_s).first, fmt::format("{:.2f} ± {:.2f}", tg, tg_sd));
  }
}

int bench_parallel(const bench_options& opts, std::ostream& out, std::ostream& log) {
  check_parallel_options(opts);
  auto model = load_model(opts);
  const auto& mi = engine::model_get_info(*model);
  const int max_parallel = *std::max_element(opts.parallel.begin(), opts.parallel.end());
  // One context for every count: each sequence holds its prompt and generated tokens.
  engine::context_params cp = engine::context_default_params();
  cp.n_ctx = opts.n_prompt + opts.n_gen;
  cp.n_seq = max_parallel;
  cp.n_batch = std::max(opts.n_batch, max_parallel);
  cp.n_threads = opts.n_threads;
  auto ctx = engine::context_create(*model, cp);

  engine::rng gen(1234);
  const auto random_token = [&] {
    return static_cast<engine::token_id>(gen.next() % static_cast<uint64_t>(mi.n_vocab));
  };
  std::vector<engine::batch_entry> batch;
  // n sequences' prompts, sequence after sequence, in decode calls of up to n_batch tokens;
  // each sequence's last token wants logits.
  const auto prefill = [&](int n) {
    for (int s = 0; s < n; ++s) engine::sequence_clear(*ctx, s);
    batch.clear();
    for (int s = 0; s < n; ++s)
      for (int i = 0; i < opts.n_prompt; ++i) {
        batch.push_back({random_token(), i, s, i + 1 == opts.n_prompt});
        if (static_cast<int>(batch.size()) == cp.n_batch) {
          engine::decode(*ctx, batch);
          batch.clear();
        }
      }
    if (!batch.empty()) engine::decode(*ctx, batch);
  };
  // Steps first..first+steps-1 of n sequences together, one token each.
  const auto generate = [&](int n, int first, int steps) {
    for (int step = first; step < first + steps; ++step) {
      batch.clear();
      for (int s = 0; s < n; ++s) batch.push_back({random_token(), opts.n_prompt + step, s, true});
      engine::decode(*ctx, batch);
    }
  };

  std::vector<parallel_result> results;
  for (int n : opts.parallel) {
    parallel_result r;
    r.n_parallel = n;
    // Warm-up, as llama-batched-bench does: first-touch costs (a step shape's first use)
    // stay out of the numbers.
    prefill(n);
    generate(n, 0, 1);
    for (int rep = 0; rep < opts.repetitions; ++rep) {
      auto t0 = std::chrono::steady_clock::now();
      prefill(n);
      r.pp_s.push_back(seconds_since(t0));
      t0 = std::chrono::steady_clock::now();
      generate(n, 0, opts.n_gen);
      r.tg_s.push_back(seconds_since(t0));
    }
    fmt::print(log, "parallel {}: pp {:.2f} t/s, tg {:.2f} t/s\n", n,
               mean_sd(r.pp_ts(opts.n_prompt)).first, mean_sd(r.tg_ts(opts.n_gen)).first);
    results.push_back(std::move(r));
  }
  print_parallel(opts, mi, results, out);
  return 0;
}

}  // namespace

int bench(const bench_options& opts, std::ostream& out, std::ostream& log) {
  if (!opts.parallel.empty()) return bench_parallel(opts, out, log);
  if (opts.n_prompt < 0 || opts.n_gen < 0 || opts.n_prompt + opts.n_gen == 0 ||
      opts.repetitions < 1)
    throw engine::engine_error(engine::error_code::invalid_argument,
                               "bench needs -p >= 0, -n >= 0 (not both 0) and -r >= 1");
  auto model = load_model(opts);
  const auto& mi = engine::model_get_info(*model);

  // Like llama-bench: the context holds exactly the tokens of the test.
  engine::context_params cp = engine::context_default_params();
  cp.n_ctx = opts.n_prompt + opts.n_gen;
  cp.n_batch = std::max(opts.n_prompt, 1);
  cp.n_threads = opts.n_threads;
  auto ctx = engine::context_create(*model, cp);
  const int n_threads = engine::context_n_threads(*ctx);

  engine::rng gen(1234);
  std::vector<engine::batch_entry> batch;
  const auto random_token = [&] {
    return static_cast<engine::token_id>(gen.next() % static_cast<uint64_t>(mi.n_vocab));
  };
  const auto prefill = [&](int n) {
    batch.clear();
    for (int i = 0; i < n; ++i) batch.push_back({random_token(), i, 0, i + 1 == n});
    engine::sequence_clear(*ctx, 0);
    engine::decode(*ctx, batch);
  };
  // Generation as users get it: each step's token is chosen (greedy) on the backend that ran
  // the step and fed back, so a token's time includes picking it.
  engine::sampling_params greedy = engine::sampling_default_params();
  greedy.temperature = 0.0f;
  greedy.repeat_penalty = 1.0f;
  engine::sampler pick(greedy, mi.n_vocab);
  // Structured outputs: the mask before each choice and the matcher's step after it.
  std::shared_ptr<const structured::grammar> grammar;
  std::optional<structured::token_vocabulary> vocabulary;
  if (!opts.json_schema.empty()) {
    grammar = schema_grammar(opts.json_schema);
    vocabulary.emplace(constraint_vocabulary(*model, mi.n_vocab));
  }
  std::optional<structured::token_constraint> constraint;
  std::vector<uint64_t> allowed;
  double constraint_ns = 0;
  int constrained_tokens = 0, documents = 0;
  const auto generate = [&](int n) {
    engine::sequence_clear(*ctx, 0);
    engine::token_id token = random_token();
    for (int i = 0; i < n; ++i) {
      const engine::batch_entry e{token, i, 0, true};
      engine::decode(*ctx, std::span(&e, 1));
      if (!grammar) {
        token = engine::sample(*ctx, 0, pick, {});
        continue;
      }
      const auto t0 = std::chrono::steady_clock::now();
      if (!constraint || constraint->finished()) {
        constraint.emplace(grammar, *vocabulary);
        allowed.assign(vocabulary->mask_words(), 0);
        ++documents;
      }
      if (constraint->fill_allowed(allowed) == 0)
        throw engine::engine_error(engine::error_code::invalid_argument,
                                   "no token of the vocabulary continues the schema's document");
      const auto t1 = std::chrono::steady_clock::now();
      token = engine::sample(*ctx, 0, pick, {}, 0, allowed);
      const auto t2 = std::chrono::steady_clock::now();
      if (!constraint->accept(token)) constraint.reset();  // an end token closed the document
      const auto t3 = std::chrono::steady_clock::now();
      constraint_ns += std::chrono::duration<double, std::nano>((t1 - t0) + (t3 - t2)).count();
      ++constrained_tokens;
    }
  };

  std::vector<result> results;
  if (opts.n_prompt > 0)
    results.push_back({fmt::format("pp{}", opts.n_prompt), opts.n_prompt, 0, {}});
  if (opts.n_gen > 0) results.push_back({fmt::format("tg{}", opts.n_gen), 0, opts.n_gen, {}});
  for (auto& r : results) {
    // Warm-up run, as llama-bench does: first-touch costs stay out of the numbers.
    if (r.n_prompt > 0)
      prefill(r.n_prompt);
    else
      generate(1);
    for (int rep = 0; rep < opts.repetitions; ++rep) {
      const auto t0 = std::chrono::steady_clock::now();
      if (r.n_prompt > 0)
        prefill(r.n_prompt);
      else
        generate(r.n_gen);
      const auto t1 = std::chrono::steady_clock::now();
      r.ns.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count());
    }
    const auto [mean, sd] = mean_sd(r.ts());
    fmt::print(log, "{}: {:.2f} ± {:.2f} t/s\n", r.test, mean, sd);
  }
  if (constrained_tokens > 0) {
    const double tg_ns = results.back().avg_ns() / std::max(opts.n_gen, 1);
    const double per_token = constraint_ns / constrained_tokens;
    fmt::print(log,
               "json-schema: mask + matcher {:.1f} us/token ({:.1f} % of a constrained token), "
               "{} documents begun, vocabulary {}\n",
               per_token / 1e3, 100.0 * per_token / tg_ns, documents, mi.n_vocab);
  }

  const std::string model_type = model_type_of(mi);
  const std::string threads = std::to_string(n_threads);
  if (opts.json) {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& r : results) {
      const auto [mean, sd] = mean_sd(r.ts());
      const auto [mean_ns, sd_ns] = mean_sd(r.ns);
      arr.push_back({{"model_filename", opts.model},
                     {"model_type", model_type},
                     {"model_size", mi.size_bytes},
                     {"model_n_params", mi.n_params},
                     {"backends", backend_name(opts)},
                     {"n_threads", n_threads},
                     {"n_prompt", r.n_prompt},
                     {"n_gen", r.n_gen},
                     {"n_ctx", cp.n_ctx},
                     {"test", r.test},
                     {"avg_ns", static_cast<uint64_t>(mean_ns)},
                     {"stddev_ns", static_cast<uint64_t>(sd_ns)},
                     {"avg_ts", mean},
                     {"stddev_ts", sd},
                     {"samples_ts", r.ts()}});
    }
    out << arr.dump(2) << "\n";
    return 0;
  }
  fmt::print(out, "| {:<30} | {:>10} | {:>10} | {:<10} | {:>7} | {:>13} | {:>20} |\n", "model",
             "size", "params", "backend", "threads", "test", "t/s");
  out << "| ------------------------------ | ---------: | ---------: | ---------- | ------: | "
         "------------: | -------------------: |\n";
  for (const auto& r : results) {
    const auto [mean, sd] = mean_sd(r.ts());
    fmt::print(out, "| {:<30} | {:>10} | {:>10} | {:<10} | {:>7} | {:>13} | {:>20} |\n", model_type,
               human_size(mi.size_bytes), human_params(mi.n_params), backend_name(opts), threads,
               r.test, fmt::format("{:.2f} ± {:.2f}", mean, sd));
  }
  return 0;
}

}  // namespace rbee::engine_tool
