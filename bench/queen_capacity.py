#!/usr/bin/env python3
"""The queen's cost under load (a benchmark, not a test): aggregate tokens/s of 1, 8 and 32
concurrent greedy streams sent straight to a worker with 32 slots, and through the queen to its
own worker of the same binary, model, slots and threads (the queen's hive starts it with
--slots-per-worker 32). Each level runs direct then through the queen, --rounds times, and the
medians are compared.

Usage: bench/queen_capacity.py [--bin-dir build/bin] [--model GGUF] [--tokens 128] [--rounds 3]
                               [--backend cpu|cuda] [--levels 1,8,32] [--slots 32] [--ctx 2048]
Prints a markdown table on stdout; progress on stderr. Needs only Python's stdlib.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from queen_overhead import free_port, log, run_together, stop_processes, stream, wait_healthy  # noqa: E402


def aggregate(port, path, body, clients):
    """Tokens/s of `clients` streams started together: all tokens over the wall time."""
    counts, wall = run_together([lambda: stream(port, path, body)[1]] * clients)
    return sum(counts) / wall


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bin-dir", default=os.path.join(root, "build", "bin"))
    p.add_argument("--model", default=os.path.join(root, "..", "shared", "models", "stories260K.gguf"))
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--backend", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--levels", default="1,8,32", help="concurrent streams to measure")
    p.add_argument("--slots", type=int, default=32, help="slots of both workers")
    p.add_argument("--ctx", type=int, default=2048, help="context per slot of both workers")
    args = p.parse_args()
    model = os.path.abspath(args.model)
    home = tempfile.mkdtemp(prefix="rbee-capacity-bench-")
    # The queen's hive sizes its worker's slots up to these; the queen caps them at --slots.
    env = dict(os.environ, RBEE_HOME=home, RBEE_CONFIG=os.path.join(home, "config.toml"),
               RBEE_WORKER_MAX_SLOTS=str(args.slots), RBEE_WORKER_MAX_SLOTS_CPU=str(args.slots),
               RBEE_WORKER_MAX_CTX=str(args.ctx))
    open(env["RBEE_CONFIG"], "w").close()
    body = {"prompt": "Once upon a time", "max_tokens": args.tokens, "temperature": 0}
    procs = []
    try:
        worker_port = free_port()
        procs.append(subprocess.Popen(
            [os.path.join(args.bin_dir, "llm-worker-rbee"), "--model", model, "--port", str(worker_port),
             "--threads", str(args.threads), "--slots", str(args.slots), "--backend", args.backend,
             "--ctx", str(args.ctx)],
            env=env, stdout=open(os.path.join(home, "worker.log"), "w"), stderr=subprocess.STDOUT))
        wait_healthy(worker_port, "/v1/health")
        queen_port = free_port()
        procs.append(subprocess.Popen(
            [os.path.join(args.bin_dir, "queen-rbee"), "--addr", f"127.0.0.1:{queen_port}",
             "--hive-port", str(free_port()), "--slots-per-worker", str(args.slots),
             "--max-replicas", "1"],
            env=env, stdout=open(os.path.join(home, "queen.log"), "w"), stderr=subprocess.STDOUT))
        wait_healthy(queen_port, "/health")
        task = dict(body, node="localhost", model=f"file:{model}", backend=args.backend)
        log("cold start through the queen ...")
        stream(queen_port, "/v2/tasks", task)
        rows = []
        for clients in (int(n) for n in args.levels.split(",")):
            direct, queen = [], []
            for r in range(args.rounds):
                direct.append(aggregate(worker_port, "/v1/inference", body, clients))
                queen.append(aggregate(queen_port, "/v2/tasks", task, clients))
                log(f"{clients} streams, round {r + 1}: direct {direct[-1]:.0f} tok/s, "
                    f"queen {queen[-1]:.0f} tok/s")
            rows.append((clients, statistics.median(direct), statistics.median(queen)))
        print(f"## Aggregate tokens/s, {os.path.basename(model)} on {args.backend}, {args.tokens} "
              f"tokens per stream, {args.slots} slots, {args.threads} threads, median of "
              f"{args.rounds}\n")
        print("| streams | worker direct | through the queen | queen's cost |")
        print("|---:|---:|---:|---:|")
        for clients, d, q in rows:
            print(f"| {clients} | {d:.0f} | {q:.0f} | {100 * (d - q) / d:+.1f} % |")
    finally:
        stop_processes(procs)


if __name__ == "__main__":
    main()
