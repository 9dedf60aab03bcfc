#!/usr/bin/env bash
# Regenerates golden-chat-stories260K.json: llama.cpp b4748's llama-server (CPU build) answering
# greedy chat completions for stories260K, the text rbee's OpenAI chat route must reproduce.
# Run from the project root with llama.cpp's source (build 4748) in .device/llama.cpp and the
# shared models in test-models/ (how it ran on the GPU machine); writes to $OUT.
set -uo pipefail
cd .device/llama.cpp
# Only the examples we need are in this tree.
cat > examples/CMakeLists.txt <<'C'
add_subdirectory(server)
C
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=OFF -DLLAMA_CURL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=ON -DLLAMA_BUILD_SERVER=ON > $OUT/llama-configure.log 2>&1 || { tail -20 $OUT/llama-configure.log; exit 1; }
cmake --build build -j 16 --target llama-server > $OUT/llama-build.log 2>&1 || { grep -E "error" $OUT/llama-build.log | head; exit 1; }
./build/bin/llama-server -m ../../test-models/stories260K.gguf --port 8099 -c 512 -t 4 > $OUT/server.log 2>&1 &
for i in $(seq 1 60); do curl -sf localhost:8099/health >/dev/null && break; sleep 1; done
python3 - <<'P' > $OUT/golden-chat-stories260K.json
import json, urllib.request
cases = []
for prompt in ["Once upon a time", "Lily and Tom went to the park", "The cat"]:
    body = {"messages": [{"role": "user", "content": prompt}], "temperature": 0, "max_tokens": 48}
    req = urllib.request.Request("http://localhost:8099/v1/chat/completions", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    r = json.load(urllib.request.urlopen(req))
    cases.append({"messages": body["messages"], "max_tokens": 48,
                  "content": r["choices"][0]["message"]["content"],
                  "finish_reason": r["choices"][0]["finish_reason"],
                  "usage": r["usage"]})
print(json.dumps({"model": "stories260K.gguf",
                  "generator": "llama.cpp b4748 llama-server /v1/chat/completions (temperature 0, its built-in ChatML template)",
                  "cases": cases}, indent=2, ensure_ascii=False))
P
cat $OUT/golden-chat-stories260K.json
