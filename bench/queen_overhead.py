#!/usr/bin/env python3
"""Cost of the queen hop, and the queen under many streaming clients (a benchmark, not a test).

1. Time to first token and decode tokens/s of one greedy stream sent straight to a worker
   (`llm-worker-rbee`, POST /v1/inference) and through the queen (POST /v2/tasks, node
   localhost, warm worker), same model, prompt and thread count, alternating, N runs each.
2. C concurrent streaming clients through the queen (all of them queued behind the warm
   worker's slots), counting errors, while another thread polls GET /health every 10 ms:
   its p50/p99 latency under that load.

Usage: bench/queen_overhead.py [--bin-dir build/bin] [--model GGUF] [--runs 10]
                               [--max-tokens 64] [--threads N] [--clients 64] [--load-tokens 256]
Prints markdown tables on stdout; progress goes to stderr. Needs only Python's stdlib.
"""
import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

PROMPT = "Once upon a time"


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(port, path, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", path)
            r = c.getresponse()
            body = r.read()
            if r.status == 200 and b"loading" not in body:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"nothing healthy on port {port}{path} after {timeout} s")


def run_all(jobs):
    """Starts every job (a callable) on its own thread at once: (their results, the failures'
    messages, wall seconds)."""
    results, errors = [], []

    def one(job):
        try:
            results.append(job())
        except Exception as e:  # noqa: BLE001 - every failure is counted and shown
            errors.append(str(e))

    threads = [threading.Thread(target=one, args=(job,)) for job in jobs]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors, time.perf_counter() - t0


def run_together(jobs):
    """run_all, raising naming how many failed and the first failure: (results, wall seconds)."""
    results, errors, wall = run_all(jobs)
    if errors:
        raise RuntimeError(f"{len(errors)} of {len(jobs)} failed: {errors[0]}")
    return results, wall


def stop_processes(procs, timeout=40):
    """SIGTERM to each (last started first), then SIGKILL to any still running after timeout."""
    for proc in reversed(procs):
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()


def stream(port, path, body, headers=None):
    """POSTs body and reads the SSE stream; returns (ttft_s, n_tokens, decode_s) or raises."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    t0 = time.perf_counter()
    c.request("POST", path, json.dumps(body), h)
    r = c.getresponse()
    if r.status != 200:
        raise RuntimeError(f"HTTP {r.status}: {r.read()[:300]!r}")
    first = last = None
    n = 0
    for raw in r:
        line = raw.strip()
        if not line.startswith(b"data: "):
            continue
        data = line[6:]
        if data == b"[DONE]":
            break
        event = json.loads(data)
        if event.get("type") == "token":
            last = time.perf_counter()
            if first is None:
                first = last
            n += 1
        elif event.get("type") == "error":
            raise RuntimeError(f"error event: {event}")
    if first is None:
        raise RuntimeError("no token")
    return first - t0, n, last - first


def inference_body(args):
    return {"prompt": PROMPT, "max_tokens": args.max_tokens, "temperature": 0}


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bin-dir", default=os.path.join(root, "build", "bin"))
    p.add_argument("--model", default=os.path.join(root, "..", "shared", "models", "stories260K.gguf"))
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--max-tokens", type=int, default=64)
    # The queen's hive starts workers with the engine's default (one thread per core): keep
    # the direct worker the same.
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--load-tokens", type=int, default=256, help="tokens per concurrent client")
    args = p.parse_args()
    model = os.path.abspath(args.model)

    home = tempfile.mkdtemp(prefix="rbee-queen-bench-")
    env = dict(os.environ, RBEE_HOME=home, RBEE_CONFIG=os.path.join(home, "config.toml"))
    open(env["RBEE_CONFIG"], "w").close()
    procs = []
    try:
        # The direct baseline: a worker of our own, same binary, model and threads.
        worker_port = free_port()
        worker_log = open(os.path.join(home, "worker.log"), "w")
        procs.append(subprocess.Popen(
            [os.path.join(args.bin_dir, "llm-worker-rbee"), "--model", model, "--port", str(worker_port),
             "--threads", str(args.threads), "--slots", "1"],
            env=env, stdout=worker_log, stderr=subprocess.STDOUT))
        wait_healthy(worker_port, "/v1/health")

        queen_port = free_port()
        queen_log = open(os.path.join(home, "queen.log"), "w")
        procs.append(subprocess.Popen(
            [os.path.join(args.bin_dir, "queen-rbee"), "--addr", f"127.0.0.1:{queen_port}",
             "--hive-port", str(free_port()), "--queue-size", str(max(64, args.clients * 2))],
            env=env, stdout=queen_log, stderr=subprocess.STDOUT))
        wait_healthy(queen_port, "/health")
        task = dict(inference_body(args), node="localhost", model=f"file:{model}")
        log("cold start through the queen ...")
        stream(queen_port, "/v2/tasks", task)

        direct, queen = [], []
        for i in range(args.runs):
            direct.append(stream(worker_port, "/v1/inference", inference_body(args)))
            queen.append(stream(queen_port, "/v2/tasks", task))
            log(f"run {i + 1}/{args.runs}: direct ttft {direct[-1][0] * 1e3:.2f} ms, "
                f"queen ttft {queen[-1][0] * 1e3:.2f} ms")

        def summary(rows):
            ttft = statistics.median(r[0] for r in rows) * 1e3
            tps = statistics.median((r[1] - 1) / r[2] for r in rows if r[2] > 0)
            return ttft, tps

        d_ttft, d_tps = summary(direct)
        q_ttft, q_tps = summary(queen)
        print(f"## Queen hop: {os.path.basename(model)}, {args.max_tokens} tokens, "
              f"{args.threads} threads, median of {args.runs}\n")
        print("| path | time to first token (ms) | decode tokens/s |")
        print("|---|---:|---:|")
        print(f"| worker direct | {d_ttft:.2f} | {d_tps:.1f} |")
        print(f"| through queen | {q_ttft:.2f} | {q_tps:.1f} |")
        print(f"| queen hop | {q_ttft - d_ttft:+.2f} ms | {100 * (q_tps - d_tps) / d_tps:+.1f} % |\n")

        # Many clients at once, /health polled meanwhile.
        latencies, done = [], threading.Event()
        load_task = dict(task, max_tokens=args.load_tokens)

        def poll_health():
            while not done.is_set():
                t0 = time.perf_counter()
                c = http.client.HTTPConnection("127.0.0.1", queen_port, timeout=10)
                c.request("GET", "/health")
                c.getresponse().read()
                latencies.append(time.perf_counter() - t0)
                time.sleep(0.01)

        poller = threading.Thread(target=poll_health)
        poller.start()
        _, errors, wall = run_all(
            [lambda: stream(queen_port, "/v2/tasks", load_task)] * args.clients)
        done.set()
        poller.join()
        latencies.sort()
        p50 = latencies[len(latencies) // 2] * 1e3
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1e3
        print(f"## {args.clients} concurrent streaming clients through the queen, "
              f"{args.load_tokens} tokens each\n")
        print("| clients | errors | wall (s) | /health samples | /health p50 (ms) | /health p99 (ms) |")
        print("|---:|---:|---:|---:|---:|---:|")
        print(f"| {args.clients} | {len(errors)} | {wall:.1f} | {len(latencies)} | {p50:.2f} | {p99:.2f} |")
        for e in errors[:5]:
            log("error:", e)
    finally:
        stop_processes(procs)
        subprocess.run(["rm", "-rf", home], check=False)


if __name__ == "__main__":
    main()
