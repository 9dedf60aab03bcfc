#include "queen/install_bundle.h"

#include <elf.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

namespace rbee::queen {
namespace {

namespace fs = std::filesystem;

TEST(InstallBundle, ReadsGlibcVersionsFromTheLoaderBanner) {
  EXPECT_EQ(parse_glibc_version("ld.so (Debian GLIBC 2.36-9+deb12u4) stable release version 2.36."),
            (glibc_version{2, 36}));
  EXPECT_EQ(parse_glibc_version("ld.so (GNU libc) stable release version 2.17, by Roland McGrath"),
            (glibc_version{2, 17}));
  EXPECT_FALSE(parse_glibc_version("ld.so (GNU libc) stable release version 99999999.1"));
  EXPECT_FALSE(parse_glibc_version(""));
  EXPECT_LT((glibc_version{2, 9}), (glibc_version{2, 17}));
}

TEST(InstallBundle, ShipsEveryLibraryGlibcIncludedButTheGpuDrivers) {
  for (const char* driver :
       {"libcuda.so.1", "libnvidia-ml.so.1", "libnvidia-ptxjitcompiler.so.1"}) {
    EXPECT_TRUE(is_node_provided(driver)) << driver;
  }
  for (const char* shipped : {"libc.so.6", "libm.so.6", "libpthread.so.0", "ld-linux-x86-64.so.2",
                              "libstdc++.so.6", "libgcc_s.so.1", "libcurl.so.4", "libfmt.so.9",
                              "libcpp-httplib.so.0.11", "libsqlite3.so.0", "libcudart.so.12"}) {
    EXPECT_FALSE(is_node_provided(shipped)) << shipped;
  }
  for (const char* glibc :
       {"libc.so.6", "libm.so.6", "libdl.so.2", "ld-linux-aarch64.so.1", "libnss_files.so.2"}) {
    EXPECT_TRUE(is_glibc(glibc)) << glibc;
  }
  for (const char* other : {"libstdc++.so.6", "libcurl.so.4", "libcuda.so.1"}) {
    EXPECT_FALSE(is_glibc(other)) << other;
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

TEST(InstallBundle, ReadsKernelReleases) {
  EXPECT_EQ(parse_kernel_release("6.1.0-18-amd64"), (kernel_version{6, 1, 0}));
  EXPECT_EQ(parse_kernel_release("5.15.153.1-microsoft-standard-WSL2"),
            (kernel_version{5, 15, 153}));
  EXPECT_EQ(parse_kernel_release("4.18.0-513.el8.x86_64"), (kernel_version{4, 18, 0}));
  EXPECT_EQ(parse_kernel_release("4.4"), (kernel_version{4, 4, 0}));
  EXPECT_EQ(parse_kernel_release("6.10"), (kernel_version{6, 10, 0}));
  EXPECT_FALSE(parse_kernel_release(""));
  EXPECT_FALSE(parse_kernel_release("linux-6.1"));
  EXPECT_FALSE(parse_kernel_release("6"));
  EXPECT_FALSE(parse_kernel_release("99999999999.1.0"));  // not a number it could be

  EXPECT_LT((kernel_version{3, 2, 0}), (kernel_version{3, 10, 0}));
  EXPECT_LT((kernel_version{2, 6, 32}), (kernel_version{3, 2, 0}));
  EXPECT_LT((kernel_version{4, 19, 9}), (kernel_version{4, 19, 10}));
  EXPECT_EQ((kernel_version{3, 2, 0}).to_string(), "3.2.0");
}

// A minimal ELF64 file of this machine's byte order: the header, a PT_INTERP of `slot` (its
// NUL included) and a PT_NOTE holding a build ID and then the ABI tag for Linux `abi`.
std::string synthetic_elf(const std::string& slot, kernel_version abi) {
  auto append = [](std::string& out, const auto& value) {
    out.append(reinterpret_cast<const char*>(&value), sizeof(value));
  };
  std::string notes;
  append(notes, Elf64_Nhdr{4, 8, NT_GNU_BUILD_ID});
  notes.append("GNU\0", 4).append(8, '\x5a');
  append(notes, Elf64_Nhdr{4, 16, NT_GNU_ABI_TAG});
  notes.append("GNU\0", 4);
  for (uint32_t word : {uint32_t{ELF_NOTE_OS_LINUX}, uint32_t(abi.major), uint32_t(abi.minor),
                        uint32_t(abi.patch)}) {
    append(notes, word);
  }
  const uint64_t interp_at = sizeof(Elf64_Ehdr) + 2 * sizeof(Elf64_Phdr);
  const uint64_t notes_at = (interp_at + slot.size() + 3) / 4 * 4;
  Elf64_Ehdr header{};
  std::memcpy(header.e_ident, ELFMAG, SELFMAG);
  header.e_ident[EI_CLASS] = ELFCLASS64;
  header.e_ident[EI_DATA] = ELFDATA2LSB;
  header.e_ident[EI_VERSION] = EV_CURRENT;
  header.e_type = ET_EXEC;
  header.e_machine = EM_X86_64;
  header.e_version = EV_CURRENT;
  header.e_phoff = sizeof(Elf64_Ehdr);
  header.e_ehsize = sizeof(Elf64_Ehdr);
  header.e_phentsize = sizeof(Elf64_Phdr);
  header.e_phnum = 2;
  Elf64_Phdr interp{};
  interp.p_type = PT_INTERP;
  interp.p_offset = interp_at;
  interp.p_filesz = slot.size();
  interp.p_align = 1;
  Elf64_Phdr note{};
  note.p_type = PT_NOTE;
  note.p_offset = notes_at;
  note.p_filesz = notes.size();
  note.p_align = 4;
  std::string out;
  append(out, header);
  append(out, interp);
  append(out, note);
  out += slot;
  out.resize(notes_at, '\0');
  return out + notes;
}

class ElfFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("rbee-install-bundle-test-" + std::to_string(getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path write(const std::string& name, const std::string& bytes) {
    std::ofstream(dir_ / name, std::ios::binary) << bytes;
    return dir_ / name;
  }
  static std::string read(const fs::path& file) {
    std::ifstream in(file, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  fs::path dir_;
};

TEST_F(ElfFiles, ReadsWhatAnElfFileNeeds) {
  auto self = read_elf_requirements("/proc/self/exe");
  EXPECT_FALSE(self.machine.empty());
  EXPECT_FALSE(self.interpreter.empty());
  EXPECT_EQ(self.interpreter_room, self.interpreter.size());  // not padded: a test binary
  ASSERT_TRUE(self.oldest_kernel.has_value());                // crt1's ABI tag
  EXPECT_GE(self.oldest_kernel->major, 2);

  auto file = write("tagged", synthetic_elf(std::string("/lib64/ld.so\0\0\0\0", 16), {4, 19, 7}));
  auto tagged = read_elf_requirements(file);
  EXPECT_EQ(tagged.machine, "x86_64");
  EXPECT_EQ(tagged.interpreter, "/lib64/ld.so");
  EXPECT_EQ(tagged.interpreter_room, 15u);
  EXPECT_EQ(tagged.oldest_kernel, (kernel_version{4, 19, 7}));

  EXPECT_THROW(read_elf_requirements(write("script.sh", "#!/bin/sh\necho not an ELF file\n")),
               std::runtime_error);
  EXPECT_THROW(read_elf_requirements(write("cut.bin", std::string("\x7f"
                                                                  "ELF\x02\x01",
                                                                  6))),
               std::runtime_error);
  // Its header promises program headers that the file does not hold.
  auto whole = synthetic_elf(std::string("/lib64/ld.so\0", 13), {3, 2, 0});
  EXPECT_THROW(read_elf_requirements(write("short.bin", whole.substr(0, 100))), std::runtime_error);
  // The note segment runs past the end of the file.
  EXPECT_THROW(read_elf_requirements(write("notes-cut.bin", whole.substr(0, whole.size() - 8))),
               std::runtime_error);
}

// The hive as the build links it (programs/CMakeLists.txt): its interpreter is this machine's
// loader, padded with room for any install path; the copy the node gets names the shipped
// loader and differs in nothing else.
TEST_F(ElfFiles, RewritesTheInterpreterOfACopyOfTheHive) {
  const fs::path hive = fs::path(RBEE_BIN_DIR) / "rbee-hive";
  auto built = read_elf_requirements(hive);
  EXPECT_TRUE(fs::exists(built.interpreter)) << "the padded path names this machine's loader";
  const std::string loader = fs::path(built.interpreter).filename().string();
  const std::string longest_install_path = "/" + std::string(1023, 'p');
  ASSERT_GE(built.interpreter_room, (longest_install_path + "/lib/" + loader).size());

  const std::string installed = "/opt/rbee/lib/" + loader;
  write_with_interpreter(hive, installed, dir_ / "rbee-hive");
  auto copy = read_elf_requirements(dir_ / "rbee-hive");
  EXPECT_EQ(copy.interpreter, installed);
  EXPECT_EQ(copy.interpreter_room, built.interpreter_room);
  EXPECT_EQ(copy.machine, built.machine);
  auto before = read(hive), after = read(dir_ / "rbee-hive");
  ASSERT_EQ(before.size(), after.size());
  size_t differing = 0;
  for (size_t i = 0; i < before.size(); ++i) differing += before[i] != after[i];
  EXPECT_GT(differing, 0u);
  EXPECT_LE(differing, built.interpreter_room);

  // One character more than the slot holds is refused, and no copy is written.
  const std::string too_long = "/" + std::string(built.interpreter_room, 'x');
  try {
    write_with_interpreter(hive, too_long, dir_ / "too-long");
    ADD_FAILURE() << "a path longer than the slot was written";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("does not fit"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(dir_ / "too-long"));
}

TEST_F(ElfFiles, RefusesToRewriteWhatHasNoInterpreterOrIsNoElfFile) {
  const auto tagged = synthetic_elf(std::string("/lib64/ld.so\0", 13), {3, 2, 0});
  write_with_interpreter(write("tagged", tagged), "/a/ld.so", dir_ / "ok");
  EXPECT_EQ(read_elf_requirements(dir_ / "ok").interpreter, "/a/ld.so");
  EXPECT_THROW(write_with_interpreter(write("tagged2", tagged), "/abc/def/ld.so", dir_ / "no"),
               std::runtime_error);  // 14 characters, room for 12

  // A library has no PT_INTERP: this test's own libstdc++.
  auto bundle = collect_runtime_bundle({fs::read_symlink("/proc/self/exe")});
  auto libstdcxx = std::find_if(bundle.libraries.begin(), bundle.libraries.end(),
                                [](const fs::path& p) { return p.filename() == "libstdc++.so.6"; });
  ASSERT_NE(libstdcxx, bundle.libraries.end());
  try {
    write_with_interpreter(*libstdcxx, "/a/ld.so", dir_ / "lib");
    ADD_FAILURE() << "a library was given an interpreter";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("no ELF interpreter"), std::string::npos) << e.what();
  }
  EXPECT_THROW(write_with_interpreter(write("script.sh", "#!/bin/sh\n"), "/a/ld.so", dir_ / "s"),
               std::runtime_error);
  EXPECT_THROW(write_with_interpreter(write("cut.bin", tagged.substr(0, 150)), "/a", dir_ / "c"),
               std::runtime_error);
}

// This test binary stands in for the hive: the bundle holds the C++ runtime it loads and all of
// glibc, from the directory of the loader that is shipped beside them.
TEST(InstallBundle, CollectsTheLibrariesAProgramLoadsAndItsGlibc) {
  auto bundle = collect_runtime_bundle({fs::read_symlink("/proc/self/exe")});
  auto find = [&](const std::string& name) {
    return std::find_if(bundle.libraries.begin(), bundle.libraries.end(),
                        [&](const fs::path& p) { return p.filename() == name; });
  };
  EXPECT_NE(find("libstdc++.so.6"), bundle.libraries.end());
  EXPECT_EQ(find("libcuda.so.1"), bundle.libraries.end());
  auto self = read_elf_requirements("/proc/self/exe");
  EXPECT_EQ(bundle.interpreter, fs::path(self.interpreter).lexically_normal().string());
  EXPECT_EQ(bundle.loader, fs::canonical(self.interpreter));
  EXPECT_EQ(bundle.loader_name, fs::path(self.interpreter).filename().string());
  // libdl.so.2 too, which this test does not load: a GPU driver's library may.
  for (const char* glibc : {"libc.so.6", "libm.so.6", "libdl.so.2", "libpthread.so.0"}) {
    auto library = find(glibc);
    ASSERT_NE(library, bundle.libraries.end()) << glibc;
    EXPECT_EQ(library->parent_path(), bundle.loader.parent_path()) << glibc;
  }
  EXPECT_GT(bundle.library_bytes, fs::file_size(bundle.loader));
  ASSERT_TRUE(bundle.glibc.has_value());
  EXPECT_GE(*bundle.glibc, (glibc_version{2, 17}));
  auto libc = read_elf_requirements(*find("libc.so.6")).oldest_kernel;
  ASSERT_TRUE(libc.has_value());
  EXPECT_GE(bundle.oldest_kernel, *libc);
  EXPECT_GE(bundle.oldest_kernel, *self.oldest_kernel);

  // Where the installed programs find that loader; a slot too small for it is refused (this
  // test binary is not padded as the hive is).
  EXPECT_EQ(bundle.interpreter_room, self.interpreter.size());
  bundle.interpreter_room = 100;
  EXPECT_EQ(installed_interpreter(bundle, "/opt/rbee"), "/opt/rbee/lib/" + bundle.loader_name);
  bundle.interpreter_room = 20;
  try {
    installed_interpreter(bundle, "/opt/rbee");
    ADD_FAILURE() << "an interpreter longer than its slot";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("x86_64 and aarch64"), std::string::npos) << e.what();
  }
}

node_platform probe(const std::string& output) {
  return parse_platform_probe(output);
}

runtime_bundle x86_bundle() {
  runtime_bundle b;
  b.machine = "x86_64";
  b.interpreter = "/lib64/ld-linux-x86-64.so.2";
  b.glibc = glibc_version{2, 36};
  b.oldest_kernel = {3, 2, 0};
  return b;
}

TEST(InstallBundle, ReadsTheNodesProbeAndSaysWhatItFound) {
  auto p = probe(
      "kernel=Linux\nrelease=6.8.5-301.fc40.x86_64\nmachine=x86_64\n"
      "loader=ld.so (GNU libc) stable release version 2.39.\n"
      "NAME=\"Fedora Linux\"\nPRETTY_NAME=\"Fedora Linux 40 (Server Edition)\"\n"
      "machine=aarch64\n");
  EXPECT_EQ(p.machine, "x86_64");  // the probe's own line, not a later one
  EXPECT_EQ(p.release, "6.8.5-301.fc40.x86_64");
  EXPECT_EQ(p.os_name, "Fedora Linux 40 (Server Edition)");
  EXPECT_EQ(describe(p),
            "Fedora Linux 40 (Server Edition), Linux 6.8.5-301.fc40.x86_64 x86_64, glibc 2.39");
  EXPECT_EQ(platform_mismatch(p, x86_bundle()), "");

  // The node's glibc does not matter: an older one, or none at all, is fine.
  auto old = probe(
      "kernel=Linux\nrelease=4.18.0-513.el8.x86_64\nmachine=x86_64\n"
      "loader=ld.so (GNU libc) version 2.28.\n");
  EXPECT_EQ(platform_mismatch(old, x86_bundle()), "");
  auto musl = probe(
      "kernel=Linux\nrelease=6.6.31-0-lts\nmachine=x86_64\n"
      "PRETTY_NAME=\"Alpine Linux v3.20\"\n");
  EXPECT_EQ(describe(musl), "Alpine Linux v3.20, Linux 6.6.31-0-lts x86_64, no glibc");
  EXPECT_EQ(platform_mismatch(musl, x86_bundle()), "");
}

// What a node prints reaches the user's terminal: an escape sequence in its os-release does not.
TEST(InstallBundle, TheNodesWordsReachTheTerminalWithoutControlCharacters) {
  auto p = probe(
      "kernel=Linux\nrelease=6.1\x1b[2J\nmachine=x86_64\n"
      "PRETTY_NAME=\"Evil\x1b]0;owned\x07 OS\r\"\n");
  EXPECT_EQ(p.os_name, "Evil?]0;owned? OS?");
  EXPECT_EQ(p.release, "6.1?[2J");
  EXPECT_EQ(describe(p).find('\x1b'), std::string::npos);
}

TEST(InstallBundle, RefusesAnotherCpuAnOldKernelAndAnotherSystem) {
  auto arm = probe("kernel=Linux\nrelease=6.1.0\nmachine=aarch64\nNAME=Ubuntu\n");
  EXPECT_NE(platform_mismatch(arm, x86_bundle()).find("aarch64"), std::string::npos);
  EXPECT_NE(platform_mismatch(arm, x86_bundle()).find("built for x86_64"), std::string::npos);

  auto centos6 = probe(
      "kernel=Linux\nrelease=2.6.32-754.el6.x86_64\nmachine=x86_64\n"
      "loader=ld.so (GNU libc) version 2.12.\n");
  auto why = platform_mismatch(centos6, x86_bundle());
  EXPECT_NE(why.find("Linux 2.6.32-754.el6.x86_64 x86_64"), std::string::npos) << why;
  EXPECT_NE(why.find("need Linux 3.2.0 or newer"), std::string::npos) << why;
  // Just as old as the ABI tag is new enough.
  EXPECT_EQ(platform_mismatch(probe("kernel=Linux\nrelease=3.2\nmachine=x86_64\n"), x86_bundle()),
            "");

  auto unknown = probe("kernel=Linux\nrelease=custom\nmachine=x86_64\n");
  why = platform_mismatch(unknown, x86_bundle());
  EXPECT_NE(why.find("'custom' does not start with a version"), std::string::npos) << why;
  EXPECT_NE(why.find("need Linux 3.2.0 or newer"), std::string::npos) << why;

  auto bsd = probe("kernel=FreeBSD\nrelease=14.0-RELEASE\nmachine=amd64\n");
  EXPECT_NE(platform_mismatch(bsd, x86_bundle()).find("Linux only"), std::string::npos);
}

}  // namespace
}  // namespace rbee::queen
