#pragma once
// What this node has (SPEC §3 GET /v1/capabilities): CPU cores, RAM, disk free of the models
// dir, CUDA devices. GPU probing sits behind gpu_probe so tests can inject devices; the real
// probe loads NVML at run time (no link-time dependency) and falls back to nvidia-smi.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace rbee::hive {

struct gpu_device {
  int index = 0;
  std::string name;
  uint64_t vram_total_bytes = 0;
  uint64_t vram_free_bytes = 0;
};

struct gpu_probe {
  virtual ~gpu_probe() = default;
  // The CUDA devices present now (empty when there is no GPU or no driver).
  virtual std::vector<gpu_device> devices() = 0;
};

// NVML through dlopen("libnvidia-ml.so.1"); empty when the library or a device is missing.
class nvml_probe : public gpu_probe {
 public:
  std::vector<gpu_device> devices() override;
};

// Parses `nvidia-smi --query-gpu=index,name,memory.total,memory.free
// --format=csv,noheader,nounits`.
class nvidia_smi_probe : public gpu_probe {
 public:
  std::vector<gpu_device> devices() override;
};

// NVML first, then nvidia-smi.
class system_gpu_probe : public gpu_probe {
 public:
  std::vector<gpu_device> devices() override;
};

// Fixed devices, for tests.
class static_gpu_probe : public gpu_probe {
 public:
  explicit static_gpu_probe(std::vector<gpu_device> devices) : devices_(std::move(devices)) {}
  std::vector<gpu_device> devices() override { return devices_; }

 private:
  std::vector<gpu_device> devices_;
};

// Parses nvidia-smi's CSV (one device a line: index, name, total MiB, free MiB); lines that do
// not parse are skipped.
std::vector<gpu_device> parse_nvidia_smi_csv(std::string_view text);

struct memory_info {
  uint64_t total_bytes = 0;
  uint64_t available_bytes = 0;
};
// /proc/meminfo MemTotal and MemAvailable (parsed from text, for tests).
memory_info parse_meminfo(std::string_view text);
memory_info read_meminfo();
// statvfs free bytes for unprivileged users; throws std::runtime_error naming the path.
uint64_t disk_free_bytes(const std::filesystem::path& path);

// Configured values that replace what is detected as free (tests, constrained nodes).
struct resource_limits {
  std::optional<uint64_t> ram_free_bytes = std::nullopt;
  std::optional<uint64_t> vram_free_bytes = std::nullopt;
  std::optional<uint64_t> disk_free_bytes = std::nullopt;
};

struct capabilities {
  int cpu_cores = 0;
  uint64_t ram_total_bytes = 0;
  uint64_t ram_free_bytes = 0;
  uint64_t disk_free_bytes = 0;
  std::string models_dir;
  std::vector<gpu_device> gpus;

  // "cpu", "cuda" when a GPU exists.
  std::vector<std::string> backends() const;
  // "cpu", "cuda:0", ...
  std::vector<std::string> device_names() const;
  nlohmann::json to_json() const;
};

class capability_probe {
 public:
  capability_probe(std::filesystem::path models_dir, std::shared_ptr<gpu_probe> gpus,
                   resource_limits limits);
  capabilities probe();

 private:
  std::filesystem::path models_dir_;
  std::shared_ptr<gpu_probe> gpus_;
  resource_limits limits_;
};

}  // namespace rbee::hive
