#!/usr/bin/env bash
# Cold vs warm start through the queen (scenario 10 of spec/test-001.md: "first token quickly,
# measured and reported by the benchmark"). Starts a queen on a free port with a throw-away
# RBEE_HOME, runs one cold and N warm `rbee infer` calls on node localhost, and prints the time
# to first token and decode speed of each, as the CLI reports them.
#
# Usage: bench/queen_bench.sh [BUILD_DIR] [MODEL_GGUF] [N_WARM]
set -euo pipefail

build_dir=${1:-build}
model=$(realpath "${2:-$(dirname "$0")/../../shared/models/stories260K.gguf}")
n_warm=${3:-5}
bin="$build_dir/bin"
for b in rbee queen-rbee rbee-hive llm-worker-rbee; do
  [[ -x "$bin/$b" ]] || { echo "missing $bin/$b: build first" >&2; exit 1; }
done
[[ -f "$model" ]] || { echo "model not found: $model" >&2; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

home=$(mktemp -d /tmp/rbee-bench-XXXXXX)
export RBEE_HOME="$home"
export RBEE_QUEEN_URL="http://127.0.0.1:$(free_port)"
export RBEE_HIVE_PORT="$(free_port)"
export RBEE_CONFIG="$home/config.toml"  # empty: the machine's own config stays out
: > "$RBEE_CONFIG"
cleanup() {
  "$bin/rbee" queen stop >/dev/null 2>&1 || true
  rm -rf "$home"
}
trap cleanup EXIT

run() {
  local label=$1 log="$home/run.log"
  if ! "$bin/rbee" infer --node localhost --model "file:$model" --prompt "Once upon a time" \
      --max-tokens 64 --temperature 0 >/dev/null 2>"$log"; then
    echo "rbee infer failed:" >&2
    cat "$log" >&2
    exit 1
  fi
  printf '%-6s %s\n' "$label" "$(tail -n 1 "$log")"
}

echo "queen bench: model $(basename "$model"), 64 tokens, greedy"
start=$(date +%s%N)
run cold
echo "cold start wall time: $(( ($(date +%s%N) - start) / 1000000 )) ms (queen + hive start, load, generate)"
for i in $(seq 1 "$n_warm"); do run "warm$i"; done
