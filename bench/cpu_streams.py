#!/usr/bin/env python3
"""Concurrent streams on the CPU beside llama.cpp's server (a benchmark, not a test): aggregate
tokens/s of N greedy streams started together, against llm-worker-rbee (--slots N) and
llama-server (-np N), same model, threads and tokens, the two measured in alternation.

Usage: bench/cpu_streams.py --llama-server PATH [--bin-dir build/bin] [--model GGUF]
                            [--streams 4] [--tokens 128] [--threads 2] [--rounds 3]
The model defaults to a TinyLlama-shape Q4_0 file made with `rbee-engine synth` (random
weights; EOS is banned in both servers so every stream runs its full length). Prints a markdown
table on stdout; progress on stderr. Needs only Python's stdlib.
"""
import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from queen_overhead import free_port, log, wait_healthy  # noqa: E402

PROMPT = "Once upon a time"
EOS = 2  # the Llama vocabulary's end of sequence, which synth's models use


def count_tokens(port, path, body, is_token):
    """Streams one request; the number of token events."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    c.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        raise RuntimeError(f"HTTP {r.status}: {r.read()[:300]!r}")
    n = 0
    for raw in r:
        line = raw.strip()
        if not line.startswith(b"data: ") or line[6:] == b"[DONE]":
            continue
        event = json.loads(line[6:])
        if is_token(event):
            n += 1
        if event.get("stop") is True or event.get("type") in ("end", "error"):
            break
    return n


def aggregate(port, path, body, is_token, streams):
    counts = []

    def one():
        counts.append(count_tokens(port, path, body, is_token))

    threads = [threading.Thread(target=one) for _ in range(streams)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if len(counts) != streams:
        raise RuntimeError("a stream failed")
    return sum(counts) / wall, sum(counts)


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--llama-server", required=True)
    p.add_argument("--bin-dir", default=os.path.join(root, "build", "bin"))
    p.add_argument("--model", default="")
    p.add_argument("--streams", type=int, default=4)
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="rbee-cpu-streams-")
    model = args.model
    if not model:
        model = os.path.join(work, "tinyllama-q4_0.gguf")
        log("synthesising a TinyLlama-shape Q4_0 model ...")
        subprocess.run([os.path.join(args.bin_dir, "rbee-engine"), "synth", "--shape", "tinyllama",
                        "--type", "q4_0", "-o", model], check=True, stdout=subprocess.DEVNULL)
    ctx = 512
    procs = []
    try:
        env = dict(os.environ, RBEE_HOME=work)
        rbee_port = free_port()
        procs.append(subprocess.Popen(
            [os.path.join(args.bin_dir, "llm-worker-rbee"), "--model", model, "--port", str(rbee_port),
             "--threads", str(args.threads), "--slots", str(args.streams), "--ctx", str(ctx)],
            env=env, stdout=open(os.path.join(work, "worker.log"), "w"), stderr=subprocess.STDOUT))
        llama_port = free_port()
        procs.append(subprocess.Popen(
            [args.llama_server, "-m", model, "--port", str(llama_port), "-t", str(args.threads),
             "-np", str(args.streams), "-c", str(ctx * args.streams), "--no-webui"],
            stdout=open(os.path.join(work, "llama-server.log"), "w"), stderr=subprocess.STDOUT))
        wait_healthy(rbee_port, "/v1/health", timeout=300)
        wait_healthy(llama_port, "/health", timeout=300)
        rbee_body = {"prompt": PROMPT, "max_tokens": args.tokens, "temperature": 0,
                     "logit_bias": {str(EOS): -100}}
        llama_body = {"prompt": PROMPT, "n_predict": args.tokens, "temperature": 0,
                      "ignore_eos": True, "stream": True, "cache_prompt": False}
        rbee_token = lambda e: e.get("type") == "token"  # noqa: E731
        llama_token = lambda e: bool(e.get("content")) or e.get("stop") is False  # noqa: E731
        rbee, llama = [], []
        for r in range(args.rounds):
            rbee.append(aggregate(rbee_port, "/v1/inference", rbee_body, rbee_token, args.streams))
            llama.append(aggregate(llama_port, "/completion", llama_body, llama_token, args.streams))
            log(f"round {r + 1}: rbee {rbee[-1][0]:.1f} tok/s ({rbee[-1][1]} tokens), "
                f"llama-server {llama[-1][0]:.1f} tok/s ({llama[-1][1]} tokens)")
        r_med = statistics.median(x[0] for x in rbee)
        l_med = statistics.median(x[0] for x in llama)
        print(f"## {args.streams} concurrent greedy streams of {args.tokens} tokens, "
              f"{os.path.basename(model)}, {args.threads} threads, median of {args.rounds}\n")
        print("| server | aggregate tok/s |")
        print("|---|---:|")
        print(f"| llm-worker-rbee --slots {args.streams} | {r_med:.1f} |")
        print(f"| llama-server -np {args.streams} | {l_med:.1f} |")
        print(f"| rbee / llama-server | {r_med / l_med:.2f}x |")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
