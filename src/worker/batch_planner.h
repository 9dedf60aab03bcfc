#pragma once
// Which tokens go into the next decode call (continuous batching). Pure logic, so the policy
// is unit-tested without a model:
//   - every generating slot feeds its last sampled token (decodes never wait);
//   - the rest of the batch, at most `prefill_budget` tokens, goes to prompts still being
//     prefilled, in admission order, so a long new prompt is processed in chunks between the
//     running decodes instead of stalling them.

#include <span>
#include <vector>

namespace rbee::worker {

struct slot_demand {
  int slot = 0;
  bool generating = false;   // has a sampled token to feed
  int prompt_remaining = 0;  // prompt tokens not yet decoded (0 when generating)
};

struct planned_work {
  int slot = 0;
  int n_tokens = 0;  // 1 for a generating slot
  bool generating = false;
  bool prompt_done = false;  // this chunk ends the prompt: its last token wants logits
};

// slots: in admission order. n_batch: the decode call's capacity (>= number of generating
// slots, asserted). prefill_budget: most prompt tokens per call (>= 1).
std::vector<planned_work> plan_batch(std::span<const slot_demand> slots, int n_batch,
                                     int prefill_budget);

}  // namespace rbee::worker
