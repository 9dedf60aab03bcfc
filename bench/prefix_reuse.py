#!/usr/bin/env python3
"""What a repeated long system prompt costs (a benchmark, not a test): a worker is sent a
prompt of a long system part (the tokens are reported) and a short question, then the same system part with
another question. The first prefills everything; the second finds the system part's KV blocks
in the prefix cache (docs/kv-cache.md). Time to first token of both, for --rounds fresh
system parts, and the tokens the worker reports as cached.

Usage: bench/prefix_reuse.py [--bin-dir build/bin] [--model GGUF] [--backend cpu|cuda]
                             [--system-words 700] [--rounds 5] [--ctx 8192]
Prints a markdown table on stdout; progress on stderr. Needs only Python's stdlib.
"""
import argparse
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from queen_overhead import free_port, log, stop_processes, wait_healthy  # noqa: E402


def first_token(port, prompt):
    """(seconds to the first token, tokens_cached of the end event) of a one-token answer."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    body = {"prompt": prompt, "max_tokens": 1, "temperature": 0}
    t0 = time.perf_counter()
    c.request("POST", "/v1/inference", json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        raise RuntimeError(f"HTTP {r.status}: {r.read()[:300]!r}")
    ttft, cached, prompt_tokens = None, None, None
    for raw in r:
        line = raw.strip()
        if not line.startswith(b"data: ") or line == b"data: [DONE]":
            continue
        event = json.loads(line[6:])
        kind = event.get("type")
        if kind == "token" and ttft is None:
            ttft = time.perf_counter() - t0
        elif kind == "end":
            cached = event.get("tokens_cached")
            prompt_tokens = event.get("tokens_in")
        elif kind == "error":
            raise RuntimeError(f"error event: {event}")
    if ttft is None:
        raise RuntimeError("no token")
    return ttft, cached, prompt_tokens


def system_part(rng, words):
    """A system prompt of `words` random lowercase words: fresh text, so nothing of it is
    cached yet."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    return "You are a helpful assistant. " + " ".join(
        "".join(rng.choice(letters) for _ in range(rng.randint(2, 4))) for _ in range(words))


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bin-dir", default=os.path.join(root, "build", "bin"))
    p.add_argument("--model", default=os.path.join(root, "..", "shared", "models", "stories260K.gguf"))
    p.add_argument("--backend", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--system-words", type=int, default=700,
                   help="random words of the system part (2-4 letters: ~2,000 tokens on Llama's vocabulary)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--ctx", type=int, default=8192)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    args = p.parse_args()
    home = tempfile.mkdtemp(prefix="rbee-prefix-bench-")
    env = dict(os.environ, RBEE_HOME=home)
    port = free_port()
    worker = subprocess.Popen(
        [os.path.join(args.bin_dir, "llm-worker-rbee"), "--model", os.path.abspath(args.model),
         "--port", str(port), "--threads", str(args.threads), "--slots", "4", "--backend",
         args.backend, "--ctx", str(args.ctx)],
        env=env, stdout=open(os.path.join(home, "worker.log"), "w"), stderr=subprocess.STDOUT)
    try:
        wait_healthy(port, "/v1/health", timeout=300)
        rng = random.Random(7)
        first_token(port, system_part(rng, 64) + "\nWarm-up?")  # loads kernels, sizes buffers
        cold, warm, rows = [], [], []
        for r in range(args.rounds):
            system = system_part(rng, args.system_words)
            t_cold, c_cold, n_cold = first_token(port, system + "\nQuestion: what is the first word?")
            t_warm, c_warm, n_warm = first_token(port, system + "\nQuestion: what is the last word?")
            cold.append(t_cold)
            warm.append(t_warm)
            rows.append((r + 1, n_cold, t_cold, c_cold, n_warm, t_warm, c_warm))
            log(f"round {r + 1}: first {t_cold * 1000:.1f} ms ({n_cold} tokens, {c_cold} cached), "
                f"again {t_warm * 1000:.1f} ms ({n_warm} tokens, {c_warm} cached)")
        print(f"## A repeated system prompt, {os.path.basename(args.model)} on {args.backend}: "
              f"time to first token\n")
        print("| round | prompt tokens | first time | cached | prompt tokens | again | cached |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for r, n1, t1, c1, n2, t2, c2 in rows:
            print(f"| {r} | {n1} | {t1 * 1000:.1f} ms | {c1} | {n2} | {t2 * 1000:.1f} ms | {c2} |")
        mc, mw = statistics.median(cold), statistics.median(warm)
        print(f"\nmedian: first {mc * 1000:.1f} ms, again {mw * 1000:.1f} ms: the repeat costs "
              f"{100 * mw / mc:.1f} % of the first", flush=True)
    finally:
        stop_processes([worker])


if __name__ == "__main__":
    main()
