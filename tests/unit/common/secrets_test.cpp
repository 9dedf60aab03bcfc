#include "common/secrets.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"

namespace rbee::common {
namespace {

namespace fs = std::filesystem;

TEST(Secrets, RandomTokenIsHexOfRequestedLengthAndUnique) {
  auto a = random_token();
  auto b = random_token();
  EXPECT_EQ(a.size(), 64u);
  EXPECT_NE(a, b);
  EXPECT_EQ(a.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_EQ(random_token(4).size(), 8u);
}

TEST(Secrets, ConstantTimeEquals) {
  EXPECT_TRUE(constant_time_equals("", ""));
  EXPECT_TRUE(constant_time_equals("secret", "secret"));
  EXPECT_FALSE(constant_time_equals("secret", "secreT"));
  EXPECT_FALSE(constant_time_equals("secret", "secret2"));
  EXPECT_FALSE(constant_time_equals("secret2", "secret"));
  EXPECT_FALSE(constant_time_equals("", "x"));
  // Embedded NULs are compared, not treated as terminators.
  EXPECT_FALSE(constant_time_equals(std::string_view("a\0b", 3), std::string_view("a\0c", 3)));
}

TEST(Secrets, SecretFileIsOwnerOnly) {
  auto dir = fs::temp_directory_path() / ("rbee-secrets-test-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  auto p = dir / "hive.token";
  write_secret_file(p, "abc\n");
  struct stat st {};
  ASSERT_EQ(::stat(p.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(read_secret_file(p), "abc");
  write_secret_file(p, "def");  // replaces
  EXPECT_EQ(read_secret_file(p), "def");
  EXPECT_THROW(read_secret_file(dir / "missing"), std::runtime_error);
  EXPECT_THROW(write_secret_file(dir / "no" / "dir", "x"), std::runtime_error);
  fs::remove_all(dir);
}

TEST(Log, TokenFingerprintIsShortSha256Prefix) {
  // SHA-256("abc") = ba7816bf...
  EXPECT_EQ(token_fingerprint("abc"), "ba7816bf");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(token_fingerprint(""), "none");
  EXPECT_EQ(token_fingerprint("some-long-secret-token").size(), 8u);
}

}  // namespace
}  // namespace rbee::common
