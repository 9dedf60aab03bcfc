#pragma once
// What `rbee setup install` ships to a node, and whether the node can run it.
//
// The hive and the worker are linked with a DT_RPATH of $ORIGIN/lib (programs/CMakeLists.txt),
// so the shared libraries copied beside them into <install path>/lib are found before the
// node's own, for the programs and for the libraries' own dependencies. Every library they load
// is shipped except glibc's (tied to the node's loader) and the GPU driver's (the node's own).
// What a node must still have: Linux on the same CPU architecture, the ELF loader at the same
// path, and a glibc at least as new as the newest symbol version the shipped files need.

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

// "2.36" out of "GLIBC_2.36" or out of the loader's banner
// ("ld.so (Debian GLIBC 2.36-9) stable release version 2.36."); nullopt when there is none.
std::optional<glibc_version> parse_glibc_version(std::string_view text);

// What one ELF file asks of the system that loads it.
struct elf_requirements {
  std::string machine;                 // "x86_64", "aarch64", ...
  std::string interpreter;             // PT_INTERP: the loader path; empty for a library
  std::optional<glibc_version> glibc;  // the newest GLIBC_2.x among its symbol versions
};
// Reads an ELF64 little-endian file's header, PT_INTERP and version needs (.gnu.version_r).
// Throws std::runtime_error naming the file when it is not one, or is cut short.
elf_requirements read_elf_requirements(const std::filesystem::path& file);

// glibc's own libraries and the GPU driver's: never shipped, the node's are used.
bool is_node_provided(std::string_view soname);

// "name => /path (0x...)" lines of the loader's --list output: (soname, path) of each library
// resolved to a file. Throws std::runtime_error naming a library the loader did not find.
std::vector<std::pair<std::string, std::filesystem::path>> parse_loader_listing(
    std::string_view listing);

struct runtime_bundle {
  std::vector<std::filesystem::path> libraries;  // to <install path>/lib
  uint64_t library_bytes = 0;
  std::string machine;
  std::string interpreter;
  glibc_version glibc;  // the newest the programs and the libraries need
};
// Asks this machine's loader which libraries `programs` load (ld.so --list) and reads what
// each file needs. Throws std::runtime_error when a program or library cannot be read.
runtime_bundle collect_runtime_bundle(const std::vector<std::filesystem::path>& programs);

// What the node said about itself, through platform_probe_command.
struct node_platform {
  std::string kernel;                  // uname -s
  std::string machine;                 // uname -m
  std::string os_name;                 // PRETTY_NAME (else NAME) of /etc/os-release
  bool has_loader = false;             // the bundle's interpreter exists there
  std::optional<glibc_version> glibc;  // from that loader's --version
};

// A POSIX sh command (already quoted for the remote shell) that prints "kernel=", "machine=",
// "loader=" lines and then /etc/os-release; it needs uname and cat on the node, nothing else.
std::string platform_probe_command(const std::string& interpreter);
node_platform parse_platform_probe(std::string_view output);

// "Fedora Linux 40, Linux x86_64, glibc 2.39"
std::string describe(const node_platform& platform);
// Empty when the bundle runs on the node, else why not: what was found and what is needed.
std::string platform_mismatch(const node_platform& platform, const runtime_bundle& bundle);

}  // namespace rbee::queen
