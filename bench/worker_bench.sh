#!/usr/bin/env bash
# Benchmark of llm-worker-rbee (not a test; run by hand):
#   1. generation speed of one stream through HTTP vs `rbee-engine bench` tg on the same model,
#   2. aggregate tokens/s with 1, 4 and 16 concurrent streams on one worker (--slots 16).
# By default the model is a TinyLlama-shape (1.1B) Q4_0 model with random weights, made once
# with `rbee-engine synth` and cached in the work dir.
#
# Usage: bench/worker_bench.sh [--bin-dir DIR] [--model GGUF] [--work-dir DIR] [--threads N]
#                              [--n-gen N] [--concurrency "1 4 16"] [--backend cpu|cuda]
#   --bin-dir      where llm-worker-rbee and rbee-engine are (default: build/bin)
#   --model        an existing GGUF to use instead of the synthetic TinyLlama
#   --work-dir     cache for the synthetic model and logs (default: /tmp/rbee-worker-bench)
#   --threads      CPU threads for both the engine bench and the worker (default: engine's)
#   --n-gen        tokens per stream (default 128)
#   --concurrency  stream counts to measure (default "1 4 16")
# Needs curl and jq. Prints a markdown table on stdout; progress goes to stderr.
set -euo pipefail

script_dir=$(cd "$(dirname "$0")" && pwd)
bin_dir="$script_dir/../build/bin"
model=""
work_dir=/tmp/rbee-worker-bench
threads=0
n_gen=128
concurrency="1 4 16"
backend=cpu
while [[ $# -gt 0 ]]; do
  case "$1" in
    --bin-dir) bin_dir=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --work-dir) work_dir=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --n-gen) n_gen=$2; shift 2 ;;
    --concurrency) concurrency=$2; shift 2 ;;
    --backend) backend=$2; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done
for tool in curl jq; do
  command -v "$tool" >/dev/null || { echo "worker_bench: needs $tool" >&2; exit 1; }
done
engine="$bin_dir/rbee-engine"
worker="$bin_dir/llm-worker-rbee"
[[ -x $engine && -x $worker ]] || { echo "worker_bench: build rbee-engine and llm-worker-rbee into $bin_dir" >&2; exit 1; }
mkdir -p "$work_dir"

if [[ -z $model ]]; then
  model="$work_dir/tinyllama-q4_0.gguf"
  if [[ ! -f $model ]]; then
    vocab_args=()
    spm="$script_dir/../../shared/models/tokenizer/ggml-vocab-llama-spm.gguf"
    [[ -f $spm ]] && vocab_args=(--vocab-from "$spm")
    echo "synthesizing $model ..." >&2
    "$engine" synth --shape tinyllama --type q4_0 "${vocab_args[@]}" -o "$model.tmp" >&2
    mv "$model.tmp" "$model"
  fi
fi

# 1. The engine alone: tg (single-token decodes), as llama-bench measures it.
echo "rbee-engine bench ..." >&2
engine_tg=$("$engine" bench -m "$model" -p 0 -n "$n_gen" -r 3 -t "$threads" --backend "$backend" --json |
  jq -r '.[] | select(.test | startswith("tg")) | .avg_ts')

# 2. The worker, on any free port (read back from its log).
log="$work_dir/worker.log"
max_streams=16
ctx=$((n_gen + 64))
"$worker" --model "$model" --port 0 --slots "$max_streams" --ctx "$ctx" --threads "$threads" \
  --backend "$backend" >"$log" 2>&1 &
worker_pid=$!
trap 'kill "$worker_pid" 2>/dev/null || true; wait "$worker_pid" 2>/dev/null || true' EXIT
url=""
for _ in $(seq 1 600); do
  url=$(grep -o 'listening on http://[0-9.:]*' "$log" | head -1 | sed 's/listening on //') || true
  if [[ -n $url ]] && curl -sf "$url/v1/ready" | jq -e '.ready' >/dev/null 2>&1; then break; fi
  kill -0 "$worker_pid" 2>/dev/null || { echo "worker exited:" >&2; cat "$log" >&2; exit 1; }
  sleep 0.5
done
curl -sf "$url/v1/ready" | jq -e '.ready' >/dev/null || { echo "worker not ready" >&2; exit 1; }

# One stream: prints the end event.
stream() {
  curl -sN --max-time 3600 -X POST "$url/v1/inference" -H 'Content-Type: application/json' \
    -d "{\"prompt\":\"Once upon a time, story number $1, \",\"max_tokens\":$n_gen,\"temperature\":0}" |
    sed -n 's/^data: \(.*"type":"end".*\)$/\1/p'
}

now() { date +%s.%N; }

echo "warm-up stream ..." >&2
stream 0 >/dev/null
declare -A aggregate
declare -A per_stream
single_http=""
for c in $concurrency; do
  echo "$c concurrent stream(s) ..." >&2
  out="$work_dir/streams-$c"
  rm -rf "$out" && mkdir -p "$out"
  t0=$(now)
  pids=()
  for i in $(seq 1 "$c"); do
    stream "$i" >"$out/$i.json" &
    pids+=($!)
  done
  wait "${pids[@]}"
  t1=$(now)
  tokens=$(cat "$out"/*.json | jq -s 'map(.tokens_out) | add // 0')
  aggregate[$c]=$(echo "$tokens $t0 $t1" | awk '{printf "%.2f", $1 / ($3 - $2)}')
  per_stream[$c]=$(cat "$out"/*.json | jq -s 'map(.tokens_per_sec) | add / length | . * 100 | round / 100')
  [[ $c == 1 ]] && single_http=${per_stream[$c]}
done

echo "model: $model ($(du -h "$model" | cut -f1)), $n_gen tokens per stream"
echo "host: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg), backend $backend, threads ${threads/#0/auto}"
echo
echo "| measurement | tokens/s |"
echo "|---|---:|"
printf '| rbee-engine bench tg%s (engine only) | %.2f |\n' "$n_gen" "$engine_tg"
[[ -n $single_http ]] && echo "| 1 stream through HTTP (worker's decode tok/s) | $single_http |"
for c in $concurrency; do
  echo "| $c concurrent stream(s): aggregate (client wall clock) | ${aggregate[$c]} |"
  echo "| $c concurrent stream(s): mean per-stream decode tok/s | ${per_stream[$c]} |"
done
