// `rbee setup install` onto nodes that are not this machine's Debian: each test host sees only
// a minimal root over SSH (glibc, a shell and a few tools, another distribution's
// /etc/os-release, no apt, none of the libraries rbee's programs link). The install copies the
// hive and the worker with their libraries, and the node then serves a request; a node whose
// CPU the binaries were not built for is refused before anything is copied. The hive there
// downloads with the caller's hub settings, as a local one does.
#include <gtest/gtest.h>

#include "harness/hub_server.h"
#include "harness/scenario_fixture.h"
#include "queen/install_bundle.h"

namespace rbee::e2e::scenario {
namespace {

namespace fs = std::filesystem;

// The floor docs/cli.md and the README state for a build on Debian 12: the libstdc++ shipped
// beside the hive and the worker (libcpp-httplib, spdlog and fmt load it) needs glibc 2.36.
const char* const documented_glibc_floor = "2.36";

// The newest glibc the installed programs and libraries need, read from the copied files.
queen::glibc_version newest_glibc_needed(const fs::path& install) {
  std::vector<fs::path> files = {install / "rbee-hive", install / "llm-worker-rbee"};
  for (const auto& entry : fs::directory_iterator(install / "lib")) files.push_back(entry.path());
  queen::glibc_version newest;
  for (const auto& file : files) {
    auto glibc = queen::read_elf_requirements(file).glibc;
    if (glibc && *glibc > newest) newest = *glibc;
  }
  return newest;
}

const char* const fedora_release =
    "NAME=\"Fedora Linux\"\nVERSION_ID=40\nID=fedora\n"
    "PRETTY_NAME=\"Fedora Linux 40 (Server Edition)\"\n";

TEST(InstallPortable, ANodeWithoutDebiansLibrariesRunsTheInstalledHiveAndWorker) {
  if (auto why = scenario_hosts::unavailable_reason(); !why.empty()) GTEST_SKIP() << why;
  minimal_root root("fedora", fedora_release);
  root.add_file(stories_path());  // the model, at the same path on the node
  scenario_hosts hosts({"fedora"}, {{"fedora", &root}});
  hosts.queen().start();
  // What the node lacks: a package manager and the C++ runtime rbee's programs load.
  ASSERT_FALSE(fs::exists(root.outside("/usr/bin/apt-get")));
  ASSERT_FALSE(fs::exists(root.outside("/usr/lib/x86_64-linux-gnu/libstdc++.so.6")));

  ASSERT_EQ(hosts.add_node("fedora").exit_code, 0) << hosts.queen().queen_log();
  auto installed = hosts.install("fedora");
  ASSERT_EQ(installed.exit_code, 0) << installed.out << installed.err << hosts.queen().queen_log();
  // It says what it found on the node.
  EXPECT_TRUE(contains(installed.err, "Fedora Linux 40 (Server Edition), Linux x86_64, glibc"))
      << installed.err;
  const fs::path install = hosts.install_path("fedora");
  EXPECT_TRUE(fs::exists(root.outside(install / "lib/libstdc++.so.6")));
  EXPECT_FALSE(fs::exists(root.outside(install / "lib/libc.so.6")));  // glibc is the node's
  // What the install says the node needs is what the copied files need, and the docs say it.
  auto needed = newest_glibc_needed(root.outside(install)).to_string();
  EXPECT_EQ(needed, documented_glibc_floor) << "the newest glibc the shipped files need";
  EXPECT_TRUE(contains(installed.err, "glibc " + needed + " or newer)")) << installed.err;

  auto& q = hosts.queen();
  auto r = q.infer(stories_ref(), {"--max-tokens", "4"}, "fedora");
  ASSERT_EQ(r.exit_code, 0) << r.err << q.logs();
  EXPECT_FALSE(r.out.empty());
  auto status = q.cli({"hive", "status", "--node", "fedora", "--json"});
  ASSERT_EQ(status.exit_code, 0) << status.err;
  EXPECT_EQ(nlohmann::json::parse(status.out).value("running", false), true) << status.out;
  auto hive = pids_with_cmdline(install.string() + "/rbee-hive");
  ASSERT_EQ(hive.size(), 1u);
  // It runs in the node's root, with the files the install put there.
  EXPECT_EQ(fs::read_symlink("/proc/" + std::to_string(hive[0]) + "/root"), root.path());
  EXPECT_TRUE(hosts.stop_all()) << "processes left after the queen stopped";
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
  EXPECT_TRUE(contains(r.err, "Linux aarch64")) << r.err;
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
