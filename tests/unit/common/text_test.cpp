#include "common/text.h"

#include <gtest/gtest.h>

namespace rbee::common {
namespace {

TEST(Text, TrimDropsSurroundingWhitespaceOnly) {
  EXPECT_EQ(trim("  a b\t\r\n"), "a b");
  EXPECT_EQ(trim(" \t\n"), "");
  EXPECT_EQ(trim(""), "");
}

TEST(Text, ParseU64AcceptsPlainDecimalsOnly) {
  EXPECT_EQ(parse_u64(" 42 "), 42u);
  EXPECT_EQ(parse_u64("9999999999999999999"), 9999999999999999999ull);
  EXPECT_EQ(parse_u64("18446744073709551615"), std::nullopt) << "20 digits are refused";
  EXPECT_EQ(parse_u64("-1"), std::nullopt);
  EXPECT_EQ(parse_u64("12 MiB"), std::nullopt);
  EXPECT_EQ(parse_u64(""), std::nullopt);
}

TEST(Text, UrlEncodeEscapesReservedCharacters) {
  EXPECT_EQ(url_encode("a b/c?d=e&f"), "a%20b%2Fc%3Fd%3De%26f");
  EXPECT_EQ(url_encode("task-1_x.y~"), "task-1_x.y~");
  EXPECT_EQ(url_encode("\xff"), "%FF");
}

}  // namespace
}  // namespace rbee::common
