#pragma once
// What `rbee setup install` ships to a node, and whether the node can run it.
//
// The hive and the worker go with every shared library they load, glibc included, into
// <install path>/lib, and with glibc's own loader there too: the copies the node gets have their
// ELF interpreter (PT_INTERP) rewritten to <install path>/lib/<loader>, and their DT_RPATH of
// $ORIGIN/lib (programs/CMakeLists.txt) makes that glibc's loader find the shipped libraries
// before the node's, for the programs and for the libraries' own dependencies. So the installed
// programs use their own copy of glibc and the node's libc does not matter (it may have none).
// Only the GPU driver's libraries (libcuda, libnvidia-*) are the node's own.
// What a node must still have: Linux on the same CPU architecture, at least as new as the
// shipped files' ABI tag (NT_GNU_ABI_TAG: 3.2.0 for Debian 12's glibc), and a POSIX sh with
// uname, cat, mkdir, chmod and mv.

#include <compare>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rbee::queen {

struct glibc_version {
  int major = 0;
  int minor = 0;
  auto operator<=>(const glibc_version&) const = default;
  std::string to_string() const;
};

// "2.36" out of a glibc loader's banner (its --version:
// "ld.so (Debian GLIBC 2.36-9) stable release version 2.36."); nullopt when there is none.
std::optional<glibc_version> parse_glibc_version(std::string_view text);

struct kernel_version {
  int major = 0;
  int minor = 0;
  int patch = 0;
  auto operator<=>(const kernel_version&) const = default;
  std::string to_string() const;  // "3.2.0"
};

// The version a kernel release (`uname -r`) starts with: "6.1.0-18-amd64" -> 6.1.0,
// "5.15.153.1-microsoft-standard-WSL2" -> 5.15.153, "4.4" -> 4.4.0; nullopt when it does not
// start with one.
std::optional<kernel_version> parse_kernel_release(std::string_view release);

// What one ELF file asks of the system that loads it.
struct elf_requirements {
  std::string machine;      // "x86_64", "aarch64", ...
  std::string interpreter;  // PT_INTERP as written (padded programs: many slashes); empty if none
  size_t interpreter_room = 0;  // the characters PT_INTERP has room for, its NUL excluded
  std::optional<kernel_version> oldest_kernel;  // its NT_GNU_ABI_TAG note ("for GNU/Linux 3.2.0")
};
// Reads an ELF64 little-endian file's header, PT_INTERP and ABI tag note.
// Throws std::runtime_error naming the file when it is not one, or is cut short.
elf_requirements read_elf_requirements(const std::filesystem::path& file);

// Writes a copy of `program` to `copy` whose PT_INTERP is `interpreter`, NUL-padded to the
// slot's size. Throws std::runtime_error naming the file when it is not an ELF file, has no
// PT_INTERP, or the slot is too small for `interpreter`.
void write_with_interpreter(const std::filesystem::path& program, const std::string& interpreter,
                            const std::filesystem::path& copy);

// glibc's libraries that programs link (libc.so.6, libm.so.6, libpthread.so.0, ...), its loader
// (ld-linux*) and its NSS modules.
bool is_glibc(std::string_view soname);
// The GPU driver's libraries: never shipped, the node's are used (they belong to its kernel
// module).
bool is_node_provided(std::string_view soname);

// "name => /path (0x...)" lines of the loader's --list output: (soname, path) of each library
// resolved to a file. Throws std::runtime_error naming a library the loader did not find.
std::vector<std::pair<std::string, std::filesystem::path>> parse_loader_listing(
    std::string_view listing);

struct runtime_bundle {
  // To <install path>/lib: what the programs load, and all of the glibc they load (from the
  // loader's directory), so that a library of the node that links libdl or libpthread gets
  // that glibc's too.
  std::vector<std::filesystem::path> libraries;
  std::filesystem::path loader;  // the real file behind the interpreter, to lib/<loader_name>
  std::string loader_name;       // "ld-linux-x86-64.so.2"
  uint64_t library_bytes = 0;    // the libraries' and the loader's
  std::string machine;
  std::string interpreter;             // the programs' interpreter, normalized ("/lib64/ld-...")
  size_t interpreter_room = 0;         // the fewest characters a program's PT_INTERP has room for
  std::optional<glibc_version> glibc;  // the shipped glibc's (its loader's banner)
  kernel_version oldest_kernel;        // the newest ABI tag among the shipped files
};
// Asks this machine's loader which libraries `programs` load (ld.so --list) and reads what
// each file needs. Throws std::runtime_error when a program or library cannot be read, or the
// loader and libc are not of the same glibc.
runtime_bundle collect_runtime_bundle(const std::vector<std::filesystem::path>& programs);

// <install path>/lib/<loader name>: the interpreter of the installed programs. Throws
// std::runtime_error when it does not fit the programs' PT_INTERP.
std::string installed_interpreter(const runtime_bundle& bundle, const std::string& install_path);

// What the node said about itself, through platform_probe_command.
struct node_platform {
  std::string kernel;                  // uname -s
  std::string release;                 // uname -r
  std::string machine;                 // uname -m
  std::string os_name;                 // PRETTY_NAME (else NAME) of /etc/os-release
  std::optional<glibc_version> glibc;  // the node's own, when it has one (informational)
};

// A POSIX sh command (already quoted for the remote shell) that prints "kernel=", "release=",
// "machine=", "loader=" lines and then /etc/os-release; it needs uname and cat on the node,
// nothing else. `interpreter` is where the node's own glibc loader would be.
std::string platform_probe_command(const std::string& interpreter);
node_platform parse_platform_probe(std::string_view output);

// "Fedora Linux 40, Linux 6.8.5-301.fc40.x86_64 x86_64, glibc 2.39"
std::string describe(const node_platform& platform);
// Empty when the bundle runs on the node, else why not: what was found and what is needed.
std::string platform_mismatch(const node_platform& platform, const runtime_bundle& bundle);

}  // namespace rbee::queen
