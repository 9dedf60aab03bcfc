#include "worker/batch_planner.h"

#include <algorithm>
#include <cassert>

namespace rbee::worker {

std::vector<planned_work> plan_batch(std::span<const slot_demand> slots, int n_batch,
                                     int prefill_budget) {
  assert(prefill_budget >= 1 && "plan_batch: prefill budget must be positive");
  std::vector<planned_work> plan;
  int used = 0;
  for (const auto& s : slots) {
    if (!s.generating) continue;
    plan.push_back({.slot = s.slot, .n_tokens = 1, .generating = true, .prompt_done = false});
    ++used;
  }
  assert(used <= n_batch && "plan_batch: more generating slots than the batch holds");
  int budget = std::min(n_batch - used, prefill_budget);
  for (const auto& s : slots) {
    if (budget <= 0) break;
    if (s.generating || s.prompt_remaining <= 0) continue;
    int n = std::min(s.prompt_remaining, budget);
    plan.push_back({.slot = s.slot,
                    .n_tokens = n,
                    .generating = false,
                    .prompt_done = n == s.prompt_remaining});
    budget -= n;
  }
  return plan;
}

}  // namespace rbee::worker
