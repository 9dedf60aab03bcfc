#include "queen/install_bundle.h"

#include <elf.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
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

  void check_range(uint64_t offset, uint64_t size) const {
    if (offset > bytes_.size() || bytes_.size() - offset < size) {
      throw std::runtime_error(name_ + " is cut short (offset " + std::to_string(offset) + ")");
    }
  }

  template <typename T>
  T at(uint64_t offset) const {
    check_range(offset, sizeof(T));
    T value;
    std::memcpy(&value, bytes_.data() + offset, sizeof(T));
    return value;
  }

  // The NUL-terminated string at `offset`, read no further than `limit` bytes.
  std::string string_at(uint64_t offset, uint64_t limit = UINT64_MAX) const {
    if (offset >= bytes_.size()) throw std::runtime_error(name_ + " has a string out of bounds");
    const char* start = bytes_.data() + offset;
    return std::string(start, strnlen(start, std::min(limit, bytes_.size() - offset)));
  }

  // Replaces the bytes at `offset` with `text`; the range must be in the file.
  void overwrite(uint64_t offset, std::string_view text) {
    check_range(offset, text.size());
    std::copy(text.begin(), text.end(), bytes_.begin() + static_cast<std::ptrdiff_t>(offset));
  }

  void save(const fs::path& file) const {
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out.write(bytes_.data(), static_cast<std::streamsize>(bytes_.size()));
    if (!out.flush()) throw std::runtime_error("cannot write " + file.string());
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

// The first program header of `type`, with its contents checked to lie in the file.
std::optional<Elf64_Phdr> find_segment(const elf_image& elf, uint32_t type) {
  auto header = elf.at<Elf64_Ehdr>(0);
  for (uint16_t i = 0; i < header.e_phnum; ++i) {
    auto segment = elf.at<Elf64_Phdr>(header.e_phoff + uint64_t{i} * header.e_phentsize);
    if (segment.p_type != type) continue;
    elf.check_range(segment.p_offset, segment.p_filesz);
    return segment;
  }
  return std::nullopt;
}

uint64_t align_up(uint64_t value, uint64_t alignment) {
  return (value + alignment - 1) / alignment * alignment;
}

// The Linux version of the file's NT_GNU_ABI_TAG note ("for GNU/Linux 3.2.0"): the oldest
// kernel its glibc supports. Notes are padded to the segment's alignment (4, or 8 for the
// segment of .note.gnu.property).
std::optional<kernel_version> abi_tag_kernel(const elf_image& elf) {
  auto header = elf.at<Elf64_Ehdr>(0);
  for (uint16_t i = 0; i < header.e_phnum; ++i) {
    auto segment = elf.at<Elf64_Phdr>(header.e_phoff + uint64_t{i} * header.e_phentsize);
    if (segment.p_type != PT_NOTE) continue;
    elf.check_range(segment.p_offset, segment.p_filesz);
    const uint64_t alignment = segment.p_align == 8 ? 8 : 4;
    const uint64_t end = segment.p_offset + segment.p_filesz;
    for (uint64_t at = segment.p_offset; end - at >= sizeof(Elf64_Nhdr);) {
      auto note = elf.at<Elf64_Nhdr>(at);
      const uint64_t name_at = at + sizeof(Elf64_Nhdr);
      const uint64_t desc_at = name_at + align_up(note.n_namesz, alignment);
      const uint64_t next = desc_at + align_up(note.n_descsz, alignment);
      if (next > end) break;
      if (note.n_type == NT_GNU_ABI_TAG && note.n_namesz == 4 && note.n_descsz >= 16 &&
          elf.string_at(name_at, 4) == "GNU" && elf.at<uint32_t>(desc_at) == ELF_NOTE_OS_LINUX) {
        auto word = [&](int n) { return static_cast<int>(elf.at<uint32_t>(desc_at + 4 * n)); };
        return kernel_version{word(1), word(2), word(3)};
      }
      at = next;
    }
  }
  return std::nullopt;
}

// glibc's libraries that programs link: all of them ship from the loader's directory, also
// those the programs do not load, since a library of the node (the GPU driver's) may.
constexpr std::array<std::string_view, 9> glibc_linked_libraries = {
    "libc.so.6",  "libm.so.6",      "libmvec.so.1", "libpthread.so.0", "libdl.so.2",
    "librt.so.1", "libresolv.so.2", "libutil.so.1", "libanl.so.1"};

std::string unquote(std::string value) {
  if (value.size() >= 2 && (value.front() == '"' || value.front() == '\'') &&
      value.back() == value.front()) {
    value = value.substr(1, value.size() - 2);
  }
  return value;
}

// What the node printed, fit for a terminal and a log line: its control characters (an escape
// sequence in os-release, a carriage return) become '?'.
std::string printable(std::string value) {
  for (char& c : value)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  return value;
}

// The node prints what it likes; a line longer than this is not a platform description.
constexpr size_t max_probe_value = 200;

// The probe: its own lines first (a key of os-release cannot shadow them: those are upper case
// and only the first of each key counts), then os-release as it is. `read` takes the loader's
// first line without needing head(1).
constexpr const char* probe_script =
    "echo \"kernel=$(uname -s)\"; echo \"release=$(uname -r)\"; echo \"machine=$(uname -m)\"; "
    "if [ -x \"$1\" ]; then \"$1\" --version 2>/dev/null | { IFS= read -r line; "
    "echo \"loader=$line\"; }; fi; "
    "if [ -r /etc/os-release ]; then cat /etc/os-release; fi";

// Runs this machine's loader with `args`; its standard output.
std::string run_loader(const std::string& loader, const std::vector<std::string>& args,
                       const std::string& what) {
  common::process_spec spec;
  spec.executable = loader;
  spec.args = args;
  auto ran = common::run_captured(spec, std::chrono::seconds(30));
  if (ran.exit_code != 0) throw std::runtime_error("the loader cannot " + what + ": " + ran.err);
  return ran.out;
}

// What collect_runtime_bundle gathers as it reads the files.
class bundle_builder {
 public:
  void add_program(const fs::path& program) {
    auto needs = read_elf_requirements(program);
    if (needs.interpreter.empty()) {
      throw std::runtime_error(program.string() + " has no ELF interpreter");
    }
    const std::string interpreter = fs::path(needs.interpreter).lexically_normal().string();
    if (!bundle_.interpreter.empty() && interpreter != bundle_.interpreter) {
      throw std::runtime_error(program.string() + " uses the loader " + interpreter +
                               ", another program " + bundle_.interpreter);
    }
    bundle_.interpreter_room = bundle_.interpreter.empty()
                                   ? needs.interpreter_room
                                   : std::min(bundle_.interpreter_room, needs.interpreter_room);
    bundle_.interpreter = interpreter;
    bundle_.machine = needs.machine;
    need_kernel(needs);
    auto listing = run_loader(needs.interpreter, {"--list", program.string()},
                              "list the libraries of " + program.string());
    for (const auto& [name, path] : parse_loader_listing(listing)) {
      if (is_node_provided(name)) continue;
      if (is_glibc(name)) {
        glibc_loaded_.emplace(name, path);
      } else if (shipped_.insert(name).second) {
        // Copied under the name the programs ask for, whatever symlink the path is.
        ship(path);
      }
    }
  }

  // glibc ships whole from the loader's directory, so that the loader, libc and the rest are
  // of one glibc; a glibc library the programs load from elsewhere is refused.
  runtime_bundle finish() {
    bundle_.loader = fs::canonical(bundle_.interpreter);
    bundle_.loader_name = fs::path(bundle_.interpreter).filename().string();
    const fs::path glibc_dir = bundle_.loader.parent_path();
    std::set<std::string> names;
    for (auto name : glibc_linked_libraries) names.emplace(name);
    for (const auto& [name, path] : glibc_loaded_) {
      if (name == bundle_.loader_name) continue;
      if (fs::canonical(path).parent_path() != glibc_dir) {
        throw std::runtime_error(name + " (" + path.string() +
                                 ") is not of the glibc of the loader " + bundle_.interpreter +
                                 " (" + glibc_dir.string() + ")");
      }
      names.insert(name);
    }
    if (!fs::exists(glibc_dir / "libc.so.6")) {
      throw std::runtime_error("there is no libc.so.6 beside the loader in " + glibc_dir.string());
    }
    for (const auto& name : names) {
      if (fs::exists(glibc_dir / name)) ship(glibc_dir / name);
    }
    need_kernel(read_elf_requirements(bundle_.loader));
    bundle_.library_bytes += fs::file_size(bundle_.loader);
    bundle_.glibc = parse_glibc_version(
        run_loader(bundle_.loader.string(), {"--version"}, "print its version"));
    return std::move(bundle_);
  }

 private:
  void need_kernel(const elf_requirements& needs) {
    if (needs.oldest_kernel && *needs.oldest_kernel > bundle_.oldest_kernel) {
      bundle_.oldest_kernel = *needs.oldest_kernel;
    }
  }

  void ship(const fs::path& library) {
    need_kernel(read_elf_requirements(library));
    bundle_.libraries.push_back(library);
    bundle_.library_bytes += fs::file_size(library);
  }

  runtime_bundle bundle_;
  std::set<std::string> shipped_;
  std::map<std::string, fs::path> glibc_loaded_;
};

}  // namespace

std::string glibc_version::to_string() const {
  return std::to_string(major) + "." + std::to_string(minor);
}

std::optional<glibc_version> parse_glibc_version(std::string_view text) {
  // Bounded digit counts: the node's loader banner is the node's text.
  static const std::regex pattern(R"(version (\d{1,6})\.(\d{1,6}))");
  std::match_results<std::string_view::const_iterator> m;
  if (!std::regex_search(text.begin(), text.end(), m, pattern)) return std::nullopt;
  return glibc_version{std::stoi(m[1].str()), std::stoi(m[2].str())};
}

std::string kernel_version::to_string() const {
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
}

std::optional<kernel_version> parse_kernel_release(std::string_view release) {
  static const std::regex pattern(R"(^(\d{1,6})\.(\d{1,6})(?:\.(\d{1,6}))?)");
  std::match_results<std::string_view::const_iterator> m;
  if (!std::regex_search(release.begin(), release.end(), m, pattern)) return std::nullopt;
  return kernel_version{std::stoi(m[1].str()), std::stoi(m[2].str()),
                        m[3].matched ? std::stoi(m[3].str()) : 0};
}

elf_requirements read_elf_requirements(const fs::path& file) {
  elf_image elf(file);
  auto header = elf.at<Elf64_Ehdr>(0);
  elf_requirements out;
  out.machine = machine_name(header.e_machine);
  if (auto interp = find_segment(elf, PT_INTERP); interp && interp->p_filesz > 0) {
    out.interpreter = elf.string_at(interp->p_offset, interp->p_filesz);
    out.interpreter_room = interp->p_filesz - 1;
  }
  out.oldest_kernel = abi_tag_kernel(elf);
  return out;
}

void write_with_interpreter(const fs::path& program, const std::string& interpreter,
                            const fs::path& copy) {
  elf_image elf(program);
  auto interp = find_segment(elf, PT_INTERP);
  if (!interp || interp->p_filesz == 0) {
    throw std::runtime_error(program.string() + " has no ELF interpreter (PT_INTERP) to rewrite");
  }
  if (interpreter.size() >= interp->p_filesz) {
    throw std::runtime_error("the loader path " + interpreter + " (" +
                             std::to_string(interpreter.size()) + " characters) does not fit the " +
                             std::to_string(interp->p_filesz - 1) + " that " + program.string() +
                             " has room for");
  }
  std::string slot = interpreter;
  slot.resize(interp->p_filesz, '\0');
  elf.overwrite(interp->p_offset, slot);
  elf.save(copy);
}

bool is_glibc(std::string_view soname) {
  static const std::set<std::string_view> others = {
      "libnsl.so.1", "libthread_db.so.1", "libBrokenLocale.so.1", "libc_malloc_debug.so.0"};
  return std::find(glibc_linked_libraries.begin(), glibc_linked_libraries.end(), soname) !=
             glibc_linked_libraries.end() ||
         others.contains(soname) || soname.starts_with("ld-linux") || soname.starts_with("libnss_");
}

bool is_node_provided(std::string_view soname) {
  return soname.starts_with("libcuda.so") || soname.starts_with("libnvidia-");
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
  bundle_builder builder;
  for (const auto& program : programs) builder.add_program(program);
  return builder.finish();
}

std::string installed_interpreter(const runtime_bundle& bundle, const std::string& install_path) {
  std::string path = install_path + "/lib/" + bundle.loader_name;
  if (path.size() > bundle.interpreter_room) {
    throw std::runtime_error(
        "the installed programs' loader path " + path + " (" + std::to_string(path.size()) +
        " characters) does not fit their ELF interpreter, which has room for " +
        std::to_string(bundle.interpreter_room) +
        " (rbee's build leaves room for any install path on x86_64 and aarch64 only)");
  }
  return path;
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
    std::string key = line.substr(0, eq), value = printable(unquote(line.substr(eq + 1)));
    if (!seen.insert(key).second) continue;
    if (key == "kernel") p.kernel = value;
    if (key == "release") p.release = value;
    if (key == "machine") p.machine = value;
    if (key == "loader") p.glibc = parse_glibc_version(value);
    if (key == "NAME") name = value;
    if (key == "PRETTY_NAME") pretty_name = value;
  }
  p.os_name = !pretty_name.empty() ? pretty_name : !name.empty() ? name : "an unnamed system";
  return p;
}

std::string describe(const node_platform& p) {
  std::string kernel = p.kernel.empty() ? "unknown kernel" : p.kernel;
  if (!p.release.empty()) kernel += " " + p.release;
  return p.os_name + ", " + kernel + " " + (p.machine.empty() ? "unknown CPU" : p.machine) + ", " +
         (p.glibc ? "glibc " + p.glibc->to_string() : std::string("no glibc"));
}

std::string platform_mismatch(const node_platform& p, const runtime_bundle& bundle) {
  const std::string found = "the node runs " + describe(p) + "; ";
  if (p.kernel != "Linux") return found + "rbee's binaries run on Linux only";
  if (p.machine != bundle.machine) {
    return found + "rbee's binaries here are built for " + bundle.machine +
           " (install from a queen built on a " + p.machine + " machine)";
  }
  const std::string needed = "rbee's binaries need Linux " + bundle.oldest_kernel.to_string() +
                             " or newer (the oldest kernel the glibc they bring supports)";
  auto release = parse_kernel_release(p.release);
  if (!release) {
    return found + "its kernel release '" + p.release + "' does not start with a version; " +
           needed;
  }
  if (*release < bundle.oldest_kernel) return found + needed;
  return {};
}

}  // namespace rbee::queen
