#include "hive/capabilities.h"

#include <dlfcn.h>
#include <sys/statvfs.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include <spdlog/spdlog.h>

#include "common/text.h"

namespace rbee::hive {
namespace {

using common::parse_u64;
using common::trim;

// The part of NVML's C API we use; the types mirror nvml.h.
using nvml_return = int;
struct nvml_memory {
  unsigned long long total;
  unsigned long long free;
  unsigned long long used;
};
using nvml_device = void*;

}  // namespace

std::vector<gpu_device> nvml_probe::devices() {
  void* lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib) return {};
  auto sym = [&](const char* name) { return dlsym(lib, name); };
  auto init = reinterpret_cast<nvml_return (*)()>(sym("nvmlInit_v2"));
  auto shutdown = reinterpret_cast<nvml_return (*)()>(sym("nvmlShutdown"));
  auto count = reinterpret_cast<nvml_return (*)(unsigned*)>(sym("nvmlDeviceGetCount_v2"));
  auto handle = reinterpret_cast<nvml_return (*)(unsigned, nvml_device*)>(
      sym("nvmlDeviceGetHandleByIndex_v2"));
  auto name =
      reinterpret_cast<nvml_return (*)(nvml_device, char*, unsigned)>(sym("nvmlDeviceGetName"));
  auto memory =
      reinterpret_cast<nvml_return (*)(nvml_device, nvml_memory*)>(sym("nvmlDeviceGetMemoryInfo"));
  std::vector<gpu_device> out;
  if (init && shutdown && count && handle && name && memory && init() == 0) {
    unsigned n = 0;
    if (count(&n) == 0) {
      for (unsigned i = 0; i < n && i < 64; ++i) {
        nvml_device dev = nullptr;
        nvml_memory mem{};
        char buf[96] = {};
        if (handle(i, &dev) != 0 || memory(dev, &mem) != 0) continue;
        if (name(dev, buf, sizeof buf) != 0) buf[0] = '\0';
        buf[sizeof buf - 1] = '\0';
        out.push_back({static_cast<int>(i), buf, mem.total, mem.free});
      }
    }
    shutdown();
  }
  dlclose(lib);
  return out;
}

std::vector<gpu_device> parse_nvidia_smi_csv(std::string_view text) {
  std::vector<gpu_device> out;
  std::istringstream in{std::string(text)};
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> fields;
    std::string field;
    std::istringstream ls(line);
    while (std::getline(ls, field, ',')) fields.push_back(trim(field));
    if (fields.size() != 4) continue;
    auto index = parse_u64(fields[0]);
    auto total = parse_u64(fields[2]);
    auto free = parse_u64(fields[3]);
    if (!index || !total || !free || *index > 1024) continue;
    constexpr uint64_t mib = 1024 * 1024;
    out.push_back({static_cast<int>(*index), fields[1], *total * mib, *free * mib});
  }
  return out;
}

std::vector<gpu_device> nvidia_smi_probe::devices() {
  // A fixed command line (no user input); `timeout` guards against a wedged driver.
  FILE* pipe = popen(
      "timeout 10 nvidia-smi --query-gpu=index,name,memory.total,memory.free "
      "--format=csv,noheader,nounits 2>/dev/null",
      "r");
  if (!pipe) return {};
  std::string text;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0 && text.size() < (1 << 20)) text.append(buf, n);
  int status = pclose(pipe);
  if (status != 0) return {};
  return parse_nvidia_smi_csv(text);
}

std::vector<gpu_device> system_gpu_probe::devices() {
  auto devices = nvml_probe().devices();
  if (!devices.empty()) return devices;
  return nvidia_smi_probe().devices();
}

memory_info parse_meminfo(std::string_view text) {
  memory_info info;
  std::istringstream in{std::string(text)};
  std::string line;
  std::optional<uint64_t> free_kb, buffers_kb, cached_kb;
  bool have_available = false;
  while (std::getline(in, line)) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string key = line.substr(0, colon);
    std::string rest = trim(line.substr(colon + 1));
    if (rest.ends_with(" kB")) rest.resize(rest.size() - 3);
    auto v = parse_u64(rest);
    if (!v) continue;
    if (key == "MemTotal") info.total_bytes = *v * 1024;
    if (key == "MemAvailable") {
      info.available_bytes = *v * 1024;
      have_available = true;
    }
    if (key == "MemFree") free_kb = v;
    if (key == "Buffers") buffers_kb = v;
    if (key == "Cached") cached_kb = v;
  }
  // Kernels before 3.14 have no MemAvailable: approximate it.
  if (!have_available && free_kb) {
    info.available_bytes = (*free_kb + buffers_kb.value_or(0) + cached_kb.value_or(0)) * 1024;
  }
  return info;
}

memory_info read_meminfo() {
  std::ifstream in("/proc/meminfo");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_meminfo(ss.str());
}

uint64_t disk_free_bytes(const std::filesystem::path& path) {
  struct statvfs st {};
  if (statvfs(path.c_str(), &st) != 0) {
    throw std::runtime_error("cannot stat the file system of " + path.string());
  }
  return static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
}

std::vector<std::string> capabilities::backends() const {
  std::vector<std::string> out{"cpu"};
  if (!gpus.empty()) out.push_back("cuda");
  return out;
}

std::vector<std::string> capabilities::device_names() const {
  std::vector<std::string> out{"cpu"};
  for (const auto& g : gpus) out.push_back("cuda:" + std::to_string(g.index));
  return out;
}

nlohmann::json capabilities::to_json() const {
  auto devices = nlohmann::json::array();
  devices.push_back({{"backend", "cpu"},
                     {"device", 0},
                     {"name", "cpu"},
                     {"cores", cpu_cores},
                     {"ram_total_bytes", ram_total_bytes},
                     {"ram_free_bytes", ram_free_bytes}});
  for (const auto& g : gpus) {
    devices.push_back({{"backend", "cuda"},
                       {"device", g.index},
                       {"name", g.name},
                       {"vram_total_bytes", g.vram_total_bytes},
                       {"vram_free_bytes", g.vram_free_bytes}});
  }
  return {{"backends", backends()},           {"devices", devices},
          {"cpu_cores", cpu_cores},           {"ram_total_bytes", ram_total_bytes},
          {"ram_free_bytes", ram_free_bytes}, {"disk_free_bytes", disk_free_bytes},
          {"models_dir", models_dir}};
}

capability_probe::capability_probe(std::filesystem::path models_dir,
                                   std::shared_ptr<gpu_probe> gpus, resource_limits limits)
    : models_dir_(std::move(models_dir)), gpus_(std::move(gpus)), limits_(limits) {}

capabilities capability_probe::probe() {
  capabilities caps;
  caps.cpu_cores = static_cast<int>(std::thread::hardware_concurrency());
  auto mem = read_meminfo();
  caps.ram_total_bytes = mem.total_bytes;
  caps.ram_free_bytes = mem.available_bytes;
  if (limits_.ram_free_bytes) caps.ram_free_bytes = *limits_.ram_free_bytes;
  caps.models_dir = models_dir_.string();
  caps.disk_free_bytes = disk_free_bytes(models_dir_);
  if (limits_.disk_free_bytes) caps.disk_free_bytes = *limits_.disk_free_bytes;
  caps.gpus = gpus_->devices();
  for (auto& g : caps.gpus) {
    if (limits_.vram_free_bytes) g.vram_free_bytes = *limits_.vram_free_bytes;
  }
  return caps;
}

}  // namespace rbee::hive
