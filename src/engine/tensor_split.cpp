#include "engine/tensor_split.h"

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>

#include "engine/model.h"
#include "engine/parts_backend.h"

namespace rbee::engine {

namespace {

[[noreturn]] void throw_invalid(const std::string& message) {
  throw engine_error(error_code::invalid_argument, "tensor split: " + message);
}

// Column slices of `w` of `width` columns must start and end on whole blocks.
void check_column_slices(const weight& w, int64_t width, const std::string& name) {
  const uint32_t block = traits_of(w.type).block_size;
  if (width % block != 0)
    throw_invalid(str(name, " (", to_string(w.type), ") would be cut every ", width, " of its ",
                      w.n_cols, " columns, inside its blocks of ", block,
                      " columns; the slices of a quantized matrix must be whole blocks (give "
                      "fewer parts, or use split layer)"));
}

// Rows [first, first + n) of w: a view into the same memory.
weight rows_of(const weight& w, int64_t first, int64_t n) {
  weight part = w;
  part.data = w.row(first);
  part.n_rows = n;
  return part;
}

// Columns [first, first + n) of every row of w, copied into `owned` (whole blocks: checked).
weight columns_of(const weight& w, int64_t first, int64_t n,
                  std::vector<std::vector<uint8_t>>& owned) {
  if (!w) return w;
  weight part = w;
  part.n_cols = n;
  const size_t skip = row_size(w.type, first), bytes = part.row_bytes();
  std::vector<uint8_t>& data = owned.emplace_back(bytes * static_cast<size_t>(w.n_rows));
  for (int64_t r = 0; r < w.n_rows; ++r)
    std::memcpy(data.data() + static_cast<size_t>(r) * bytes, w.row(r) + skip, bytes);
  part.data = data.data();
  return part;
}

// Where the whole model's weight `w` is in part `p`: the same member of the same layer (or
// of the model).
const weight* same_member(const model& whole, const model& p, const weight* w, int layer) {
  if (layer >= 0) {
    const auto* from = reinterpret_cast<const uint8_t*>(&whole.layers[static_cast<size_t>(layer)]);
    const auto* to = reinterpret_cast<const uint8_t*>(&p.layers[static_cast<size_t>(layer)]);
    return reinterpret_cast<const weight*>(to + (reinterpret_cast<const uint8_t*>(w) - from));
  }
  for (const auto member : {&model::tok_embd, &model::output_norm, &model::output,
                            &model::rope_freqs, &model::rope_freqs_long})
    if (w == &(whole.*member)) return &(p.*member);
  return nullptr;
}

// Runs a job on every part at once: part 0 on the calling thread, each other part on a
// thread of its own that waits for the next job. A part that throws aborts the communicator,
// so that the others stop waiting for its sums, and run rethrows its exception.
class part_threads {
 public:
  part_threads(size_t n_parts, communicator& comm) : comm_(comm) {
    for (size_t p = 1; p < n_parts; ++p) threads_.emplace_back([this, p] { serve(p); });
  }
  ~part_threads() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    start_cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  part_threads(const part_threads&) = delete;
  part_threads& operator=(const part_threads&) = delete;

  void run(const std::function<void(size_t)>& job) {
    {
      std::lock_guard lock(mutex_);
      job_ = &job;
      failure_ = nullptr;
      running_ = threads_.size();
      ++round_;
    }
    start_cv_.notify_all();
    run_part(0);
    std::unique_lock lock(mutex_);
    done_cv_.wait(lock, [&] { return running_ == 0; });
    if (failure_) std::rethrow_exception(failure_);
  }

 private:
  void run_part(size_t p) {
    try {
      (*job_)(p);
    } catch (...) {
      comm_.abort();
      std::lock_guard lock(mutex_);
      if (!failure_) failure_ = std::current_exception();  // the first: the cause
    }
  }
  void serve(size_t p) {
    uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock lock(mutex_);
        start_cv_.wait(lock, [&] { return stop_ || round_ != seen; });
        if (stop_) return;
        seen = round_;
      }
      run_part(p);
      std::lock_guard lock(mutex_);
      if (--running_ == 0) done_cv_.notify_one();
    }
  }

  communicator& comm_;
  std::mutex mutex_;
  std::condition_variable start_cv_, done_cv_;
  const std::function<void(size_t)>* job_ = nullptr;
  uint64_t round_ = 0;
  size_t running_ = 0;
  bool stop_ = false;
  std::exception_ptr failure_;
  std::vector<std::thread> threads_;
};

// The parts decode together, each on its thread, joining their sums through the communicator;
// the first one holds the logits.
class tensor_split_context final : public parts_context {
 public:
  tensor_split_context(std::vector<std::unique_ptr<backend_context>> parts, communicator& comm,
                       std::mutex& decode_mutex)
      : parts_context(std::move(parts), 0),
        threads_(parts_.size(), comm),
        decode_mutex_(decode_mutex) {}

  void decode(std::span<const batch_entry> batch, const kv_block_tables& tables) override {
    std::lock_guard lock(decode_mutex_);
    threads_.run([&](size_t p) { parts_[p]->decode(batch, tables); });
  }

 private:
  part_threads threads_;
  std::mutex& decode_mutex_;  // the backend's
};

class tensor_split_backend final : public parts_backend {
 public:
  tensor_split_backend(std::vector<std::unique_ptr<backend>> parts,
                       std::unique_ptr<communicator> comm)
      : parts_backend(std::move(parts)), comm_(std::move(comm)) {}
  ~tensor_split_backend() override { parts_.clear(); }  // before the communicator they hold

  // The host's threads are shared among the parts (each runs on its own thread besides).
  std::unique_ptr<backend_context> create_context(const context_params& params) override {
    context_params part_params = params;
    part_params.n_threads = std::max(1, params.n_threads / static_cast<int>(parts_.size()));
    std::vector<std::unique_ptr<backend_context>> contexts;
    for (auto& p : parts_) contexts.push_back(p->create_context(part_params));
    return std::make_unique<tensor_split_context>(std::move(contexts), *comm_, decode_mutex_);
  }

 private:
  std::unique_ptr<communicator> comm_;
  std::mutex decode_mutex_;
};

}  // namespace

void check_tensor_split(const model& m, int n_parts) {
  const hparams& hp = m.hp;
  if (n_parts < 1) throw_invalid("no devices given");
  if (hp.n_expert > 0)
    throw_invalid(str("a mixture of experts (", hp.n_expert,
                      " experts per layer) does not split by tensors yet; use split layer"));
  for (const auto& [count, what] :
       {std::pair{hp.n_head, "attention heads"}, std::pair{hp.n_head_kv, "KV heads"},
        std::pair{hp.n_ff, "FFN rows (n_ff)"}})
    if (count % n_parts != 0)
      throw_invalid(str("the model's ", count, " ", what, " do not divide into ", n_parts,
                        " parts; give a number of devices that divides them, or use split "
                        "layer"));
  const int64_t q_width = int64_t{hp.n_head} / n_parts * hp.head_dim;
  for (size_t l = 0; l < m.layers.size(); ++l) {
    check_column_slices(m.layers[l].wo, q_width, str("blk.", l, ".attn_output.weight"));
    check_column_slices(m.layers[l].ffn_down, hp.n_ff / n_parts,
                        str("blk.", l, ".ffn_down.weight"));
  }
}

model_ptr make_tensor_part(const model& whole, int rank, int n_parts) {
  const hparams& hw = whole.hp;
  model_ptr p(new model(whole.file));
  p->info = whole.info;
  p->n_threads = whole.n_threads;
  p->hp = hw;
  p->hp.n_head = hw.n_head / n_parts;
  p->hp.n_head_kv = hw.n_head_kv / n_parts;
  p->hp.n_ff = hw.n_ff / n_parts;
  p->tok_embd = whole.tok_embd;
  p->output_norm = whole.output_norm;
  p->output = whole.output;
  p->rope_freqs = whole.rope_freqs;
  p->rope_freqs_long = whole.rope_freqs_long;
  const int64_t q_rows = int64_t{p->hp.n_head} * hw.head_dim;
  const int64_t kv_rows = int64_t{p->hp.n_head_kv} * hw.head_dim, ff_rows = p->hp.n_ff;
  for (const layer_weights& w : whole.layers) {
    layer_weights s = w;  // norms: the whole model's
    s.wq = rows_of(w.wq, rank * q_rows, q_rows);
    s.wk = rows_of(w.wk, rank * kv_rows, kv_rows);
    s.wv = rows_of(w.wv, rank * kv_rows, kv_rows);
    s.bq = columns_of(w.bq, rank * q_rows, q_rows, p->owned_weights);
    s.bk = columns_of(w.bk, rank * kv_rows, kv_rows, p->owned_weights);
    s.bv = columns_of(w.bv, rank * kv_rows, kv_rows, p->owned_weights);
    s.wo = columns_of(w.wo, rank * q_rows, q_rows, p->owned_weights);
    s.ffn_gate = rows_of(w.ffn_gate, rank * ff_rows, ff_rows);
    s.ffn_up = rows_of(w.ffn_up, rank * ff_rows, ff_rows);
    s.ffn_down = columns_of(w.ffn_down, rank * ff_rows, ff_rows, p->owned_weights);
    // phi3's fused matrices: wq .. ffn_up above are row ranges of them, the part's own.
    s.attn_qkv_fused = s.ffn_gate_up_fused = weight{};
    p->layers.push_back(std::move(s));
  }
  for (const weight_slot& s : whole.weight_slots)
    p->weight_slots.push_back({same_member(whole, *p, s.w, s.layer), s.layer});
  return p;
}

std::unique_ptr<backend> make_tensor_split_backend(std::vector<std::unique_ptr<backend>> parts,
                                                   std::unique_ptr<communicator> comm) {
  return std::make_unique<tensor_split_backend>(std::move(parts), std::move(comm));
}

}  // namespace rbee::engine
