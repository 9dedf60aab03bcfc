#!/usr/bin/env bash
# `make demo`: the main job on a built-in default. Starts a local queen + hive through the CLI
# and streams "Once upon a time" from a small model: stories260K from the Hugging Face hub when
# HF_ENDPOINT (default https://huggingface.co) answers, else a random-weight model that
# `rbee-engine synth` makes offline (its text is meaningless, and the demo says so).
set -euo pipefail
build_dir=${1:-build}
bin="$(cd "$build_dir/bin" && pwd)"
export RBEE_HOME=${RBEE_HOME:-$(mktemp -d /tmp/rbee-demo-XXXXXX)}
hub=${HF_ENDPOINT:-https://huggingface.co}
prompt="Once upon a time"

say() { printf '\033[1m[demo]\033[0m %s\n' "$*" >&2; }

if curl -s -o /dev/null --max-time 5 "$hub"; then
  model="hf:ggml-org/models:tinyllamas/stories260K.gguf"
  say "hub $hub is reachable: using $model"
else
  model_path="$RBEE_HOME/demo-synth-tiny-q8_0.gguf"
  say "hub $hub is not reachable: making a RANDOM-WEIGHT model offline (its text is meaningless)"
  "$bin/rbee-engine" synth --shape tiny --type q8_0 -o "$model_path" >&2
  model="file:$model_path"
fi

if [ -x "$bin/rbee" ] && [ -x "$bin/queen-rbee" ] && [ -x "$bin/rbee-hive" ] && [ -x "$bin/llm-worker-rbee" ]; then
  export RBEE_QUEEN_URL=${RBEE_QUEEN_URL:-http://127.0.0.1:18080}
  say "RBEE_HOME=$RBEE_HOME, queen at $RBEE_QUEEN_URL (started by rbee, stopped at the end: --ephemeral)"
  "$bin/rbee" infer --ephemeral --node localhost --model "$model" --prompt "$prompt" --max-tokens 64
  echo
else
  say "the daemons (rbee, queen-rbee, rbee-hive, llm-worker-rbee) are not built yet;"
  say "running the engine alone instead: rbee-engine generate"
  model_file=${model#file:}
  if [ "$model_file" = "$model" ]; then
    say "cannot download $model without the hive; nothing more to show"
    exit 1
  fi
  printf '%s' "$prompt"
  "$bin/rbee-engine" generate -m "$model_file" -p "$prompt" -n 64
  echo
fi
