#include "common/paths.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include "common/clock.h"

namespace rbee::common {
namespace {

namespace fs = std::filesystem;

// Sets an environment variable for one test, restoring the old value afterwards.
class scoped_env {
 public:
  scoped_env(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) {
      ::setenv(name, value, 1);
    } else {
      ::unsetenv(name);
    }
  }
  ~scoped_env() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

TEST(Paths, RbeeHomeFromEnvOrDefault) {
  scoped_env home("HOME", "/home/tester");
  {
    scoped_env rh("RBEE_HOME", nullptr);
    EXPECT_EQ(rbee_home(), fs::path("/home/tester/.rbee"));
    EXPECT_EQ(models_dir(), fs::path("/home/tester/.rbee/models"));
    EXPECT_EQ(logs_dir(), fs::path("/home/tester/.rbee/logs"));
  }
  scoped_env rh("RBEE_HOME", "~/state");
  EXPECT_EQ(rbee_home(), fs::path("/home/tester/state"));
}

TEST(Paths, ExpandUser) {
  scoped_env home("HOME", "/home/tester");
  EXPECT_EQ(expand_user("~"), "/home/tester");
  EXPECT_EQ(expand_user("~/x/y"), "/home/tester/x/y");
  EXPECT_EQ(expand_user("/abs/~/x"), "/abs/~/x");
  EXPECT_EQ(expand_user("~other/x"), "~other/x");
}

TEST(Paths, EnsureDirCreatesParentsAndRejectsFiles) {
  auto root = fs::temp_directory_path() / ("rbee-paths-test-" + std::to_string(::getpid()));
  auto deep = root / "a" / "b" / "c";
  EXPECT_EQ(ensure_dir(deep, 0700), deep);
  EXPECT_TRUE(fs::is_directory(deep));
  EXPECT_EQ(fs::status(deep).permissions() & fs::perms::all, fs::perms::owner_all);
  EXPECT_NO_THROW(ensure_dir(deep));  // idempotent
  std::ofstream(root / "file") << "x";
  EXPECT_THROW(ensure_dir(root / "file"), std::runtime_error);
  EXPECT_THROW(ensure_dir(root / "file" / "sub"), std::runtime_error);
  fs::remove_all(root);
}

TEST(Clock, ManualClockAdvancesBothTimes) {
  manual_clock c(1000);
  auto t0 = c.now();
  c.advance(std::chrono::milliseconds(1500));
  EXPECT_EQ(c.now() - t0, std::chrono::milliseconds(1500));
  EXPECT_EQ(c.unix_now(), 1001);
  c.advance(std::chrono::milliseconds(600));
  EXPECT_EQ(c.unix_now(), 1002);  // 2.1 s in total
  const clock& as_interface = c;
  EXPECT_EQ(as_interface.unix_now(), 1002);
}

TEST(Clock, SystemClockIsRecent) {
  EXPECT_GT(system_clock_instance().unix_now(), 1'600'000'000);
}

}  // namespace
}  // namespace rbee::common
