#!/usr/bin/env bash
# CPU decode speed of the tensor types of issue 18 (not a test; run by hand): for each file
# kind, a TinyLlama-shape (1.1B) model with random weights made once with `rbee-engine synth`
# (cached in the work dir), then `rbee-engine bench` and, when given, llama.cpp's llama-bench
# on the same file with the same threads, tg (single-token decode) and pp.
#
# Usage: bench/tensor_types_bench.sh [--bin-dir DIR] [--llama-bench PATH] [--work-dir DIR]
#                                    [--threads N] [--n-gen N] [--n-prompt N] [--reps N]
#                                    [--kinds "q2_k q3_k_m iq4_nl iq4_xs q4_k_m"]
#   --bin-dir      where rbee-engine is (default: build/bin)
#   --llama-bench  llama.cpp's llama-bench, built outside this repository (default: none)
#   --work-dir     cache for the synthetic models (default: /tmp/rbee-tensor-types-bench)
#   --threads      CPU threads for both (default 2)
#   --n-gen        tg tokens (default 64); --n-prompt: pp tokens (default 64); --reps (default 3)
#   --kinds        synth file kinds (rbee-engine synth --type)
# Needs jq. Prints one line per kind, engine and test; progress goes to stderr.
set -euo pipefail

script_dir=$(cd "$(dirname "$0")" && pwd)
bin_dir="$script_dir/../build/bin"
llama_bench=""
work_dir=/tmp/rbee-tensor-types-bench
threads=2
n_gen=64
n_prompt=64
reps=3
kinds="q2_k q3_k_m iq4_nl iq4_xs q4_k_m"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --bin-dir) bin_dir=$2; shift 2 ;;
    --llama-bench) llama_bench=$2; shift 2 ;;
    --work-dir) work_dir=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --n-gen) n_gen=$2; shift 2 ;;
    --n-prompt) n_prompt=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --kinds) kinds=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done
engine="$bin_dir/rbee-engine"
[[ -x "$engine" ]] || { echo "no rbee-engine in $bin_dir (build it first)" >&2; exit 1; }
[[ -z "$llama_bench" || -x "$llama_bench" ]] || { echo "llama-bench not runnable: $llama_bench" >&2; exit 1; }
command -v jq > /dev/null || { echo "needs jq" >&2; exit 1; }
mkdir -p "$work_dir"

for kind in $kinds; do
  model="$work_dir/tinyllama-$kind.gguf"
  if [[ ! -f "$model" ]]; then
    echo "synthesising $model" >&2
    "$engine" synth --shape tinyllama --type "$kind" -o "$model" -t "$threads" >&2
  fi
  echo "== $kind ($(du -h "$model" | cut -f1))"
  # Both print llama-bench's JSON records: one line per test.
  "$engine" bench -m "$model" -t "$threads" -p "$n_prompt" -n "$n_gen" -r "$reps" --json |
    jq -r '.[] | "rbee      \(.test) \(.avg_ts * 100 | round / 100) ± \(.stddev_ts * 100 | round / 100) tok/s"'
  if [[ -n "$llama_bench" ]]; then
    "$llama_bench" -m "$model" -t "$threads" -p "$n_prompt" -n "$n_gen" -r "$reps" -o json 2>/dev/null |
      jq -r '.[] | "llama.cpp \(if .n_prompt > 0 then "pp\(.n_prompt)" else "tg\(.n_gen)" end) \(.avg_ts * 100 | round / 100) ± \(.stddev_ts * 100 | round / 100) tok/s"'
  fi
done
