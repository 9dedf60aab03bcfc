#include "queen/narration.h"

#include <gtest/gtest.h>

namespace rbee::queen {
namespace {

TEST(Narration, ExtraFieldsNeverOverrideItsOwn) {
  auto e = narration("rbee-hive", "download_progress", "Downloading: 40%",
                     {{"type", "downloading"}, {"percent", 40}, {"node", "n"}});
  EXPECT_EQ(e["type"], "narration");
  EXPECT_EQ(e["actor"], "rbee-hive");
  EXPECT_EQ(e["action"], "download_progress");
  EXPECT_EQ(e["human"], "Downloading: 40%");
  EXPECT_EQ(e["percent"], 40);
  EXPECT_EQ(e["node"], "n");
}

}  // namespace
}  // namespace rbee::queen
