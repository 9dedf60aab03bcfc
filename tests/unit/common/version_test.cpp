#include "common/version.h"

#include <gtest/gtest.h>

namespace rbee::common {
namespace {

TEST(Version, CurrentMatchesProjectVersion) {
  auto v = current_version();
  EXPECT_EQ(version_string(), v.to_string());
  EXPECT_EQ(parse_semver(version_string()), v);
}

TEST(Version, Parse) {
  EXPECT_EQ(parse_semver("1.2.3"), (semver{1, 2, 3}));
  EXPECT_EQ(parse_semver("v0.10.0"), (semver{0, 10, 0}));
  EXPECT_EQ(parse_semver("1.2.3-rc.1+build5"), (semver{1, 2, 3}));
  EXPECT_EQ(parse_semver("1.2"), std::nullopt);
  EXPECT_EQ(parse_semver("1.2.3.4"), std::nullopt);
  EXPECT_EQ(parse_semver("1.x.3"), std::nullopt);
  EXPECT_EQ(parse_semver(""), std::nullopt);
  EXPECT_EQ(parse_semver("-1.2.3"), std::nullopt);
  EXPECT_EQ(parse_semver("1.2.99999999999"), std::nullopt);
}

TEST(Version, CompatibleWhenMajorMinorMatch) {
  EXPECT_TRUE(compatible({0, 1, 0}, {0, 1, 7}));
  EXPECT_FALSE(compatible({0, 1, 0}, {0, 2, 0}));
  EXPECT_FALSE(compatible({1, 1, 0}, {2, 1, 0}));
  EXPECT_LT((semver{0, 1, 9}), (semver{0, 2, 0}));
}

}  // namespace
}  // namespace rbee::common
