#!/usr/bin/env python3
"""Concurrent streams beside llama.cpp's server (a benchmark, not a test): N greedy streams
started together against llm-worker-rbee (--slots N) and llama-server (-np N), same model,
prompts, threads and tokens, the two measured in alternation. Each stream has its own prompt
of --prompt-words words (no prefix shared between streams, levels or rounds). Reports the
aggregate tokens/s (all tokens over the wall time) and the time to first token (p50, p90) of
each level, and where the worker's decode steps went (its /metrics: milliseconds per step of
planning, the forward pass, sampling and emitting events).

Usage: bench/streams.py --llama-server PATH [--bin-dir build/bin] [--model GGUF]
                        [--backend cpu|cuda] [--levels 4] [--tokens 128] [--prompt-words 16]
                        [--threads 2] [--ctx 512] [--rounds 3] [--worker-arg=--prefill-chunk=512]
The model defaults to a TinyLlama-shape Q4_0 file made with `rbee-engine synth` (random
weights; EOS is banned in both servers so every stream runs its full length). On CUDA both
servers hold every layer on the GPU (llama-server -ngl 99 -fa). Prints a markdown table on
stdout; progress on stderr. Needs only Python's stdlib.
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
from queen_overhead import free_port, log, run_together, stop_processes, wait_healthy  # noqa: E402

EOS = 2  # the Llama vocabulary's end of sequence, which synth's models use


def send(port, path, body, attempts=3):
    """The response to one request. A connection reset before any answer (a server's accept
    queue overflowing when 128 streams connect at once: llama-server) is tried again after
    50 ms, up to `attempts` times; the caller's clock keeps running."""
    for attempt in range(attempts):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        try:
            c.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            return c.getresponse()
        except ConnectionResetError:
            c.close()
            if attempt + 1 == attempts:
                raise
            time.sleep(0.05)


def one_stream(port, path, body, is_token):
    """Streams one request: (token events, seconds to the first)."""
    t0 = time.perf_counter()
    r = send(port, path, body)
    if r.status != 200:
        raise RuntimeError(f"HTTP {r.status}: {r.read()[:300]!r}")
    n, ttft = 0, None
    for raw in r:
        line = raw.strip()
        if not line.startswith(b"data: ") or line[6:] == b"[DONE]":
            continue
        event = json.loads(line[6:])
        if is_token(event):
            n += 1
            if ttft is None:
                ttft = time.perf_counter() - t0
        if event.get("stop") is True or event.get("type") in ("end", "error"):
            break
    return n, ttft


def run_level(port, path, bodies, is_token):
    """All bodies at once: (aggregate tok/s, tokens, sorted first-token times)."""
    try:
        results, wall = run_together(
            [lambda b=b: one_stream(port, path, b, is_token) for b in bodies])
    except RuntimeError as e:
        raise RuntimeError(f"streams on port {port}: {e}") from e
    if any(ttft is None for _, ttft in results):
        raise RuntimeError(f"a stream on port {port} produced no token")
    tokens = sum(n for n, _ in results)
    return tokens / wall, tokens, sorted(ttft for _, ttft in results)


PHASES = ("plan", "forward", "sample", "emit")


def step_totals(port):
    """The worker's decode steps and its seconds per step phase so far (its /metrics)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    totals = dict.fromkeys(("steps",) + PHASES, 0.0)
    for line in text.splitlines():
        if line.startswith("rbee_worker_decode_steps_total "):
            totals["steps"] = float(line.split()[-1])
        for phase in PHASES:
            if line.startswith(f'rbee_worker_step_seconds_total{{phase="{phase}"}} '):
                totals[phase] = float(line.split()[-1])
    return totals


def percentile(sorted_values, q):
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def prompts(n, words):
    """n distinct prompts of `words` short words each."""
    rng = random.Random(11)
    letters = "abcdefghijklmnopqrstuvwxyz"
    return [f"Story {i}: " + " ".join("".join(rng.choice(letters) for _ in range(rng.randint(2, 6)))
                                      for _ in range(words)) for i in range(n)]


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--llama-server", required=True)
    p.add_argument("--bin-dir", default=os.path.join(root, "build", "bin"))
    p.add_argument("--model", default="")
    p.add_argument("--backend", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--levels", default="4", help="concurrent streams to measure, e.g. 1,8,64")
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--prompt-words", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--ctx", type=int, default=512, help="context per stream in both servers")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--worker-arg", action="append", default=[],
                   help="an extra llm-worker-rbee argument (repeatable)")
    args = p.parse_args()
    levels = [int(n) for n in args.levels.split(",")]
    slots = max(levels)
    work = tempfile.mkdtemp(prefix="rbee-streams-")
    model = args.model
    if not model:
        model = os.path.join(work, "tinyllama-q4_0.gguf")
        log("synthesising a TinyLlama-shape Q4_0 model ...")
        subprocess.run([os.path.join(args.bin_dir, "rbee-engine"), "synth", "--shape", "tinyllama",
                        "--type", "q4_0", "-o", model], check=True, stdout=subprocess.DEVNULL)
    gpu = ["-ngl", "99", "-fa"] if args.backend == "cuda" else []
    procs = []
    try:
        env = dict(os.environ, RBEE_HOME=work)
        rbee_port = free_port()
        procs.append(subprocess.Popen(
            [os.path.join(args.bin_dir, "llm-worker-rbee"), "--model", model, "--port", str(rbee_port),
             "--threads", str(args.threads), "--slots", str(slots), "--ctx", str(args.ctx),
             "--backend", args.backend] + args.worker_arg,
            env=env, stdout=open(os.path.join(work, "worker.log"), "w"), stderr=subprocess.STDOUT))
        llama_port = free_port()
        procs.append(subprocess.Popen(
            [args.llama_server, "-m", model, "--port", str(llama_port), "-t", str(args.threads),
             "-np", str(slots), "-c", str(args.ctx * slots), "--no-webui",
             "--threads-http", str(slots + 4)] + gpu,
            stdout=open(os.path.join(work, "llama-server.log"), "w"), stderr=subprocess.STDOUT))
        wait_healthy(rbee_port, "/v1/health", timeout=300)
        wait_healthy(llama_port, "/health", timeout=300)
        rbee_token = lambda e: e.get("type") == "token"  # noqa: E731
        llama_token = lambda e: bool(e.get("content")) or e.get("stop") is False  # noqa: E731
        # Every level and round gets prompts of its own: the worker's prefix cache would
        # otherwise serve a prompt it saw in an earlier level or round (llama-server is run
        # with cache_prompt off).
        texts = prompts(sum(levels) * args.rounds + 1, args.prompt_words)
        # One request each first, with a prompt no level sends: lazy set-up (kernel modules,
        # cuBLAS) is not the first level's cost.
        warm_up = texts.pop()
        run_level(rbee_port, "/v1/inference", [{"prompt": warm_up, "max_tokens": 4}], rbee_token)
        run_level(llama_port, "/completion", [{"prompt": warm_up, "n_predict": 4, "stream": True}],
                  llama_token)
        rows, steps = [], []
        for level in levels:
            rbee, llama = [], []
            for r in range(args.rounds):
                mine, texts = texts[:level], texts[level:]
                rbee_bodies = [{"prompt": t, "max_tokens": args.tokens, "temperature": 0,
                                "logit_bias": {str(EOS): -100}} for t in mine]
                llama_bodies = [{"prompt": t, "n_predict": args.tokens, "temperature": 0,
                                 "ignore_eos": True, "stream": True, "cache_prompt": False}
                                for t in mine]
                before = step_totals(rbee_port)
                rbee.append(run_level(rbee_port, "/v1/inference", rbee_bodies, rbee_token))
                after = step_totals(rbee_port)
                steps.append((level, after["steps"] - before["steps"],
                              [after[p] - before[p] for p in PHASES]))
                llama.append(run_level(llama_port, "/completion", llama_bodies, llama_token))
                log(f"{level} streams, round {r + 1}: rbee {rbee[-1][0]:.1f} tok/s "
                    f"(TTFT p50 {percentile(rbee[-1][2], 0.5) * 1000:.0f} ms), llama-server "
                    f"{llama[-1][0]:.1f} tok/s (TTFT p50 {percentile(llama[-1][2], 0.5) * 1000:.0f} ms)")
            for name, runs in (("llm-worker-rbee", rbee), ("llama-server", llama)):
                rate = statistics.median(x[0] for x in runs)
                p50 = statistics.median(percentile(x[2], 0.5) for x in runs)
                p90 = statistics.median(percentile(x[2], 0.9) for x in runs)
                rows.append((level, name, rate, p50, p90))
        print(f"## Concurrent greedy streams of {args.tokens} tokens, prompts of "
              f"{args.prompt_words} words, {os.path.basename(model)} on {args.backend}, "
              f"{args.threads} threads, median of {args.rounds}\n")
        print("| streams | server | aggregate tok/s | TTFT p50 | TTFT p90 |")
        print("|---:|---|---:|---:|---:|")
        for level, name, rate, p50, p90 in rows:
            print(f"| {level} | {name} | {rate:.1f} | {p50 * 1000:.0f} ms | {p90 * 1000:.0f} ms |")
        print("\n### Where llm-worker-rbee's decode steps went (its /metrics, all rounds)\n")
        print("| streams | steps | ms/step: " + " | ".join(PHASES) + " |")
        print("|---:|---:|" + "---:|" * len(PHASES))
        for level in levels:
            mine = [x for x in steps if x[0] == level]
            n = sum(x[1] for x in mine)
            per = [sum(x[2][i] for x in mine) * 1000 / max(n, 1) for i in range(len(PHASES))]
            print(f"| {level} | {n:.0f} | " + " | ".join(f"{v:.2f}" for v in per) + " |")
    finally:
        stop_processes(procs)


if __name__ == "__main__":
    main()
