// llm-worker-rbee's prefix cache over real HTTP: a second request with the same long prompt
// starts from the KV blocks the first one computed, says how many prompt tokens were cached
// in its end event, and answers exactly as the first; a prompt that shares only its start
// reuses only that start.
#include <string>

#include "worker_fixture.h"

namespace rbee::e2e::worker_test {
namespace {

class WorkerPrefixCache : public ::testing::Test {
 protected:
  void SetUp() override { ignore_sigpipe(); }
  temp_home home_;
};

// A long shared start, as a system prompt is.
std::string long_prompt(const std::string& ending) {
  std::string text;
  for (int i = 0; i < 12; ++i)
    text += "Lily and her dog Max went to the park to play with a big red ball. ";
  return text + ending;
}

// Whole blocks of 16 positions before the prompt's last token, which is always decoded.
int cacheable(int tokens_in) {
  return (tokens_in - 1) / 16 * 16;
}

TEST_F(WorkerPrefixCache, ARepeatedPromptStartsFromItsCachedBlocks) {
  worker_process worker(home_, {"--model", stories, "--slots", "2"});
  worker.wait_ready();
  auto client = worker.client();
  const json request = greedy(long_prompt("Once upon a time"), 32);

  stream_result first = infer(client, request);
  ASSERT_EQ(first.status, 200) << first.error.body;
  ASSERT_EQ(first.end.value("type", ""), "end") << first.end.dump();
  const int tokens_in = first.end.value("tokens_in", 0);
  ASSERT_GT(tokens_in, 200);
  EXPECT_EQ(first.end.value("tokens_cached", -1), 0);

  stream_result second = infer(client, request);
  ASSERT_EQ(second.status, 200) << second.error.body;
  ASSERT_EQ(second.end.value("type", ""), "end") << second.end.dump();
  EXPECT_EQ(second.end.value("tokens_in", 0), tokens_in);
  EXPECT_EQ(second.end.value("tokens_cached", -1), cacheable(tokens_in));
  EXPECT_EQ(second.text, first.text);
  EXPECT_EQ(second.end.value("tokens_out", 0), 32);

  // Another ending: the shared start is reused, the rest is prefilled.
  stream_result other = infer(client, greedy(long_prompt("The cat sat on the mat"), 8));
  ASSERT_EQ(other.end.value("type", ""), "end") << other.end.dump();
  const int other_cached = other.end.value("tokens_cached", -1);
  EXPECT_GT(other_cached, 150);
  EXPECT_LT(other_cached, other.end.value("tokens_in", 0));
  EXPECT_EQ(other_cached % 16, 0);
}

}  // namespace
}  // namespace rbee::e2e::worker_test
