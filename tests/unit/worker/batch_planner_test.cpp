// The continuous-batching policy: decodes never wait, prompts are prefilled in bounded chunks.
#include "worker/batch_planner.h"

#include <gtest/gtest.h>

namespace rbee::worker {
namespace {

int total_tokens(const std::vector<planned_work>& plan) {
  int n = 0;
  for (const auto& w : plan) n += w.n_tokens;
  return n;
}

TEST(BatchPlanner, EmptyWhenNothingToDo) {
  EXPECT_TRUE(plan_batch({}, 512, 128).empty());
}

TEST(BatchPlanner, EveryGeneratingSlotGetsOneToken) {
  std::vector<slot_demand> slots = {{.slot = 0, .generating = true, .prompt_remaining = 0},
                                    {.slot = 2, .generating = true, .prompt_remaining = 0}};
  auto plan = plan_batch(slots, 512, 128);
  ASSERT_EQ(plan.size(), 2u);
  EXPECT_EQ(plan[0].slot, 0);
  EXPECT_EQ(plan[1].slot, 2);
  for (const auto& w : plan) {
    EXPECT_TRUE(w.generating);
    EXPECT_EQ(w.n_tokens, 1);
  }
}

TEST(BatchPlanner, LongPromptIsChunkedAlongsideDecodes) {
  std::vector<slot_demand> slots = {{.slot = 0, .generating = true, .prompt_remaining = 0},
                                    {.slot = 1, .generating = false, .prompt_remaining = 1000}};
  auto plan = plan_batch(slots, 512, 128);
  ASSERT_EQ(plan.size(), 2u);
  EXPECT_TRUE(plan[0].generating);
  EXPECT_EQ(plan[1].slot, 1);
  EXPECT_EQ(plan[1].n_tokens, 128);
  EXPECT_FALSE(plan[1].prompt_done);
}

TEST(BatchPlanner, LastChunkEndsThePrompt) {
  std::vector<slot_demand> slots = {{.slot = 3, .generating = false, .prompt_remaining = 40}};
  auto plan = plan_batch(slots, 512, 128);
  ASSERT_EQ(plan.size(), 1u);
  EXPECT_EQ(plan[0].n_tokens, 40);
  EXPECT_TRUE(plan[0].prompt_done);
}

TEST(BatchPlanner, PrefillBudgetIsSharedInAdmissionOrder) {
  std::vector<slot_demand> slots = {{.slot = 2, .generating = false, .prompt_remaining = 100},
                                    {.slot = 0, .generating = false, .prompt_remaining = 100},
                                    {.slot = 1, .generating = false, .prompt_remaining = 100}};
  auto plan = plan_batch(slots, 512, 150);
  ASSERT_EQ(plan.size(), 2u);
  EXPECT_EQ(plan[0].slot, 2);
  EXPECT_EQ(plan[0].n_tokens, 100);
  EXPECT_TRUE(plan[0].prompt_done);
  EXPECT_EQ(plan[1].slot, 0);
  EXPECT_EQ(plan[1].n_tokens, 50);
  EXPECT_FALSE(plan[1].prompt_done);
}

TEST(BatchPlanner, BatchCapacityBoundsPrefill) {
  std::vector<slot_demand> slots;
  for (int i = 0; i < 6; ++i)
    slots.push_back({.slot = i, .generating = true, .prompt_remaining = 0});
  slots.push_back({.slot = 6, .generating = false, .prompt_remaining = 50});
  auto plan = plan_batch(slots, 8, 128);
  EXPECT_EQ(total_tokens(plan), 8);
  EXPECT_EQ(plan.back().slot, 6);
  EXPECT_EQ(plan.back().n_tokens, 2);
}

}  // namespace
}  // namespace rbee::worker
