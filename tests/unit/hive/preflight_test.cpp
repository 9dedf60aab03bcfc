#include "hive/preflight.h"

#include <gtest/gtest.h>

#include "common/errors.h"

namespace rbee::hive {
namespace {

constexpr uint64_t mib = 1024 * 1024;

gguf::header_summary model_7b_like() {
  gguf::header_summary s;
  s.architecture = "llama";
  s.file_size = 4000 * mib;
  s.block_count = 32;
  s.embedding_length = 4096;
  s.head_count = 32;
  s.head_count_kv = 8;  // GQA: the cache holds a quarter of the heads
  s.feed_forward_length = 11008;
  s.vocab_size = 32000;
  return s;
}

// A Gemma-3-like header: five of six layers keep a ring of window + 511 positions (the
// default batch of 512), wider heads (key_length) in every layer.
TEST(Preflight, SlidingLayersAndWideHeadsCountInTheCache) {
  auto gemma = model_7b_like();
  gemma.architecture = "gemma3";
  gemma.block_count = 30;
  gemma.key_length = 256;
  gemma.sliding_window = 1024;
  gemma.sliding_layers = 25;
  const uint64_t per_position = 2ull * 8 * 256 * 2;  // K and V, 8 KV heads of 256, f16
  EXPECT_EQ(estimate_memory(gemma, 32768, 1, false).kv_cache,
            (5ull * 32768 + 25ull * (1024 + 511)) * per_position);
  // Contexts within the window hold every position in every layer.
  EXPECT_EQ(estimate_memory(gemma, 1024, 1, false).kv_cache, 30ull * 1024 * per_position);
}

TEST(Preflight, EstimateIsWeightsPlusKvCachePlusScratch) {
  auto e = estimate_memory(model_7b_like(), 4096, 2, false);
  EXPECT_EQ(e.weights, 4000 * mib);
  // 2 (K,V) x 32 layers x 4096 positions x 2 slots x 1024 (4096*8/32) x 2 bytes = 1 GiB.
  EXPECT_EQ(e.kv_cache, 2ull * 32 * 4096 * 2 * 1024 * 2);
  EXPECT_EQ(e.total(), e.weights + e.kv_cache + e.scratch);
  // The process and its mappings (64 MiB + 5 % of the weights) plus the activations.
  EXPECT_GT(e.scratch, 64 * mib + 200 * mib);
  EXPECT_LT(e.scratch, 64 * mib + 200 * mib + 128 * mib);

  // On a GPU: the same weights and cache, and the CUDA context's buffers: at least the
  // 32000 x 4096 output matrix in fp16 for prefill, logits for a 512-token batch and the
  // runtime's 300 MiB.
  auto cuda = estimate_memory(model_7b_like(), 4096, 2, true);
  EXPECT_EQ(cuda.weights, e.weights);
  EXPECT_EQ(cuda.kv_cache, e.kv_cache);
  EXPECT_GT(cuda.scratch, 32000ull * 4096 * 2 + 512ull * 32000 * 4 + 300 * mib);
  EXPECT_LT(cuda.scratch, 2048 * mib);
  // The cache grows linearly with context and slots.
  EXPECT_EQ(estimate_memory(model_7b_like(), 2048, 2, false).kv_cache * 2, e.kv_cache);
  EXPECT_EQ(estimate_memory(model_7b_like(), 4096, 1, false).kv_cache * 2, e.kv_cache);
  // A vocabulary five times larger costs the GPU more in logits and the output matrix.
  auto wide = model_7b_like();
  wide.vocab_size = 160000;
  EXPECT_GT(estimate_memory(wide, 4096, 2, true).scratch,
            cuda.scratch + 128000ull * (4096 * 2 + 512 * 4));
}

capabilities node_with(uint64_t ram_free, std::vector<gpu_device> gpus) {
  capabilities c;
  c.cpu_cores = 8;
  c.ram_total_bytes = 64 * 1024 * mib;
  c.ram_free_bytes = ram_free;
  c.gpus = std::move(gpus);
  return c;
}

TEST(Preflight, InsufficientRamNamesRequiredAndAvailable) {
  auto caps = node_with(1024 * mib, {});
  auto e = estimate_memory(model_7b_like(), 2048, 1, false);
  try {
    check_fits(caps, "cpu", 0, e);
    FAIL() << "a 4 GB model fit in 1 GiB";
  } catch (const common::http_error& err) {
    EXPECT_EQ(err.status, 507);
    EXPECT_EQ(err.code, "INSUFFICIENT_RAM");
    EXPECT_EQ(err.details["required_bytes"].get<uint64_t>(), e.total());
    EXPECT_EQ(err.details["available_bytes"].get<uint64_t>(), 1024 * mib);
    EXPECT_NE(err.details["hint"].get<std::string>().find("smaller quantization"),
              std::string::npos);
  }
  EXPECT_NO_THROW(check_fits(node_with(e.total(), {}), "cpu", 0, e));
}

TEST(Preflight, InsufficientVramIsCheckedOnTheChosenDevice) {
  auto caps = node_with(64 * 1024 * mib, {{0, "small", 8192 * mib, 2048 * mib},
                                          {1, "big", 24576 * mib, 20000 * mib}});
  auto e = estimate_memory(model_7b_like(), 2048, 1, true);
  EXPECT_NO_THROW(check_fits(caps, "cuda", 1, e));
  try {
    check_fits(caps, "cuda", 0, e);
    FAIL() << "fit on the small device";
  } catch (const common::http_error& err) {
    EXPECT_EQ(err.status, 507);
    EXPECT_EQ(err.code, "INSUFFICIENT_VRAM");
    EXPECT_EQ(err.details["available_bytes"].get<uint64_t>(), 2048 * mib);
    EXPECT_EQ(err.details["device"].get<int>(), 0);
    EXPECT_NE(err.message.find("cuda:0"), std::string::npos);
  }
}

TEST(Preflight, ALayerSplitIsSizedOnItsDevicesTogether) {
  auto caps = node_with(64 * 1024 * mib, {{0, "a", 8192 * mib, 3000 * mib},
                                          {1, "b", 8192 * mib, 4000 * mib},
                                          {2, "c", 8192 * mib, 5000 * mib}});
  const auto pooled = pooled_for_split(caps, "cuda", {1, 0});
  EXPECT_EQ(free_bytes_of(pooled, "cuda", 1), 7000 * mib);  // the first device holds the sum
  EXPECT_EQ(free_bytes_of(pooled, "cuda", 2), 5000 * mib);  // others are unchanged
  // A device named twice (two parts on it) counts once.
  EXPECT_EQ(free_bytes_of(pooled_for_split(caps, "cuda", {0, 0}), "cuda", 0), 3000 * mib);
  EXPECT_EQ(free_bytes_of(pooled_for_split(caps, "cpu", {0, 0}), "cpu", 0), 64 * 1024 * mib);
  auto e = estimate_memory(model_7b_like(), 2048, 1, true);
  EXPECT_THROW(check_fits(caps, "cuda", 0, e), common::http_error);
  EXPECT_NO_THROW(check_fits(pooled_for_split(caps, "cuda", {0, 1}), "cuda", 0, e));
}

TEST(Preflight, InjectedGpuProbeFeedsTheCheck) {
  // The probe interface is what tests use to stand in for NVML.
  auto gpus = std::make_shared<static_gpu_probe>(
      std::vector<gpu_device>{{0, "Test GPU", 4096 * mib, 1024 * mib}});
  capability_probe probe(std::filesystem::temp_directory_path(), gpus, {});
  auto caps = probe.probe();
  ASSERT_EQ(caps.gpus.size(), 1u);
  EXPECT_EQ(caps.backends(), (std::vector<std::string>{"cpu", "cuda"}));
  EXPECT_THROW(check_fits(caps, "cuda", 0, estimate_memory(model_7b_like(), 512, 1, true)),
               common::http_error);

  capability_probe limited(std::filesystem::temp_directory_path(), gpus,
                           {.vram_free_bytes = 16384 * mib});
  EXPECT_NO_THROW(
      check_fits(limited.probe(), "cuda", 0, estimate_memory(model_7b_like(), 512, 1, true)));
}

TEST(Preflight, MissingBackendOrDeviceListsWhatExists) {
  auto cpu_only = node_with(1024 * mib, {});
  EXPECT_NO_THROW(check_backend(cpu_only, "cpu", 0));
  try {
    check_backend(cpu_only, "cuda", 5);
    FAIL() << "cuda:5 accepted";
  } catch (const common::http_error& err) {
    EXPECT_EQ(err.status, 400);
    EXPECT_EQ(err.code, "BACKEND_UNAVAILABLE");
    EXPECT_EQ(err.message, "Device not available. Available: cpu");
  }
  auto with_gpu = node_with(1024 * mib, {{0, "gpu", 1, 1}});
  EXPECT_NO_THROW(check_backend(with_gpu, "cuda", 0));
  try {
    check_backend(with_gpu, "metal", 0);
    FAIL() << "metal accepted";
  } catch (const common::http_error& err) {
    EXPECT_EQ(err.message, "Device not available. Available: cpu, cuda:0");
  }
  EXPECT_THROW(check_backend(cpu_only, "cpu", 1), common::http_error);
}

TEST(Capabilities, ParsesNvidiaSmiAndMeminfo) {
  auto gpus = parse_nvidia_smi_csv(
      "0, NVIDIA H100 80GB HBM3, 81559, 80000\n1, NVIDIA RTX 4090, 24564, 1000\ngarbage line\n2, "
      "x, notanumber, 1\n");
  ASSERT_EQ(gpus.size(), 2u);
  EXPECT_EQ(gpus[0].name, "NVIDIA H100 80GB HBM3");
  EXPECT_EQ(gpus[0].vram_total_bytes, 81559 * mib);
  EXPECT_EQ(gpus[1].index, 1);
  EXPECT_EQ(gpus[1].vram_free_bytes, 1000 * mib);

  auto mem =
      parse_meminfo("MemTotal:       16000000 kB\nMemFree:  100 kB\nMemAvailable:    8000000 kB\n");
  EXPECT_EQ(mem.total_bytes, 16000000ull * 1024);
  EXPECT_EQ(mem.available_bytes, 8000000ull * 1024);
  auto old_kernel =
      parse_meminfo("MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 10 kB\nCached: 20 kB\n");
  EXPECT_EQ(old_kernel.available_bytes, 130ull * 1024);
}

TEST(Capabilities, RealProbeReportsThisMachine) {
  capability_probe probe(std::filesystem::temp_directory_path(),
                         std::make_shared<static_gpu_probe>(std::vector<gpu_device>{}),
                         {.ram_free_bytes = 12345});
  auto caps = probe.probe();
  EXPECT_GT(caps.cpu_cores, 0);
  EXPECT_GT(caps.ram_total_bytes, 0u);
  EXPECT_EQ(caps.ram_free_bytes, 12345u);  // the configured limit replaces detection
  EXPECT_GT(caps.disk_free_bytes, 0u);
  auto j = caps.to_json();
  EXPECT_EQ(j["backends"], nlohmann::json::array({"cpu"}));
  EXPECT_EQ(j["devices"][0]["backend"], "cpu");
}

}  // namespace
}  // namespace rbee::hive
