#pragma once
// The engine's narrow API (modelled on llama.h): opaque handles, *_default_params(),
// create/free pairs. Nothing of the tensors is visible to callers; the worker and the
// rbee-engine tool use only this header.
//
// Errors: functions that take untrusted input (model files, prompts) throw engine_error
// with a code; invariants broken by the caller assert.
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/kv_block_size.h"
#include "engine/sampling_knobs.h"

namespace rbee::engine {

using token_id = int32_t;

enum class error_code {
  file_not_found,
  file_corrupt,  // malformed GGUF (message names the field)
  unsupported_architecture,
  unsupported_tensor_type,
  backend_unavailable,  // message lists the backends/devices that exist
  out_of_memory,        // host RAM or device VRAM (message says which)
  context_overflow,     // prompt + generation longer than the context
  kv_cache_full,        // the context's KV block pool cannot hold a batch's new positions
  invalid_argument,
  chat_template_unknown,
};
std::string_view to_string(error_code code);

struct engine_error : std::runtime_error {
  engine_error(error_code code, const std::string& message)
      : std::runtime_error(message), code(code) {}
  error_code code;
};

enum class backend_kind { cpu, cuda };

struct load_progress {
  int tensors_loaded = 0;
  int tensors_total = 0;
  int layers_loaded = 0;
  int layers_total = 0;
  uint64_t bytes_loaded = 0;
  uint64_t bytes_total = 0;
};

// How a model uses several devices (docs/multi-gpu.md). layer: consecutive layers on each
// device, activations handed from one to the next. tensor: a slice of every layer's heads and
// FFN rows on each device, partial sums joined after the attention output and the FFN (on
// the host, on one GPU, or across GPUs with NCCL loaded at run time).
enum class split_mode { none, layer, tensor };
std::string_view to_string(split_mode mode);
// "none", "layer", "tensor"; engine_error(invalid_argument) naming the choices otherwise.
split_mode split_mode_from_string(std::string_view name);

struct model_params {
  backend_kind backend = backend_kind::cpu;
  int device = 0;  // CUDA device index
  // A split's parts, one on each of these devices, in this order (a device named twice holds
  // two parts; the CPU is device 0); empty: `device` alone. Several devices need a split.
  std::vector<int> devices;
  split_mode split = split_mode::none;
  // split layer: each device's share of the layers, one per device (llama.cpp's -ts); empty:
  // in proportion to each device's free memory (equal shares on the CPU).
  std::vector<float> tensor_split;
  // Positions of KV cache (n_seq x n_ctx of the contexts to come) the layer split counts on
  // each device for its layers when it checks that they fit; 0: the weights only.
  int64_t split_kv_positions = 0;
  int n_threads = 0;                                      // 0: one per physical core
  std::function<void(const load_progress&)> on_progress;  // called from the loading thread
};
model_params model_default_params();

// What the hive shows in its catalog and the worker in `info`.
struct model_info {
  std::string architecture;  // "llama", "qwen2", "qwen3", "qwen3moe", "gemma2", "gemma3", "phi3"
  std::string name;
  std::string quantization;  // dominant weight type, e.g. "Q4_K_M", "Q8_0", "F16"
  uint64_t n_params = 0;
  uint64_t size_bytes = 0;
  int n_ctx_train = 0;
  int n_vocab = 0;
  int n_embd = 0;
  int n_layer = 0;
  int n_head = 0;
  int n_head_kv = 0;
  int n_ff = 0;
  int head_dim = 0;
  int n_swa = 0;          // sliding window of the sliding layers (0: none)
  int n_swa_layers = 0;   // layers that attend over the window only
  int n_expert = 0;       // mixture of experts: experts per layer (0: dense)
  int n_expert_used = 0;  // experts each token uses
  token_id bos = -1;
  token_id eos = -1;
  std::string chat_template;  // the GGUF's template text, may be empty
};

// Reads only the header (no weights): for catalogs and preflight checks.
model_info read_model_info(const std::string& path);

// Bytes of host RAM (cpu) or device memory (cuda) a model needs with a given context and slot
// count: weights + KV cache + scratch (engine/memory_estimate.h, the hive's preflight formula).
uint64_t estimate_memory_bytes(const model_info& info, int n_ctx, int n_seq,
                               backend_kind backend = backend_kind::cpu);

struct model;
struct model_deleter {
  void operator()(model* m) const;
};
using model_ptr = std::unique_ptr<model, model_deleter>;

model_ptr model_load(const std::string& path, const model_params& params);
// The backends this build holds, for version reports: "cpu, cuda (sm 80-real 90-real)" (the
// CUDA kernels' architectures) or "cpu, no cuda".
std::string build_backends();
const model_info& model_get_info(const model& m);
// The layers a model runs on each device, in layer order: one part [0, n_layer) on one device,
// the parts of a layer split, or the parts of a tensor split (each [0, n_layer): a slice of
// every layer).
struct model_part {
  int device = 0;
  int first_layer = 0;
  int end_layer = 0;  // one past its last layer
};
const std::vector<model_part>& model_get_parts(const model& m);
// Device memory the model's weights hold (0 on the CPU backend).
uint64_t model_device_bytes(const model& m);

// ---- tokens and text ----
// add_bos: prepend BOS if the vocabulary uses one (tokenizer.ggml.add_bos_token; Qwen2's does
// not). parse_special: recognise special-token text such as "<|im_start|>" in the input.
std::vector<token_id> tokenize(const model& m, std::string_view text, bool add_bos,
                               bool parse_special = false);
// tokenize with the vocabulary of a GGUF file alone, weights or not (llama.cpp's
// vocabulary-only files): the file's header is read, no tensor.
std::vector<token_id> tokenize_file(const std::string& path, std::string_view text, bool add_bos,
                                    bool parse_special = false);
// Raw bytes of one token's piece (may be an incomplete UTF-8 sequence).
std::string token_to_piece(const model& m, token_id token);
bool token_is_end_of_generation(const model& m, token_id token);
// Every token's piece for constrained decoding (structured/token_constraint.h): the bytes of
// text tokens, and "" for control, user-defined, unknown and unused tokens, which never
// belong inside a constrained document.
std::vector<std::string> text_token_pieces(const model& m);

// Turns a token stream into text that is always valid UTF-8: bytes of a character split
// across tokens are held back until the character is complete.
class detokenizer {
 public:
  explicit detokenizer(const model& m);
  std::string push(token_id token);  // text ready to emit, possibly empty
  std::string flush();               // whatever is left (invalid bytes become U+FFFD)

 private:
  const model* model_;
  std::string pending_;       // bytes of a character not yet complete
  bool strip_space_ = false;  // drop the space prefix of the piece after a BOS
};

struct chat_message {
  chat_message() = default;
  chat_message(std::string message_role, std::string message_content)
      : role(std::move(message_role)), content(std::move(message_content)) {}

  std::string role;  // "system", "user", "assistant", "tool"
  std::string content;
  // An assistant's tool calls: JSON array text of OpenAI-shaped calls
  // [{"id", "type": "function", "function": {"name", "arguments"}}]; empty when none.
  // Arguments given as JSON text reach the template as the object they encode.
  std::string tool_calls_json;
  std::string tool_call_id;  // a tool result: the call it answers
  std::string name;          // a tool result: the function's name
};

struct chat_render_options {
  bool add_generation_prompt = true;  // end with the header of the assistant's turn
  std::string tools_json;             // JSON array text of OpenAI tool definitions; empty: none
  // A family name ("llama2", "llama3", "chatml", "mistral", "zephyr", "phi3") rendered by
  // rbee's own renderer instead of the model's template.
  std::string template_override;
};

// Renders messages with the model's tokenizer.chat_template, run by rbee's Jinja engine as
// Hugging Face transformers runs it (messages, tools, add_generation_prompt, bos_token and
// eos_token from the vocabulary). `template_override`, a model without a template (ChatML, as
// llama.cpp's server does) and a template the Jinja engine cannot parse use the family
// renderer; a template that is neither → engine_error(chat_template_unknown). A conversation
// the template rejects (raise_exception) or cannot render → engine_error(invalid_argument).
std::string apply_chat_template(const model& m, std::span<const chat_message> messages,
                                const chat_render_options& options);
// The same without tools.
std::string apply_chat_template(const model& m, std::span<const chat_message> messages,
                                bool add_assistant_prompt, std::string_view template_override = {});

// ---- contexts: KV cache + batched decode of several sequences ----
// The KV cache is paged (docs/kv-cache.md): positions live in blocks of kv_block_size from one
// pool per context, taken as a sequence grows and given back when it is cleared. Full blocks
// are also a prefix cache: a block keeps its keys and values after its sequence is cleared
// and a later sequence whose tokens start the same way reuses it (sequence_reuse_prefix),
// until the pool needs it for new positions (least recently used first). Sliding-window
// layers (gemma2/3) keep a ring of their window per sequence outside the pool. The size of a
// block is kv_block_size (engine/kv_block_size.h).

struct context_params {
  int n_ctx = 2048;   // positions per sequence
  int n_seq = 1;      // independent sequences (the worker's slots)
  int n_batch = 512;  // max tokens per decode call
  int n_threads = 0;  // 0: model's default
  bool kv_f16 = true;
  // Positions the KV block pool holds for all sequences together (rounded up to whole
  // blocks). 0: enough for every sequence to fill its n_ctx at once, so decode never finds
  // the pool full; less bounds the memory by the tokens in use instead of n_seq x n_ctx.
  int n_kv_tokens = 0;
};
context_params context_default_params();

struct context;
struct context_deleter {
  void operator()(context* c) const;
};
using context_ptr = std::unique_ptr<context, context_deleter>;

context_ptr context_create(model& m, const context_params& params);

// One token of a batch: sequence `seq` gets `token` at position `pos`; logits are kept
// only for entries with want_logits.
struct batch_entry {
  token_id token;
  int32_t pos;
  int32_t seq;
  bool want_logits;
};

// Runs the forward pass for all entries (any mix of prefill and decode across sequences).
// The whole batch is checked before any work: pos >= n_ctx throws
// engine_error(context_overflow); positions that do not continue their sequence's cache, an
// unknown seq or token, or more than n_batch entries throw engine_error(invalid_argument);
// new positions that need more blocks than the pool has free or cached throw
// engine_error(kv_cache_full) (possible only with n_kv_tokens below n_seq x n_ctx).
// Does not allocate after the first call with a given number of want_logits entries.
void decode(context& ctx, std::span<const batch_entry> batch);
// Logits (n_vocab floats) of the i-th entry of the last batch that had want_logits set. On
// the CUDA backend they stay on the device until asked for here.
std::span<const float> logits(const context& ctx, int batch_index);
// Forgets sequence `seq` (its positions restart at 0). Its full blocks stay in the prefix
// cache; the others return to the pool.
void sequence_clear(context& ctx, int seq);
// Gives sequence `dst` the cache of sequence `src` (a shared prompt prefilled once): dst's
// positions then continue where src's do and its own are forgotten. src == dst is a no-op.
// Full blocks are shared, the partial last one copied: engine_error(kv_cache_full) when no
// block is left for that copy.
void sequence_copy(context& ctx, int src, int dst);
// Starts the empty sequence `seq` with the cached blocks of the longest prefix of `prompt`
// that a sequence of this context computed before (whole blocks, identical tokens from
// position 0; shared, never copied) and returns how many positions it now holds: a multiple
// of kv_block_size, always less than prompt.size() so that the caller decodes at least the
// last prompt token (from that position on) and gets its logits. 0 when nothing is cached,
// and always on models with sliding-window layers (their rings are not shared).
int sequence_reuse_prefix(context& ctx, int seq, std::span<const token_id> prompt);
// The block pool of a context, in blocks of kv_block_size positions.
struct kv_cache_stats {
  int n_blocks = 0;  // the pool
  int n_used = 0;    // held by sequences
  int n_cached = 0;  // held by no sequence, kept for prefix reuse (reclaimed when needed)
};
kv_cache_stats context_kv_stats(const context& ctx);
int context_n_ctx(const context& ctx);
// Device memory the context holds: KV cache, activations and scratch (0 on the CPU backend).
uint64_t context_device_bytes(const context& ctx);
int context_n_threads(const context& ctx);  // the resolved count (never 0)

// ---- sampling ----
// Applied in this order: repeat penalty (multiplicative, llama.cpp's: once per distinct token
// of the last repeat_last_n of the whole history), then the additive terms as OpenAI defines
// them, logit[t] += logit_bias[t] - presence_penalty * (count[t] > 0) - frequency_penalty *
// count[t] with count[t] the occurrences of t among the generated tokens (the history after
// the prompt); then argmax when temperature is 0, else top-k, top-p, min-p, temperature and a
// draw from a seeded xoshiro256** generator.
struct sampling_params {
  float temperature = 0.8f;        // 0 → greedy
  int top_k = 40;                  // 0 → off
  float top_p = 0.95f;             // 1 → off
  float min_p = 0.05f;             // 0 → off
  float repeat_penalty = 1.0f;     // 1 → off (the default, as in llama.cpp and vLLM)
  int repeat_last_n = 64;          // 0 → off, -1 → the whole history
  float presence_penalty = 0.0f;   // 0 → off
  float frequency_penalty = 0.0f;  // 0 → off
  // (token, bias) pairs with tokens in [0, n_vocab); a token given twice takes the last bias.
  // -100 effectively bans a token, +100 all but forces it.
  std::vector<std::pair<token_id, float>> logit_bias;
  uint64_t seed = 0xFFFFFFFF;  // same seed + same inputs → same tokens
};
sampling_params sampling_default_params();

class sampler;
struct sampling_step;  // engine/token_choice.h
// Picks the next token of the i-th entry of the last batch that had want_logits set, with
// the sampler's parameters and state, on the backend that ran the batch: on CUDA the logits
// never leave the device and only the chosen token comes back. history[0, n_prompt) is the
// prompt: presence and frequency penalties count only the tokens after it. `allowed`
// (constrained decoding): one bit per token, (n_vocab + 63) / 64 words, bit t of word t / 64
// set when token t may be chosen; at least one must be. Empty: any token. Same choice as
// sampler::sample(logits(ctx, i), history, n_prompt, allowed).
token_id sample(context& ctx, int batch_index, sampler& s, std::span<const token_id> history,
                size_t n_prompt = 0, std::span<const uint64_t> allowed = {});
// One row of a batched choice: engine::sample's arguments.
struct sample_request {
  int batch_index = 0;
  sampler* s = nullptr;
  std::span<const token_id> history;
  size_t n_prompt = 0;
  std::span<const uint64_t> allowed;
};
// tokens[i] = engine::sample(ctx, requests[i]...), for requests with distinct samplers: the
// same choices, made together. On CUDA that is one device round trip for all the rows
// instead of one each (a decode step of many sequences samples them all at once).
void sample(context& ctx, std::span<const sample_request> requests, std::span<token_id> tokens);
// ---- log-probabilities ----
inline constexpr int max_top_logprobs = 20;
struct token_logprob {
  token_id token = 0;
  float logprob = 0.0f;
};
struct token_logprobs {
  float logprob = 0.0f;  // of the token asked about
  int n_top = 0;
  std::array<token_logprob, max_top_logprobs> top{};  // most likely first, ties by lower id
};
// The log-probability of `token` and of the n_top (<= max_top_logprobs, at most n_vocab) most
// likely tokens of the i-th logits row of the last batch: the log-softmax of the model's raw
// logits, before penalties, logit_bias and temperature (vLLM's default), so they say what the
// model believes whatever the request's sampling knobs. Computed on the backend that ran the
// batch: on CUDA only the n_top pairs come back.
void logprobs(context& ctx, int batch_index, token_id token, int n_top, token_logprobs& out);

// What a sampler carries from one token to the next besides the history: the position of its
// random generator. With the history (which holds the penalty windows) it is the whole state,
// so a sampler restored from it on another worker continues as the saved one would have
// (worker failover, docs/failover.md).
struct sampler_state {
  uint64_t rng = 0;
};

class sampler {
 public:
  sampler(const sampling_params& params, int n_vocab);
  // Picks the next token from logits (not modified), given the sequence so far, among the
  // `allowed` tokens; the first n_prompt tokens of history are the prompt (see engine::sample).
  token_id sample(std::span<const float> logits, std::span<const token_id> history,
                  size_t n_prompt = 0, std::span<const uint64_t> allowed = {});
  sampler_state state() const { return {.rng = rng_state_}; }
  void restore(const sampler_state& state) { rng_state_ = state.rng; }

 private:
  friend void sample(context&, std::span<const sample_request>, std::span<token_id>);
  // The next choice resolved for a backend: the knobs, the distinct tokens of the
  // repeat-penalty window into penalized_ (in order of first appearance, none when the
  // penalty is off), the additive terms into offsets_ (one per distinct token), the allowed
  // tokens and, for a stochastic choice, the draw (advances the generator).
  sampling_step next_step(std::span<const token_id> history, size_t n_prompt, int n_vocab,
                          std::span<const uint64_t> allowed);
  void collect_offsets(std::span<const token_id> generated, int n_vocab);

  sampling_params params_;
  uint64_t rng_state_;
  std::vector<std::pair<float, token_id>> candidates_;  // reused: no allocation per token
  std::vector<token_id> penalized_;                     // reused as well
  std::vector<token_offset> offsets_;                   // reused as well
  std::vector<float> bias_;        // (n_vocab,) logit_bias; empty without offsets
  std::vector<token_id> biased_;   // distinct tokens with a bias
  std::vector<int> counts_;        // (n_vocab,) zero between steps
  std::vector<token_id> counted_;  // tokens whose count is not zero in a step
};

}  // namespace rbee::engine
