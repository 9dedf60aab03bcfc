#!/usr/bin/env bash
# The CUDA backend's check on a GPU machine, in one go: builds the engine, runs the gpu tests
# and compute-sanitizer (memcheck) on them, measures the device's copy bandwidth, then runs
# rbee-engine bench --backend cuda on models synthesised here (nothing big travels).
#
# Usage: bench/cuda_check.sh [BUILD_DIR]     (default build-cuda)
#   CMAKE_ARGS  extra configure flags (e.g. -DCMAKE_CUDA_ARCHITECTURES=90)
#   SPECS       "shape:type ..." to benchmark (default: the CUDA issue's five)
#   MODELS_DIR  where the synthetic models go (default: a temporary folder, removed after)
# Prints a summary; full logs are in BUILD_DIR/cuda-check. Exits 1 when a test or memcheck fails.
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-cuda}
logs=$build/cuda-check
mkdir -p "$logs"
models=${MODELS_DIR:-$(mktemp -d)}
mkdir -p "$models"
[ -n "${MODELS_DIR:-}" ] || trap 'rm -rf "$models"' EXIT
failed=0

echo "== build"
# shellcheck disable=SC2086  # CMAKE_ARGS is a list of flags
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DRBEE_ENGINE_ONLY=ON -DRBEE_CUDA=ON \
  ${CMAKE_ARGS:-} > "$logs/configure.log" 2>&1 || { tail -20 "$logs/configure.log"; exit 1; }
cmake --build "$build" --target all rbee_copy_bandwidth > "$logs/build.log" 2>&1 ||
  { grep -E "error|FAILED" "$logs/build.log" | head -20; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null

echo "== gpu tests"
if ctest --test-dir "$build" -L gpu --output-on-failure -V > "$logs/gpu-tests.log" 2>&1; then
  echo "all gpu tests passed"
else
  echo "gpu tests FAILED (see $logs/gpu-tests.log)"
  failed=1
fi
grep -E "\[ +(OK|FAILED|SKIPPED) +\]|max \|logit error\|" "$logs/gpu-tests.log" | sed 's/^[0-9]*: //' |
  sort -u

echo "== compute-sanitizer memcheck"
for t in engine_cuda_kernels_gpu_test engine_cuda_model_gpu_test engine_cuda_quant_model_gpu_test \
  engine_engine_api_gpu_test; do
  compute-sanitizer --tool memcheck --leak-check full --error-exitcode 1 "$build/bin/$t" \
    > "$logs/memcheck-$t.log" 2>&1 || failed=1
  echo "$t: $(grep -E 'ERROR SUMMARY' "$logs/memcheck-$t.log")"
done

echo "== copy bandwidth"
"$build/bin/rbee_copy_bandwidth"

echo "== bench"
for spec in ${SPECS:-llama7b:q4_0 llama7b:q4_k_m tinyllama:q4_0 tinyllama:q8_0 tinyllama:f16}; do
  shape=${spec%%:*} type=${spec##*:}
  model=$models/$shape-$type.gguf
  [ -f "$model" ] || "$build/bin/rbee-engine" synth --shape "$shape" --type "$type" -o "$model" \
    > /dev/null 2>> "$logs/synth.log" || { echo "synth $spec failed"; failed=1; continue; }
  "$build/bin/rbee-engine" bench -m "$model" --backend cuda --device 0 -p 512 -n 128 -r 3 \
    2>> "$logs/bench.log" | grep -E "^\| llama"
done
exit $failed
