#pragma once
// The oracle: a plain, slow, obviously-correct fp32 forward pass of one sequence, in the style
// of llama2.c's run.c (one loop per op, shapes on every buffer). All weights are dequantized
// with the reference dequantizer up front. Tests compare the fast engine against it; it lives
// in the test-support library (rbee_engine_testing), outside every product.
#include <string>
#include <vector>

#include "engine/engine.h"
#include "engine/model.h"

namespace rbee::engine::reference {

class transformer {
 public:
  // Reads the hyperparameters and dequantizes every weight of a GGUF file. n_ctx picks
  // phi3's rotation factors as a context of that size would (0: its short ones).
  explicit transformer(const std::string& path, int n_ctx = 0);

  // Runs `token` at position `pos` (0, 1, 2, ... in order) and returns the logits (n_vocab,).
  const std::vector<float>& forward(token_id token, int pos);

  const hparams& hp() const { return hp_; }

 private:
  struct layer {
    std::vector<float> attn_norm;       // (dim,)
    std::vector<float> wq;              // (n_head*head_dim, dim)
    std::vector<float> wk;              // (kv_dim, dim)
    std::vector<float> wv;              // (kv_dim, dim)
    std::vector<float> bq, bk, bv;      // (n_head*head_dim,), (kv_dim,), (kv_dim,) or empty
    std::vector<float> q_norm;          // (head_dim,) or empty
    std::vector<float> k_norm;          // (head_dim,) or empty
    std::vector<float> wo;              // (dim, n_head*head_dim)
    std::vector<float> attn_post_norm;  // (dim,) or empty
    std::vector<float> ffn_norm;        // (dim,)
    std::vector<float> w1;              // gate (hidden, dim)
    std::vector<float> w3;              // up (hidden, dim)
    std::vector<float> w2;              // down (dim, hidden)
    std::vector<float> ffn_post_norm;   // (dim,) or empty
    // Mixture of experts (then w1, w3, w2 are empty): router (n_expert, dim) and per expert
    // gate (hidden, dim), up (hidden, dim), down (dim, hidden).
    std::vector<float> router;
    std::vector<std::vector<float>> expert_w1, expert_w3, expert_w2;
    // qwen2moe's shared expert: gate vector (dim,), gate (shared, dim), up, down (dim, shared)
    std::vector<float> shared_gate_inp, shared_w1, shared_w3, shared_w2;
  };

  void moe_ffn(const layer& w);

  hparams hp_;
  std::vector<float> token_embedding_;  // (vocab, dim)
  std::vector<layer> layers_;
  std::vector<float> final_norm_;  // (dim,)
  std::vector<float> wcls_;        // (vocab, dim)
  std::vector<float> rope_freqs_;  // (n_rot/2,) or empty

  // Run state.
  std::vector<float> x_;            // (dim,) activation at the current position
  std::vector<float> xb_;           // (dim,) normalised x
  std::vector<float> q_;            // (n_head*head_dim,)
  std::vector<float> k_;            // (kv_dim,)
  std::vector<float> v_;            // (kv_dim,)
  std::vector<float> att_out_;      // (n_head*head_dim,)
  std::vector<float> att_;          // (seq_len,) scores of one head
  std::vector<float> hb_;           // (hidden,)
  std::vector<float> hb2_;          // (hidden,)
  std::vector<float> moe_out_;      // (dim,) weighted sum of the chosen experts' outputs
  std::vector<float> xb2_;          // (dim,) one expert's output
  std::vector<float> logits_;       // (vocab,)
  std::vector<float> key_cache_;    // (layer, seq_len, kv_dim)
  std::vector<float> value_cache_;  // (layer, seq_len, kv_dim)
  int seq_len_ = 0;
};

}  // namespace rbee::engine::reference
