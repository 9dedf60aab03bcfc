#include "queen/install_bundle.h"

#include <elf.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>
#include <regex>
#include <set>
#include <stdexcept>

#include "common/process.h"
#include "queen/ssh.h"

namespace rbee::queen {

namespace {

namespace fs = std::filesystem;

// One ELF file in memory, with bounds-checked reads of its structures.
class elf_image {
 public:
  explicit elf_image(const fs::path& file) : name_(file.string()) {
    std::ifstream in(file, std::ios::binary);
    if (!in) throw std::runtime_error("cannot read " + name_);
    bytes_.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    if (bytes_.size() < sizeof(Elf64_Ehdr) || std::memcmp(bytes_.data(), ELFMAG, SELFMAG) != 0 ||
        bytes_[EI_CLASS] != ELFCLASS64 || bytes_[EI_DATA] != ELFDATA2LSB) {
      throw std::runtime_error(name_ + " is not a 64-bit little-endian ELF file");
    }
  }

  template <typename T>
  T at(uint64_t offset) const {
    if (offset > bytes_.size() || bytes_.size() - offset < sizeof(T)) {
      throw std::runtime_error(name_ + " is cut short (offset " + std::to_string(offset) + ")");
    }
    T value;
    std::memcpy(&value, bytes_.data() + offset, sizeof(T));
    return value;
  }

  std::string string_at(uint64_t offset) const {
    if (offset >= bytes_.size()) throw std::runtime_error(name_ + " has a string out of bounds");
    const char* start = bytes_.data() + offset;
    return std::string(start, strnlen(start, bytes_.size() - offset));
  }

 private:
  std::string name_;
  std::vector<char> bytes_;
};

std::string machine_name(uint16_t machine) {
  switch (machine) {
    case EM_X86_64:
      return "x86_64";
    case EM_AARCH64:
      return "aarch64";
    case EM_PPC64:
      return "ppc64le";
    case EM_RISCV:
      return "riscv64";
    default:
      return "ELF machine " + std::to_string(machine);
  }
}

// The newest GLIBC_2.x named by the version needs (.gnu.version_r) of the file.
std::optional<glibc_version> newest_glibc_needed(const elf_image& elf, const Elf64_Ehdr& header) {
  std::optional<glibc_version> newest;
  for (uint16_t i = 0; i < header.e_shnum; ++i) {
    auto section = elf.at<Elf64_Shdr>(header.e_shoff + uint64_t{i} * header.e_shentsize);
    if (section.sh_type != SHT_GNU_verneed) continue;
    auto strings =
        elf.at<Elf64_Shdr>(header.e_shoff + uint64_t{section.sh_link} * header.e_shentsize);
    uint64_t need_at = section.sh_offset;
    for (uint64_t n = 0; n < section.sh_info; ++n) {
      auto need = elf.at<Elf64_Verneed>(need_at);
      uint64_t aux_at = need_at + need.vn_aux;
      for (uint16_t a = 0; a < need.vn_cnt; ++a) {
        auto aux = elf.at<Elf64_Vernaux>(aux_at);
        auto name = elf.string_at(strings.sh_offset + aux.vna_name);
        if (name.starts_with("GLIBC_")) {
          auto version = parse_glibc_version(name);
          if (version && (!newest || *version > *newest)) newest = version;
        }
        aux_at += aux.vna_next;
      }
      need_at += need.vn_next;
    }
  }
  return newest;
}

std::string unquote(std::string value) {
  if (value.size() >= 2 && (value.front() == '"' || value.front() == '\'') &&
      value.back() == value.front()) {
    value = value.substr(1, value.size() - 2);
  }
  return value;
}

// The node prints what it likes; a line longer than this is not a platform description.
constexpr size_t max_probe_value = 200;

// The probe: its own lines first (a key of os-release cannot shadow them: those are upper case
// and only the first of each key counts), then os-release as it is. `read` takes the loader's
// first line without needing head(1).
constexpr const char* probe_script =
    "echo \"kernel=$(uname -s)\"; echo \"machine=$(uname -m)\"; "
    "if [ -x \"$1\" ]; then \"$1\" --version 2>/dev/null | { IFS= read -r line; "
    "echo \"loader=$line\"; }; fi; "
    "if [ -r /etc/os-release ]; then cat /etc/os-release; fi";

}  // namespace

std::string glibc_version::to_string() const {
  return std::to_string(major) + "." + std::to_string(minor);
}

std::optional<glibc_version> parse_glibc_version(std::string_view text) {
  static const std::regex pattern(R"((?:GLIBC_|version )(\d+)\.(\d+))");
  std::match_results<std::string_view::const_iterator> m;
  if (!std::regex_search(text.begin(), text.end(), m, pattern)) return std::nullopt;
  return glibc_version{std::stoi(m[1].str()), std::stoi(m[2].str())};
}

elf_requirements read_elf_requirements(const fs::path& file) {
  elf_image elf(file);
  auto header = elf.at<Elf64_Ehdr>(0);
  elf_requirements out;
  out.machine = machine_name(header.e_machine);
  for (uint16_t i = 0; i < header.e_phnum; ++i) {
    auto segment = elf.at<Elf64_Phdr>(header.e_phoff + uint64_t{i} * header.e_phentsize);
    if (segment.p_type == PT_INTERP) out.interpreter = elf.string_at(segment.p_offset);
  }
  out.glibc = newest_glibc_needed(elf, header);
  return out;
}

bool is_node_provided(std::string_view soname) {
  static const std::set<std::string_view> glibc = {"libc.so.6",
                                                   "libm.so.6",
                                                   "libmvec.so.1",
                                                   "libpthread.so.0",
                                                   "libdl.so.2",
                                                   "librt.so.1",
                                                   "libresolv.so.2",
                                                   "libutil.so.1",
                                                   "libanl.so.1",
                                                   "libnsl.so.1",
                                                   "libthread_db.so.1",
                                                   "libBrokenLocale.so.1",
                                                   "libc_malloc_debug.so.0"};
  return glibc.contains(soname) || soname.starts_with("ld-linux") ||
         soname.starts_with("libnss_") || soname.starts_with("libcuda.so") ||
         soname.starts_with("libnvidia-");
}

std::vector<std::pair<std::string, fs::path>> parse_loader_listing(std::string_view listing) {
  std::vector<std::pair<std::string, fs::path>> libraries;
  size_t start = 0;
  while (start < listing.size()) {
    size_t end = listing.find('\n', start);
    if (end == std::string_view::npos) end = listing.size();
    std::string_view line = listing.substr(start, end - start);
    start = end + 1;
    size_t arrow = line.find(" => ");
    if (arrow == std::string_view::npos) continue;  // the vdso and the loader itself
    std::string name(line.substr(0, arrow));
    name.erase(0, name.find_first_not_of(" \t"));
    std::string_view target = line.substr(arrow + 4);
    if (target.starts_with("not found")) {
      throw std::runtime_error(name + " is not found on this machine");
    }
    target = target.substr(0, target.rfind(" ("));
    libraries.emplace_back(name, fs::path(target));
  }
  return libraries;
}

runtime_bundle collect_runtime_bundle(const std::vector<fs::path>& programs) {
  runtime_bundle bundle;
  std::set<std::string> shipped;
  auto need_glibc = [&](const std::optional<glibc_version>& v) {
    if (v && *v > bundle.glibc) bundle.glibc = *v;
  };
  for (const auto& program : programs) {
    auto needs = read_elf_requirements(program);
    bundle.machine = needs.machine;
    bundle.interpreter = needs.interpreter;
    need_glibc(needs.glibc);
    if (needs.interpreter.empty()) throw std::runtime_error(program.string() + " has no loader");
    common::process_spec spec;
    spec.executable = needs.interpreter;
    spec.args = {"--list", program.string()};
    auto listed = common::run_captured(spec, std::chrono::seconds(30));
    if (listed.exit_code != 0) {
      throw std::runtime_error("the loader cannot list the libraries of " + program.string() +
                               ": " + listed.err);
    }
    for (const auto& [name, path] : parse_loader_listing(listed.out)) {
      if (is_node_provided(name) || !shipped.insert(name).second) continue;
      need_glibc(read_elf_requirements(path).glibc);
      // Copied under the name the programs ask for, whatever symlink the path is.
      bundle.libraries.push_back(path);
      bundle.library_bytes += fs::file_size(path);
    }
  }
  return bundle;
}

std::string platform_probe_command(const std::string& interpreter) {
  return remote_command({"sh", "-c", probe_script, "sh", interpreter});
}

node_platform parse_platform_probe(std::string_view output) {
  node_platform p;
  std::string name, pretty_name;
  std::set<std::string> seen;
  size_t start = 0;
  while (start < output.size()) {
    size_t end = output.find('\n', start);
    if (end == std::string_view::npos) end = output.size();
    std::string line(output.substr(start, std::min(end - start, max_probe_value)));
    start = end + 1;
    size_t eq = line.find('=');
    if (eq == std::string::npos) continue;
    std::string key = line.substr(0, eq), value = unquote(line.substr(eq + 1));
    if (!seen.insert(key).second) continue;
    if (key == "kernel") p.kernel = value;
    if (key == "machine") p.machine = value;
    if (key == "loader") {
      p.has_loader = true;
      p.glibc = parse_glibc_version(value);
    }
    if (key == "NAME") name = value;
    if (key == "PRETTY_NAME") pretty_name = value;
  }
  p.os_name = !pretty_name.empty() ? pretty_name : !name.empty() ? name : "an unnamed system";
  return p;
}

std::string describe(const node_platform& p) {
  return p.os_name + ", " + (p.kernel.empty() ? "unknown kernel" : p.kernel) + " " +
         (p.machine.empty() ? "unknown CPU" : p.machine) + ", " +
         (p.glibc ? "glibc " + p.glibc->to_string() : std::string("no glibc"));
}

std::string platform_mismatch(const node_platform& p, const runtime_bundle& bundle) {
  const std::string found = "the node runs " + describe(p) + "; ";
  if (p.kernel != "Linux") return found + "rbee's binaries run on Linux only";
  if (p.machine != bundle.machine) {
    return found + "rbee's binaries here are built for " + bundle.machine +
           " (install from a queen built on a " + p.machine + " machine)";
  }
  if (!p.has_loader || !p.glibc) {
    return found + "rbee's binaries need glibc " + bundle.glibc.to_string() +
           " or newer, with its loader at " + bundle.interpreter +
           " (a musl system such as Alpine has none)";
  }
  if (*p.glibc < bundle.glibc) {
    return found + "rbee's binaries need glibc " + bundle.glibc.to_string() + " or newer";
  }
  return {};
}

}  // namespace rbee::queen
