#!/usr/bin/env python3
"""What a failover costs the client (a benchmark, not a test): the time from losing the worker
mid-answer to the next token, against the answer's ordinary time between tokens.

A queen with two warm workers of one model on the built-in node streams a seeded answer of
--tokens tokens; at token --cut the worker serving it gets the signal (SIGKILL: a crash,
SIGTERM: a drain, SIGSTOP: a hang the stall deadline catches). Each run checks the answer equals
the uninterrupted one, then starts a replacement worker for the next run.

Usage: bench/failover_latency.py [--bin-dir build/bin] [--model GGUF] [--runs 5] [--tokens 1500]
                                 [--cut 50] [--stall-timeout 3] [--signals KILL,TERM,STOP]
The latency is from the signal to the first token the new worker sent (the lost one's tokens
may still arrive after the signal). Prints a markdown table on stdout; progress goes to stderr. Needs only Python's stdlib.
"""
import argparse
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from queen_overhead import free_port, log, stop_processes, wait_healthy  # noqa: E402


def pid_of_worker(worker_id):
    needle = f"--worker-id\0{worker_id}\0".encode()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                if needle in f.read():
                    return int(name)
        except OSError:
            pass
    return None


def run_task(port, task, on_token=None):
    """Streams a task; returns (text, token arrival times, narration actions, when the answer
    resumed on another worker)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    c.request("POST", "/v2/tasks", json.dumps(task), {"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        raise RuntimeError(f"HTTP {r.status}: {r.read()[:300]!r}")
    text, times, actions, worker, resumed_at = "", [], [], None, None
    for raw in r:
        line = raw.strip()
        if not line.startswith(b"data: "):
            continue
        if line[6:] == b"[DONE]":
            break
        e = json.loads(line[6:])
        if e.get("type") == "narration":
            actions.append(e.get("action"))
            if e.get("action") in ("worker_selected", "worker_ready"):
                worker = e.get("worker_id")
            if e.get("action") == "failover_resume" and resumed_at is None:
                resumed_at = time.perf_counter()
        elif e.get("type") == "token":
            text += e.get("t", "")
            times.append(time.perf_counter())
            if on_token:
                on_token(e.get("i", 0), worker)
        elif e.get("type") == "error":
            raise RuntimeError(f"error event: {e}")
    return text, times, actions, resumed_at


def workers(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/v2/workers/list")
    return json.loads(c.getresponse().read()).get("workers", [])


def two_workers(port, model):
    """Two ready workers: a second task arrives while the first holds the only slot."""
    warm = {"node": "localhost", "model": model, "prompt": "Once", "max_tokens": 1500,
            "temperature": 0, "logit_bias": {"2": -100}}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready = [w for w in workers(port) if w.get("state") in ("ready", "idle")]
        if len(ready) >= 2:
            return
        t = threading.Thread(target=run_task, args=(port, warm))
        t.start()
        time.sleep(0.1)
        run_task(port, dict(warm, max_tokens=2))
        t.join()
    raise RuntimeError("no second worker")


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bin-dir", default=os.path.join(root, "build", "bin"))
    p.add_argument("--model",
                   default=os.path.join(root, "..", "shared", "models", "synth-tiny-Q8_0.gguf"))
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--tokens", type=int, default=1500)
    p.add_argument("--cut", type=int, default=50)
    p.add_argument("--stall-timeout", type=int, default=3)
    p.add_argument("--signals", default="KILL,TERM,STOP")
    args = p.parse_args()
    model = "file:" + os.path.abspath(args.model)

    home = tempfile.mkdtemp(prefix="rbee-failover-bench-")
    env = dict(os.environ, RBEE_HOME=home, RBEE_CONFIG=os.path.join(home, "config.toml"),
               RBEE_REPLICA_QUEUE_THRESHOLD="1", RBEE_STALL_TIMEOUT=str(args.stall_timeout))
    open(env["RBEE_CONFIG"], "w").close()
    queen_port = free_port()
    queen = subprocess.Popen(
        [os.path.join(args.bin_dir, "queen-rbee"), "--addr", f"127.0.0.1:{queen_port}",
         "--hive-port", str(free_port()), "--max-workers-per-model", "2", "--slots-per-worker", "1"],
        env=env, stdout=open(os.path.join(home, "queen.log"), "w"), stderr=subprocess.STDOUT)
    stopped = []
    try:
        wait_healthy(queen_port, "/health")
        task = {"node": "localhost", "model": model, "prompt": "Once upon a time",
                "max_tokens": args.tokens, "temperature": 0.9, "seed": 3,
                "logit_bias": {"2": -100}}
        two_workers(queen_port, model)
        reference, ref_times, _, _ = run_task(queen_port, task)
        ordinary = (ref_times[-1] - ref_times[0]) / (len(ref_times) - 1) * 1e3
        rows = []
        for name in args.signals.split(","):
            sig = getattr(signal, "SIG" + name)
            samples = []
            for run in range(args.runs):
                two_workers(queen_port, model)
                struck = {}

                def strike(index, worker):
                    if "at" not in struck and index >= args.cut - 1 and worker:
                        pid = pid_of_worker(worker)
                        struck["at"] = time.perf_counter()
                        struck["index"] = index
                        os.kill(pid, sig)
                        if sig == signal.SIGSTOP:
                            stopped.append(pid)

                text, times, actions, resumed_at = run_task(queen_port, task, strike)
                if text != reference or resumed_at is None:
                    raise RuntimeError(f"SIG{name} run {run}: answer differs or no failover")
                # The first token of the new worker: tokens of the lost one may still have been
                # on their way when the signal came.
                after = [t for t in times if t > resumed_at][0]
                samples.append((after - struck["at"]) * 1e3)
                log(f"SIG{name} run {run + 1}/{args.runs}: the new worker's first token "
                    f"{samples[-1]:.1f} ms after the signal (sent at token {struck['index'] + 1})")
                for pid in stopped:
                    os.kill(pid, signal.SIGKILL)
                stopped.clear()
            rows.append((name, statistics.median(samples), min(samples), max(samples)))
        print(f"## Failover latency: {os.path.basename(args.model)}, {args.tokens} tokens, "
              f"cut at token {args.cut}, {args.runs} runs per signal\n")
        print(f"Ordinary time between tokens of the same answer: {ordinary:.2f} ms (mean).\n")
        print("| worker gets | what it models | signal → new worker's first token, median (ms) "
              "| min | max |")
        print("|---|---|---:|---:|---:|")
        meaning = {"KILL": "a crash", "TERM": "a drain", "STOP": "a hang (stall deadline "
                   f"{args.stall_timeout} s)"}
        for name, med, lo, hi in rows:
            print(f"| SIG{name} | {meaning.get(name, '')} | {med:.1f} | {lo:.1f} | {hi:.1f} |")
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGKILL)
        stop_processes([queen])


if __name__ == "__main__":
    main()
