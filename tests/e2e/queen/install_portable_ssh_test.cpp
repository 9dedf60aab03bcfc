// `rbee setup install` onto nodes that are not this machine's Debian: each test host sees only
// a minimal root over SSH (a shell and a few tools, another distribution's /etc/os-release, no
// apt, none of the libraries rbee's programs link). The install copies the hive and the worker
// with their libraries, glibc and its loader included, and the node then serves a request, even
// one without any libc of its own; a node whose CPU the binaries were not built for, or whose
// kernel is older than the shipped glibc supports, is refused before anything is copied. The
// hive there downloads with the caller's hub settings, as a local one does.
#include <gtest/gtest.h>
#include <sys/utsname.h>

#include "harness/hub_server.h"
#include "harness/scenario_fixture.h"
#include "queen/install_bundle.h"

namespace rbee::e2e::scenario {
namespace {

namespace fs = std::filesystem;

// The oldest kernel docs/cli.md and the README state for a build on Debian 12: the ABI tag of
// its glibc, which the install ships.
const char* const documented_kernel_floor = "3.2.0";

// The newest ABI tag among the installed programs and libraries, read from the copied files.
queen::kernel_version newest_abi_tag(const fs::path& install) {
  std::vector<fs::path> files = {install / "rbee-hive", install / "llm-worker-rbee"};
  for (const auto& entry : fs::directory_iterator(install / "lib")) files.push_back(entry.path());
  queen::kernel_version newest;
  for (const auto& file : files) {
    auto kernel = queen::read_elf_requirements(file).oldest_kernel;
    if (kernel && *kernel > newest) newest = *kernel;
  }
  return newest;
}

// Any C library or ELF loader in `root` outside `skip` (glibc's, musl's).
std::vector<fs::path> libcs_in(const fs::path& root, const fs::path& skip) {
  std::vector<fs::path> found;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator();
       ++it) {
    if (it->path() == skip) {
      it.disable_recursion_pending();
      continue;
    }
    const std::string name = it->path().filename().string();
    if (name.starts_with("libc.") || name.starts_with("ld-linux") || name.starts_with("ld-musl")) {
      found.push_back(it->path());
    }
  }
  return found;
}

const char* const fedora_release =
    "NAME=\"Fedora Linux\"\nVERSION_ID=40\nID=fedora\n"
    "PRETTY_NAME=\"Fedora Linux 40 (Server Edition)\"\n";

TEST(InstallPortable, ANodeWithoutAnyLibcRunsTheInstalledHiveAndWorker) {
  if (auto why = scenario_hosts::unavailable_reason(); !why.empty()) GTEST_SKIP() << why;
  minimal_root root("nolibc", fedora_release, minimal_root::programs::busybox);
  root.add_file(stories_path());  // the model, at the same path on the node
  scenario_hosts hosts({"nolibc"}, {{"nolibc", &root}});
  hosts.queen().start();
  const fs::path install = hosts.install_path("nolibc");
  // What the node lacks: a package manager, the C++ runtime rbee's programs load, any libc.
  ASSERT_FALSE(fs::exists(root.outside("/usr/bin/apt-get")));
  ASSERT_FALSE(fs::exists(root.outside("/usr/lib/x86_64-linux-gnu/libstdc++.so.6")));
  ASSERT_EQ(libcs_in(root.path(), root.outside(install)), std::vector<fs::path>{});

  ASSERT_EQ(hosts.add_node("nolibc").exit_code, 0) << hosts.queen().queen_log();
  auto installed = hosts.install("nolibc");
  ASSERT_EQ(installed.exit_code, 0) << installed.out << installed.err << hosts.queen().queen_log();
  // It says what it found on the node (this machine's kernel: the host is a namespace of it).
  utsname here{};
  ASSERT_EQ(uname(&here), 0);
  EXPECT_TRUE(contains(installed.err, std::string("Fedora Linux 40 (Server Edition), Linux ") +
                                          here.release + " " + here.machine + ", no glibc"))
      << installed.err;
  // glibc and its loader are shipped, and the copied programs name that loader.
  const std::string loader =
      fs::path(queen::read_elf_requirements(binary_path("rbee-hive")).interpreter)
          .filename()
          .string();
  EXPECT_TRUE(fs::exists(root.outside(install / "lib/libstdc++.so.6")));
  EXPECT_TRUE(fs::exists(root.outside(install / "lib/libc.so.6")));
  EXPECT_TRUE(fs::exists(root.outside(install / "lib" / loader)));
  for (const char* program : {"rbee-hive", "llm-worker-rbee"}) {
    EXPECT_EQ(queen::read_elf_requirements(root.outside(install / program)).interpreter,
              (install / "lib" / loader).string())
        << program;
  }
  EXPECT_EQ(libcs_in(root.path(), root.outside(install)), std::vector<fs::path>{})
      << "nothing of glibc outside the install path";
  // What the install says the node needs is what the copied files need, and the docs say it.
  auto needed = newest_abi_tag(root.outside(install)).to_string();
  EXPECT_EQ(needed, documented_kernel_floor) << "the newest ABI tag of the shipped files";
  EXPECT_TRUE(contains(installed.err, "rbee needs Linux " + needed + " or newer on "))
      << installed.err;

  auto& q = hosts.queen();
  auto r = q.infer(stories_ref(), {"--max-tokens", "4"}, "nolibc");
  ASSERT_EQ(r.exit_code, 0) << r.err << q.logs();
  EXPECT_FALSE(r.out.empty());
  auto status = q.cli({"hive", "status", "--node", "nolibc", "--json"});
  ASSERT_EQ(status.exit_code, 0) << status.err;
  EXPECT_EQ(nlohmann::json::parse(status.out).value("running", false), true) << status.out;
  auto hive = pids_with_cmdline(install.string() + "/rbee-hive");
  ASSERT_EQ(hive.size(), 1u);
  // It runs in the node's root, with the files the install put there.
  EXPECT_EQ(fs::read_symlink("/proc/" + std::to_string(hive[0]) + "/root"), root.path());
  EXPECT_TRUE(hosts.stop_all()) << "processes left after the queen stopped";
}

// A node whose kernel is older than the shipped glibc's ABI tag (CentOS 6's 2.6.32): the test
// host runs this machine's kernel, so its uname is told to answer as that one (a root of
// this machine's tools: busybox's sh runs its own uname whatever the PATH says).
TEST(InstallPortable, ANodeWithAnOlderKernelThanTheShippedGlibcIsRefusedBeforeAnythingIsCopied) {
  if (auto why = scenario_hosts::unavailable_reason(); !why.empty()) GTEST_SKIP() << why;
  minimal_root root("oldkernel", fedora_release);
  root.add_script("/usr/local/bin/uname",
                  "#!/bin/sh\nif [ \"$1\" = -r ]; then echo 2.6.32-754.el6.x86_64; "
                  "else exec /bin/uname \"$@\"; fi\n");
  scenario_hosts hosts({"oldkernel"}, {{"oldkernel", &root}});
  hosts.queen().start();
  ASSERT_EQ(hosts.add_node("oldkernel").exit_code, 0) << hosts.queen().queen_log();

  auto r = hosts.install("oldkernel");
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_TRUE(contains(r.err, "Cannot install on 'oldkernel'")) << r.err;
  EXPECT_TRUE(contains(r.err, "Linux 2.6.32-754.el6.x86_64")) << r.err;
  EXPECT_TRUE(contains(r.err, std::string("need Linux ") + documented_kernel_floor + " or newer"))
      << r.err;
  EXPECT_FALSE(fs::exists(root.outside(hosts.install_path("oldkernel")))) << "nothing is copied";
  EXPECT_TRUE(hosts.stop_all());
}

TEST(InstallPortable, ANodeOfAnotherCpuIsRefusedBeforeAnythingIsCopied) {
  if (auto why = scenario_hosts::unavailable_reason(); !why.empty()) GTEST_SKIP() << why;
  minimal_root root("arm", fedora_release);
  // What an ARM server says of itself (the test host runs this machine's CPU, so its uname
  // is told to answer as one).
  root.add_script(
      "/usr/local/bin/uname",
      "#!/bin/sh\nif [ \"$1\" = -m ]; then echo aarch64; else exec /bin/uname \"$@\"; fi\n");
  scenario_hosts hosts({"arm"}, {{"arm", &root}});
  hosts.queen().start();
  ASSERT_EQ(hosts.add_node("arm").exit_code, 0) << hosts.queen().queen_log();

  auto r = hosts.install("arm");
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_TRUE(contains(r.err, "Cannot install on 'arm'")) << r.err;
  utsname here{};
  ASSERT_EQ(uname(&here), 0);
  EXPECT_TRUE(contains(r.err, std::string("Linux ") + here.release + " aarch64")) << r.err;
  EXPECT_TRUE(contains(r.err, "built for x86_64")) << r.err;
  EXPECT_FALSE(fs::exists(root.outside(hosts.install_path("arm")))) << "nothing is copied";
  EXPECT_TRUE(hosts.stop_all());
}

// The caller's hub settings reach the hive of a remote node too: the queen starts that hive
// without any, and the request's HF_ENDPOINT and HF_TOKEN are what it downloads with.
TEST(InstallPortable, ARemoteHiveDownloadsWithTheCallersHubAndToken) {
  if (auto why = scenario_hosts::unavailable_reason(); !why.empty()) GTEST_SKIP() << why;
  minimal_root root("hub", fedora_release);
  scenario_hosts hosts({"hub"}, {{"hub", &root}});
  hosts.queen().start();
  hub_server hub;
  hub.add_file("rbee-test/stories", "stories260K.gguf", stories_path());
  const std::string secret = "hf_remote_secret_77c2";
  hub.require_token(secret);
  hub.start(hosts.host("hub").peer_address());  // reachable from the node's link
  ASSERT_EQ(hosts.add_and_install("hub").exit_code, 0) << hosts.queen().queen_log();

  auto env = hosts.queen().env();
  env["HF_ENDPOINT"] = hub.url();
  env["HF_TOKEN"] = secret;
  auto r = run_cli(
      "rbee",
      {"models", "download", "--node", "hub", "-m", "hf:rbee-test/stories:stories260K.gguf"}, env,
      "", 120s);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err << hosts.queen().logs();
  auto gets = hub.downloads("rbee-test/stories", "stories260K.gguf");
  ASSERT_FALSE(gets.empty());
  EXPECT_EQ(gets.back().authorization, "Bearer " + secret);
  EXPECT_FALSE(contains(r.out + r.err, secret));
  EXPECT_TRUE(hosts.stop_all());
  // Nothing on the node keeps it either (the hive's log and catalog are under the install path).
  size_t checked = 0;
  for (const auto& entry :
       fs::recursive_directory_iterator(root.outside(hosts.install_path("hub")))) {
    if (entry.is_regular_file() && entry.path().parent_path().filename() != "lib") {
      ++checked;
      EXPECT_FALSE(contains(slurp(entry.path()), secret)) << entry.path();
    }
  }
  EXPECT_GT(checked, 3u);
}

}  // namespace
}  // namespace rbee::e2e::scenario
