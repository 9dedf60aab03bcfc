#include "queen/install_bundle.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

namespace rbee::queen {
namespace {

namespace fs = std::filesystem;

TEST(InstallBundle, ReadsGlibcVersionsFromSymbolVersionsAndTheLoaderBanner) {
  EXPECT_EQ(parse_glibc_version("GLIBC_2.34"), (glibc_version{2, 34}));
  EXPECT_EQ(parse_glibc_version("ld.so (Debian GLIBC 2.36-9+deb12u4) stable release version 2.36."),
            (glibc_version{2, 36}));
  EXPECT_EQ(parse_glibc_version("ld.so (GNU libc) stable release version 2.17, by Roland McGrath"),
            (glibc_version{2, 17}));
  EXPECT_FALSE(parse_glibc_version("GLIBC_PRIVATE"));
  EXPECT_FALSE(parse_glibc_version(""));
  EXPECT_LT((glibc_version{2, 9}), (glibc_version{2, 17}));
}

TEST(InstallBundle, ShipsEveryLibraryButGlibcAndTheGpuDriver) {
  for (const char* own : {"libc.so.6", "libm.so.6", "libpthread.so.0", "libresolv.so.2",
                          "ld-linux-x86-64.so.2", "libcuda.so.1", "libnvidia-ml.so.1"}) {
    EXPECT_TRUE(is_node_provided(own)) << own;
  }
  for (const char* shipped : {"libstdc++.so.6", "libgcc_s.so.1", "libcurl.so.4", "libfmt.so.9",
                              "libcpp-httplib.so.0.11", "libsqlite3.so.0", "libcudart.so.12"}) {
    EXPECT_FALSE(is_node_provided(shipped)) << shipped;
  }
}

TEST(InstallBundle, ParsesTheLoaderListing) {
  auto libs = parse_loader_listing(
      "\tlinux-vdso.so.1 (0x00007ffd)\n"
      "\tlibfmt.so.9 => /lib/x86_64-linux-gnu/libfmt.so.9 (0x00007f3b39d26000)\n"
      "\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f3b3921e000)\n"
      "\t/lib64/ld-linux-x86-64.so.2 (0x00007f3b3a23b000)\n");
  ASSERT_EQ(libs.size(), 2u);
  EXPECT_EQ(libs[0].first, "libfmt.so.9");
  EXPECT_EQ(libs[0].second, fs::path("/lib/x86_64-linux-gnu/libfmt.so.9"));
  EXPECT_EQ(libs[1].first, "libc.so.6");
  EXPECT_THROW(parse_loader_listing("\tlibgone.so.1 => not found\n"), std::runtime_error);
}

TEST(InstallBundle, ReadsWhatAnElfFileNeeds) {
  auto self = read_elf_requirements("/proc/self/exe");
  EXPECT_FALSE(self.machine.empty());
  EXPECT_FALSE(self.interpreter.empty());
  ASSERT_TRUE(self.glibc.has_value());
  EXPECT_GE(*self.glibc, (glibc_version{2, 2}));

  auto dir = fs::temp_directory_path() / "rbee-install-bundle-test";
  fs::create_directories(dir);
  std::ofstream(dir / "script.sh") << "#!/bin/sh\necho not an ELF file\n";
  EXPECT_THROW(read_elf_requirements(dir / "script.sh"), std::runtime_error);
  std::ofstream(dir / "cut.bin", std::ios::binary) << std::string(
      "\x7f"
      "ELF\x02\x01",
      6);
  EXPECT_THROW(read_elf_requirements(dir / "cut.bin"), std::runtime_error);
  fs::remove_all(dir);
}

// This test binary stands in for the hive: the bundle holds the C++ runtime it loads, never
// glibc, and needs at least the glibc the binary itself needs.
TEST(InstallBundle, CollectsTheLibrariesAProgramLoads) {
  auto bundle = collect_runtime_bundle({fs::read_symlink("/proc/self/exe")});
  auto has = [&](const std::string& name) {
    return std::any_of(bundle.libraries.begin(), bundle.libraries.end(),
                       [&](const fs::path& p) { return p.filename() == name; });
  };
  EXPECT_TRUE(has("libstdc++.so.6"));
  EXPECT_FALSE(has("libc.so.6"));
  EXPECT_GT(bundle.library_bytes, 0u);
  EXPECT_GE(bundle.glibc, *read_elf_requirements("/proc/self/exe").glibc);
}

node_platform probe(const std::string& output) {
  return parse_platform_probe(output);
}

runtime_bundle x86_bundle() {
  runtime_bundle b;
  b.machine = "x86_64";
  b.interpreter = "/lib64/ld-linux-x86-64.so.2";
  b.glibc = {2, 34};
  return b;
}

TEST(InstallBundle, ReadsTheNodesProbeAndSaysWhatItFound) {
  auto p = probe(
      "kernel=Linux\nmachine=x86_64\n"
      "loader=ld.so (GNU libc) stable release version 2.39.\n"
      "NAME=\"Fedora Linux\"\nPRETTY_NAME=\"Fedora Linux 40 (Server Edition)\"\n"
      "machine=aarch64\n");
  EXPECT_EQ(p.machine, "x86_64");  // the probe's own line, not a later one
  EXPECT_EQ(p.os_name, "Fedora Linux 40 (Server Edition)");
  EXPECT_EQ(describe(p), "Fedora Linux 40 (Server Edition), Linux x86_64, glibc 2.39");
  EXPECT_EQ(platform_mismatch(p, x86_bundle()), "");
}

TEST(InstallBundle, RefusesAnotherCpuAnOldOrMissingGlibcAndAnotherKernel) {
  auto arm = probe("kernel=Linux\nmachine=aarch64\nNAME=Ubuntu\n");
  EXPECT_NE(platform_mismatch(arm, x86_bundle()).find("aarch64"), std::string::npos);
  EXPECT_NE(platform_mismatch(arm, x86_bundle()).find("built for x86_64"), std::string::npos);

  auto old = probe("kernel=Linux\nmachine=x86_64\nloader=ld.so (GNU libc) version 2.28.\n");
  EXPECT_NE(platform_mismatch(old, x86_bundle()).find("glibc 2.28"), std::string::npos);
  EXPECT_NE(platform_mismatch(old, x86_bundle()).find("need glibc 2.34 or newer"),
            std::string::npos);

  auto musl = probe("kernel=Linux\nmachine=x86_64\nPRETTY_NAME=\"Alpine Linux v3.20\"\n");
  EXPECT_NE(platform_mismatch(musl, x86_bundle()).find("no glibc"), std::string::npos);

  auto bsd = probe("kernel=FreeBSD\nmachine=amd64\n");
  EXPECT_NE(platform_mismatch(bsd, x86_bundle()).find("Linux only"), std::string::npos);
}

}  // namespace
}  // namespace rbee::queen
