#!/usr/bin/env python3
"""Load and fault benchmark of issue 13 (a benchmark run by hand, not a test).

Starts the real daemons from a build: a queen-rbee on a free loopback port with a throw-away
RBEE_HOME, its localhost hive (POST /v2/hives/start), and WORKERS workers of the model with SLOTS
slots each, spawned through the hive (the queen's own cold start gives a worker one slot). The
queen gets --queue-size QUEUE (default: as many as streams), --slots-per-worker SLOTS and
--max-workers-per-model WORKERS, so every stream either runs or queues. Then, at the same time:

  * STREAMS concurrent SSE streams, POST /v2/tasks through the queen (greedy, MAX_TOKENS tokens),
    from the source addresses 127.0.0.10 ... (--stream-sources of them, round robin);
  * SLOWLORIS connections to each daemon (queen, hive, every worker) from 127.0.0.2, each sending
    an unfinished request and then one header byte every 1-2 s, reconnecting when the server
    closes it;
  * GET /health (queen) and /v1/health (hive, workers) every 50 ms on a fresh connection from
    127.0.0.3, on a fixed schedule (a slow answer does not delay the next probe), in a process of
    its own at the caller's priority; the stream and slowloris clients run at nice +5 and
    SCHED_IDLE (they would be other machines on a LAN), so their work disturbs the probes and the
    daemons less.
The slowloris connections start --slowloris-lead s before the streams and go on for at least
--attack-min s in all (past the streams if need be), so the servers' request deadlines show.

Each stream ends in one class: completed (`end` with stop_reason max_tokens or eos, then [DONE];
its token events are the warm-up stream's text, or as many as tokens_out less the warm-up's own
shortfall: a token with no text of its own sends no event), rejected (HTTP 503 QUEUE_FULL with a
Retry-After header) or failed (anything else: error events, truncated streams, resets, timeouts,
a missing [DONE], `end` with stop_reason cancelled). The summary gives the counts, failure
reasons, stream latencies, /health latencies per daemon, what the servers did to the slowloris
connections, and PASS/FAIL for the issue's criteria: 0 lost or truncated streams; every stream
completes or gets 503 QUEUE_FULL with Retry-After; /health p99 < 50 ms on queen, hive and each
worker throughout the attack, over the whole attack and over the part with the streams (a probe
that fails or times out counts as slower than any answer). The machine's load average is printed
too: other work on a 2-core machine shows in every latency.

Usage: bench/load_fault.py [--bin-dir build/bin] [--model GGUF] [--streams 1000] [--slowloris 64]
           [--max-tokens 48] [--workers 1] [--slots 64] [--queue-size N] [--timeout 600]
           [--idle-timeout 60] [--ramp 1] [--attack-min 45] [--worker-binary PATH] [--json]
           [--keep-home]
Exit status 0 PASS, 1 FAIL, 2 the setup failed. Progress goes to stderr, the summary to stdout
(with --json: the JSON summary on stdout, the text on stderr). Python's stdlib only; it uses
loopback addresses only. Every socket operation has a timeout, the whole run a global one
(--timeout) after which everything still open is counted and every process it started is
stopped (SIGTERM to the queen, which stops its hive and workers; then anything left that carries
this run's marker in its environment is killed).
"""
import argparse
import asyncio
import collections
import json
import math
import multiprocessing
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

PROMPT = "Once upon a time"
QUEEN_HOST = "127.0.0.1"
SLOWLORIS_SOURCE = "127.0.0.2"
PROBE_SOURCE = "127.0.0.3"
STREAM_SOURCE_BASE = 10  # 127.0.0.10, .11, ...
HEALTH_P99_LIMIT_MS = 50.0
CLEANUP_RESERVE_S = 60.0  # of --timeout, kept for stopping everything
MARKER_VAR = "RBEE_LOAD_FAULT_RUN"  # not an rbee setting: tags the processes this run starts

t_origin = time.monotonic()


def log(*args):
    print(f"[{time.monotonic() - t_origin:7.1f}s]", *args, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(sorted_values, p):
    """Nearest-rank percentile of an ascending list (p in 0..100); None when empty."""
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, math.ceil(p / 100.0 * len(sorted_values)) - 1))
    return sorted_values[k]


def ms(v):
    if v is None:
        return "-"
    if v == math.inf:
        return "inf"
    return f"{v * 1e3:.1f}"


# ---------------------------------------------------------------------------------------------
# Blocking HTTP/1.1 over a raw socket (setup, health probes): Connection: close, read to EOF.


def http_request(host, port, method, path, body=None, headers=None, timeout=10.0, source=None,
                 timing=None):
    """Returns (status, {lower-case header: value}, body bytes). Raises OSError/ValueError.
    timeout bounds every socket operation and the whole exchange. timing (a dict) gets
    "connected" (monotonic time) once the TCP connection stands."""
    deadline = time.monotonic() + timeout
    payload = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode() + payload
    src = (source, 0) if source else None
    with socket.create_connection((host, port), timeout=timeout, source_address=src) as s:
        if timing is not None:
            timing["connected"] = time.monotonic()
        s.sendall(raw)
        data = bytearray()
        need = None  # total bytes when Content-Length is known
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("response not complete in time")
            s.settimeout(left)
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            if need is None:
                end = data.find(b"\r\n\r\n")
                if end >= 0:
                    for line in bytes(data[:end]).split(b"\r\n")[1:]:
                        k, _, v = line.partition(b":")
                        if k.strip().lower() == b"content-length":
                            need = end + 4 + int(v.strip())
            if need is not None and len(data) >= need:
                break
    end = data.find(b"\r\n\r\n")
    if end < 0:
        raise ValueError(f"no complete response header ({len(data)} bytes)")
    head = bytes(data[:end]).decode("latin-1").split("\r\n")
    parts = head[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise ValueError(f"bad status line {head[0]!r}")
    hdrs = {}
    for line in head[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    body_bytes = bytes(data[end + 4:])
    if "chunked" in hdrs.get("transfer-encoding", "").lower():
        body_bytes = dechunk(body_bytes)
    return int(parts[1]), hdrs, body_bytes


def dechunk(b):
    out, i = bytearray(), 0
    while True:
        j = b.find(b"\r\n", i)
        if j < 0:
            break
        size = int(b[i:j].split(b";")[0].strip() or b"0", 16)
        if size == 0:
            break
        out += b[j + 2:j + 2 + size]
        i = j + 2 + size + 2
    return bytes(out)


def http_json(host, port, method, path, body=None, token=None, timeout=10.0):
    headers = {"Authorization": f"Bearer {token}"} if token else None
    status, _, data = http_request(host, port, method, path, body, headers, timeout)
    try:
        parsed = json.loads(data) if data else None
    except ValueError:
        parsed = None
    return status, parsed, data


# ---------------------------------------------------------------------------------------------
# One SSE stream through the queen (asyncio; every await bounded).


class SseParser:
    def __init__(self):
        self.buf = b""
        self.data = []
        self.comments = 0

    def feed(self, chunk):
        self.buf += chunk
        out = []
        while True:
            i = self.buf.find(b"\n")
            if i < 0:
                break
            line, self.buf = self.buf[:i], self.buf[i + 1:]
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if self.data:
                    out.append(b"\n".join(self.data))
                    self.data = []
            elif line.startswith(b":"):
                self.comments += 1
            elif line.startswith(b"data:"):
                v = line[5:]
                self.data.append(v[1:] if v.startswith(b" ") else v)
        if len(self.buf) > (1 << 20):
            raise ValueError("an SSE line over 1 MiB")
        return out


async def body_chunks(reader, headers, idle):
    """Yields the body's bytes as they come (chunked, Content-Length or until EOF)."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            line = await asyncio.wait_for(reader.readuntil(b"\r\n"), idle)
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                return
            data = await asyncio.wait_for(reader.readexactly(size + 2), idle)
            yield data[:-2]
    elif "content-length" in headers:
        left = int(headers["content-length"])
        while left > 0:
            data = await asyncio.wait_for(reader.read(min(left, 65536)), idle)
            if not data:
                raise asyncio.IncompleteReadError(b"", left)
            left -= len(data)
            yield data
    else:
        while True:
            data = await asyncio.wait_for(reader.read(65536), idle)
            if not data:
                return
            yield data


async def run_stream(index, port, source, task_body, max_tokens, connect_timeout, idle, reference=None):
    """Runs one task stream; returns a record with 'class' completed/rejected/failed.
    reference: the warm-up's record. A worker sends no event for a token with no text of its own
    (tokens_out counts it), so a stream may show fewer token events than tokens_out; greedy
    streams of one prompt show the same text and the same shortfall as the warm-up."""
    rec = {"i": index, "source": source, "class": "failed", "reason": None, "tokens": 0,
           "t_start": time.monotonic()}
    phase = "connect"
    writer = None
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(QUEEN_HOST, port, local_addr=(source, 0), limit=1 << 20),
            connect_timeout)
        rec["t_connected"] = time.monotonic()
        payload = json.dumps(task_body).encode()
        writer.write((f"POST /v2/tasks HTTP/1.1\r\nHost: {QUEEN_HOST}:{port}\r\n"
                      f"Content-Type: application/json\r\nAccept: text/event-stream\r\n"
                      f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n").encode()
                     + payload)
        phase = "send"
        await asyncio.wait_for(writer.drain(), idle)
        phase = "response header"
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), idle)
        rec["t_headers"] = time.monotonic()
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        status = int(parts[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            if k:
                headers[k.strip().lower()] = v.strip()
        rec["status"] = status
        phase = "body"
        if status != 200:
            body = b""
            async for chunk in body_chunks(reader, headers, idle):
                body += chunk
                if len(body) > 65536:
                    break
            try:
                code = json.loads(body)["error"]["code"]
            except (ValueError, KeyError, TypeError):
                code = "?"
            if status == 503 and code == "QUEUE_FULL" and headers.get("retry-after", "") != "":
                rec["class"] = "rejected"
                rec["retry_after"] = headers["retry-after"]
            elif status == 503 and code == "QUEUE_FULL":
                rec["reason"] = "503 QUEUE_FULL without Retry-After"
            else:
                rec["reason"] = f"HTTP {status} {code}"
            return rec
        sse = SseParser()
        text = []
        end = error = None
        done = False
        async for chunk in body_chunks(reader, headers, idle):
            for data in sse.feed(chunk):
                if data == b"[DONE]":
                    done = True
                    break
                try:
                    ev = json.loads(data)
                except ValueError:
                    rec["reason"] = f"unparsable event {data[:60]!r}"
                    return rec
                kind = ev.get("type") if isinstance(ev, dict) else None
                if kind == "token":
                    rec["tokens"] += 1
                    text.append(str(ev.get("t", "")))
                    if "t_first" not in rec:
                        rec["t_first"] = time.monotonic()
                elif kind == "end":
                    end = ev
                elif kind == "error":
                    error = ev
                elif kind == "narration":
                    rec.setdefault("actions", []).append(str(ev.get("action")))
                    if ev.get("action") == "queued":
                        rec["queued"] = True
            if done:
                break
        rec["t_end"] = time.monotonic()
        rec["keepalives"] = sse.comments
        rec["text"] = "".join(text)
        tokens_out = end.get("tokens_out") if isinstance(end, dict) else None
        rec["tokens_out"] = tokens_out
        shortfall = tokens_out - rec["tokens"] if isinstance(tokens_out, int) else None
        ref_shortfall = 0
        if reference is not None and isinstance(reference.get("tokens_out"), int):
            ref_shortfall = reference["tokens_out"] - reference["tokens"]
        same_text = reference is not None and rec["text"] == reference.get("text")
        if reference is not None and not same_text:
            rec["text_differs"] = True
        if error is not None:
            rec["reason"] = f"error event {error.get('code', '?')}"
        elif not done:
            rec["reason"] = "truncated: the body ended without [DONE]" + (
                " (after end)" if end else f" after {rec['tokens']} tokens")
        elif end is None:
            rec["reason"] = "[DONE] without an end event"
        elif end.get("stop_reason") not in ("max_tokens", "eos"):
            rec["reason"] = f"end with stop_reason {end.get('stop_reason')}"
        elif shortfall is not None and shortfall < 0:
            rec["reason"] = f"{rec['tokens']} token events, more than tokens_out {tokens_out}"
        elif reference is not None and shortfall is not None and shortfall != ref_shortfall \
                and not same_text:
            rec["reason"] = (f"token events {rec['tokens']} for tokens_out {tokens_out} "
                             f"(the warm-up: {ref_shortfall} fewer)")
        elif end.get("stop_reason") == "max_tokens" and tokens_out not in (None, max_tokens):
            rec["reason"] = f"stop_reason max_tokens after {tokens_out} of {max_tokens} tokens"
        else:
            rec["class"] = "completed"
        return rec
    except asyncio.CancelledError:
        rec["reason"] = f"still open at the global timeout ({phase})"
        return rec
    except asyncio.TimeoutError:
        rec["reason"] = f"timeout ({phase})"
        return rec
    except asyncio.IncompleteReadError as e:
        if phase == "response header" and not e.partial:
            rec["reason"] = "connection closed without a response"
        else:
            rec["reason"] = f"truncated: connection closed ({phase})"
        return rec
    except (ConnectionResetError, BrokenPipeError):
        rec["reason"] = f"connection reset ({phase})"
        return rec
    except (OSError, ValueError, asyncio.LimitOverrunError) as e:
        rec["reason"] = f"{type(e).__name__} ({phase})"
        return rec
    finally:
        rec.setdefault("t_end", time.monotonic())
        if writer is not None:
            writer.transport.abort()


async def run_streams(args, port, task_body, stop_at, reference):
    sources = [f"127.0.0.{STREAM_SOURCE_BASE + i}" for i in range(args.stream_sources)]
    state = {"open": 0, "max_open": 0, "finished": 0}

    async def one(i):
        delay = args.ramp * i / max(1, args.streams)
        if delay > 0:
            await asyncio.sleep(delay)
        state["open"] += 1
        state["max_open"] = max(state["max_open"], state["open"])
        try:
            return await run_stream(i, port, sources[i % len(sources)], task_body, args.max_tokens,
                                    args.connect_timeout, args.idle_timeout, reference)
        finally:
            state["open"] -= 1
            state["finished"] += 1

    tasks = [asyncio.ensure_future(one(i)) for i in range(args.streams)]

    async def progress():
        while True:
            await asyncio.sleep(5)
            log(f"streams: {state['finished']}/{args.streams} finished, {state['open']} open")

    reporter = asyncio.ensure_future(progress())
    _, pending = await asyncio.wait(tasks, timeout=max(1.0, stop_at - time.monotonic()))
    reporter.cancel()
    if pending:
        log(f"global timeout: {len(pending)} streams still open, cancelling them")
        for t in pending:
            t.cancel()
        await asyncio.wait(pending, timeout=10)
    results = []
    for i, t in enumerate(tasks):
        if t.done() and not t.cancelled():
            results.append(t.result())
        else:
            results.append({"i": i, "class": "failed", "tokens": 0,
                            "reason": "still open at the global timeout (not started)",
                            "t_start": time.monotonic(), "t_end": time.monotonic()})
    return results, state["max_open"]


# ---------------------------------------------------------------------------------------------
# Health probes: one thread per daemon, in their own process.


def probe_once(host, port, path, timeout):
    """(start, latency, error or None, TCP connect time or None)"""
    t0 = time.monotonic()
    timing = {}
    try:
        status, _, _ = http_request(host, port, "GET", path, timeout=timeout, source=PROBE_SOURCE,
                                    timing=timing)
        err = None if status == 200 else f"HTTP {status}"
    except (OSError, ValueError) as e:
        err = type(e).__name__
    lat = time.monotonic() - t0
    return t0, lat, err, (timing["connected"] - t0) if "connected" in timing else None


def probe_process(targets, interval, timeout, stop, out_path):
    """Starts a probe of every target every `interval` seconds on a fixed schedule, each in a
    thread of its own (a slow answer does not delay the next probe, so slow periods are not
    sampled less), and writes [start, latency, error] per probe to out_path when stopped."""
    import concurrent.futures
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    results = {t["name"]: [] for t in targets}
    lag = []  # how late the schedule's ticks were: the client side's own delay
    pools = {t["name"]: concurrent.futures.ThreadPoolExecutor(int(timeout / interval) + 4)
             for t in targets}

    def one(t):
        results[t["name"]].append(probe_once(t["host"], t["port"], t["path"], timeout))

    tick = time.monotonic()
    while not stop.is_set():
        lag.append(max(0.0, time.monotonic() - tick))
        for t in targets:
            pools[t["name"]].submit(one, t)
        tick += interval
        left = tick - time.monotonic()
        if left > 0:
            stop.wait(left)
        else:
            tick = time.monotonic()  # fell behind: do not burst to catch up
    for pool in pools.values():
        pool.shutdown(wait=True)  # every probe ends within `timeout`
    with open(out_path, "w") as f:
        json.dump({"samples": results, "lag": lag}, f)


# ---------------------------------------------------------------------------------------------
# Slowloris: N connections per daemon, in their own process.


async def slowloris_conn(target, idx, stats, stopping):
    header = f"X-Slowloris-{idx}: keeping-you-waiting\r\n".encode()
    while not stopping.is_set():
        t_try = time.monotonic()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(target["host"], target["port"],
                                        local_addr=(SLOWLORIS_SOURCE, 0)), 5)
        except (OSError, asyncio.TimeoutError) as e:
            stats["connect_failures"][type(e).__name__] += 1
            await asyncio.sleep(1)
            continue
        stats["opened"] += 1
        stats["open"] += 1
        t_conn = time.monotonic()
        first = bytearray()

        async def read_until_eof():
            while True:
                data = await reader.read(4096)
                if not data:
                    return
                if len(first) < 200:
                    first.extend(data[:200 - len(first)])

        watch = asyncio.ensure_future(read_until_eof())
        closed = None
        try:
            writer.write(f"GET {target['path']} HTTP/1.1\r\nHost: {target['host']}\r\n".encode())
            pos = 0
            while not stopping.is_set():
                done, _ = await asyncio.wait({watch}, timeout=random.uniform(1.0, 2.0))
                if done:
                    exc = watch.exception()
                    closed = "EOF" if exc is None else type(exc).__name__
                    break
                writer.write(header[pos:pos + 1])  # one byte; the request never ends
                pos = (pos + 1) % len(header)
                await asyncio.wait_for(writer.drain(), 5)
        except (OSError, asyncio.TimeoutError) as e:
            closed = f"write {type(e).__name__}"
        finally:
            watch.cancel()
            writer.transport.abort()
            stats["open"] -= 1
        if closed is None:
            continue  # we stopped
        held = time.monotonic() - t_conn
        stats["closed"].append(held)
        answer = bytes(first).split(b"\r\n", 1)[0].decode("latin-1") if first else "(no answer)"
        stats["answers"][f"{answer} / {closed}"] += 1
        # A server that refuses at once must not make this a busy loop.
        await asyncio.sleep(1.0 if time.monotonic() - t_try < 1.0 else 0.05)


async def slowloris_main(targets, per_daemon, stop):
    stopping = asyncio.Event()
    stats = {t["name"]: {"opened": 0, "open": 0, "closed": [], "held": [],
                         "answers": collections.Counter(),
                         "connect_failures": collections.Counter()} for t in targets}
    conns = [asyncio.ensure_future(slowloris_conn(t, i, stats[t["name"]], stopping))
             for t in targets for i in range(per_daemon)]
    while not stop.is_set():
        await asyncio.sleep(0.5)
        now = time.monotonic()
        for st in stats.values():
            st["held"].append((now, st["open"]))
    stopping.set()
    await asyncio.wait(conns, timeout=5)
    for c in conns:
        c.cancel()
    return stats


def slowloris_process(targets, per_daemon, stop, out_path):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stats = asyncio.run(slowloris_main(targets, per_daemon, stop))
    with open(out_path, "w") as f:
        json.dump(stats, f)


# ---------------------------------------------------------------------------------------------
# The daemons.


class Cluster:
    def __init__(self, args, home, run_id):
        self.args = args
        self.home = home
        self.run_id = run_id
        self.queen = None
        self.queen_port = free_port()
        self.hive_port = free_port()
        self.hive_token = None
        self.worker_pids = []
        self.workers = []  # queen's view: dicts with worker_id, url, slots_total
        self.model_ref = f"file:{os.path.abspath(args.model)}"
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("RBEE_") and not k.startswith("HF_")}
        env.update({
            "RBEE_HOME": home,
            "RBEE_CONFIG": os.path.join(home, "config.toml"),  # empty: no machine config
            # Away from the default 8001 other runs on this machine may use.
            "RBEE_WORKER_PORT_START": str(random.randrange(20000, 40000)),
            MARKER_VAR: run_id,
        })
        if args.worker_binary:  # the hive's worker.binary setting
            env["RBEE_WORKER_BINARY"] = os.path.abspath(args.worker_binary)
        self.env = env
        open(env["RBEE_CONFIG"], "w").close()

    def settings(self):
        a = self.args
        return {
            "queen": f"queen-rbee --addr {QUEEN_HOST}:{self.queen_port} --hive-port {self.hive_port} "
                     f"--queue-size {a.queue_size} --max-workers-per-model {a.workers} "
                     f"--slots-per-worker {a.slots}",
            "env": {k: self.env[k] for k in ("RBEE_HOME", "RBEE_CONFIG", "RBEE_WORKER_PORT_START",
                                             "RBEE_WORKER_BINARY") if k in self.env},
            "hive": f"started by the queen (POST /v2/hives/start), port {self.hive_port}",
            "workers": f"{a.workers} x POST hive /v1/workers/spawn "
                       f"{{model_ref: {self.model_ref}, slots: {a.slots}, backend: cpu}}",
            "worker_urls": [w.get("url") for w in self.workers],
        }

    def start(self, deadline):
        a = self.args
        exe = os.path.join(a.bin_dir, "queen-rbee")
        cmd = [exe, "--addr", f"{QUEEN_HOST}:{self.queen_port}", "--hive-port", str(self.hive_port),
               "--queue-size", str(a.queue_size), "--max-workers-per-model", str(a.workers),
               "--slots-per-worker", str(a.slots)]
        log("starting", " ".join(cmd))
        self.queen_log = open(os.path.join(self.home, "queen.log"), "w")
        self.queen = subprocess.Popen(cmd, env=self.env, stdout=self.queen_log,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      start_new_session=True)
        self._wait(lambda: http_json(QUEEN_HOST, self.queen_port, "GET", "/health", timeout=2)[0] == 200,
                   min(deadline, time.monotonic() + 30), "queen /health")
        log("queen up; starting the localhost hive")
        status, body, raw = http_json(QUEEN_HOST, self.queen_port, "POST", "/v2/hives/start",
                                      {"node": "localhost"}, timeout=60)
        if status != 200:
            raise RuntimeError(f"POST /v2/hives/start: HTTP {status} {raw[:300]!r}")
        with open(os.path.join(self.home, "secrets", "hive-localhost.token")) as f:
            self.hive_token = f.read().strip()
        for _ in range(a.workers):
            status, body, raw = http_json(
                QUEEN_HOST, self.hive_port, "POST", "/v1/workers/spawn",
                {"model_ref": self.model_ref, "slots": a.slots, "backend": "cpu"},
                token=self.hive_token, timeout=60)
            if status != 200:
                raise RuntimeError(f"hive POST /v1/workers/spawn: HTTP {status} {raw[:300]!r}")
            self.worker_pids.append(body.get("pid"))
            log(f"worker {body.get('worker_id')} spawned (pid {body.get('pid')}, port {body.get('port')})")

        def hive_ready():
            status, body, _ = http_json(QUEEN_HOST, self.hive_port, "GET", "/v1/workers/list",
                                        token=self.hive_token, timeout=5)
            ws = body.get("workers", []) if status == 200 and isinstance(body, dict) else []
            for w in ws:
                if w.get("pid") and w["pid"] not in self.worker_pids:
                    self.worker_pids.append(w["pid"])
            return sum(1 for w in ws if w.get("state") == "idle") >= a.workers

        self._wait(hive_ready, min(deadline, time.monotonic() + 120), "workers idle on the hive")

        def queen_sees():
            self.workers = self.list_workers()
            return sum(1 for w in self.workers if w.get("state") == "idle"
                       and w.get("slots_total") == a.slots) >= a.workers

        self._wait(queen_sees, min(deadline, time.monotonic() + 60), "workers idle on the queen")
        log(f"queen lists {len(self.workers)} worker(s): "
            + ", ".join(f"{w.get('worker_id')} {w.get('url')} slots {w.get('slots_total')}"
                        for w in self.workers))

    def list_workers(self):
        status, body, _ = http_json(QUEEN_HOST, self.queen_port, "GET", "/v2/workers/list", timeout=10)
        if status != 200 or not isinstance(body, dict):
            return []
        return [w for w in body.get("workers", []) if w.get("model_ref") == self.model_ref]

    @staticmethod
    def _wait(check, deadline, what):
        last = None
        while time.monotonic() < deadline:
            try:
                if check():
                    return
            except (OSError, ValueError) as e:
                last = e
            time.sleep(0.2)
        raise RuntimeError(f"timed out waiting for {what}" + (f" (last error: {last})" if last else ""))

    def marked_pids(self):
        """Processes whose environment carries this run's marker (the daemons and their children)."""
        pids = []
        needle = f"{MARKER_VAR}={self.run_id}".encode()
        for d in os.listdir("/proc"):
            if not d.isdigit() or int(d) == os.getpid():
                continue
            try:
                with open(f"/proc/{d}/environ", "rb") as f:
                    if needle in f.read().split(b"\0"):
                        pids.append(int(d))
            except OSError:
                continue
        return pids

    def stop(self):
        if self.queen is not None and self.queen.poll() is None:
            log("stopping the queen (SIGTERM; it stops its hive and workers)")
            try:
                self.queen.send_signal(signal.SIGTERM)
                self.queen.wait(timeout=45)
            except subprocess.TimeoutExpired:
                log("the queen did not stop in 45 s: SIGKILL")
                self.queen.kill()
                self.queen.wait(timeout=10)
        # Whatever is left (hive, workers): by marker, plus the worker pids the hive reported.
        left = set(self.marked_pids())
        for pid in self.worker_pids:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if b"llm-worker-rbee" in f.read():
                        left.add(pid)
            except (OSError, TypeError):
                pass
        if left:
            log(f"killing {len(left)} process(es) still running: {sorted(left)}")
            for pid in left:
                try:
                    os.kill(pid, signal.SIGTERM)
                except OSError:
                    pass
            end = time.monotonic() + 5
            while time.monotonic() < end and any(os.path.exists(f"/proc/{p}") for p in left):
                time.sleep(0.1)
            for pid in self.marked_pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass


# ---------------------------------------------------------------------------------------------
# Summary.


def health_stats(samples, t_from, t_to):
    window = [(lat, err, conn) for t, lat, err, conn in samples if t_from <= t < t_to]
    lats = sorted(math.inf if err else lat for lat, err, _ in window)
    # TCP connect alone (the accept queue; ~1 s or more means a dropped SYN was sent again).
    conns = sorted(math.inf if conn is None else conn for _, _, conn in window)
    errors = collections.Counter(err for _, err, _ in window if err)
    return {"samples": len(window), "errors": sum(errors.values()), "error_kinds": dict(errors),
            "p50_s": percentile(lats, 50), "p99_s": percentile(lats, 99),
            "max_s": lats[-1] if lats else None, "connect_p99_s": percentile(conns, 99),
            "connect_over_900ms": sum(1 for c in conns if c >= 0.9)}


def summarise(args, cluster, results, max_open, probes, loris, phases, load_at_start):
    t_probe, t_attack, t_load, t_load_end, t_attack_end = phases
    counts = collections.Counter(r["class"] for r in results)
    reasons = collections.Counter(r["reason"] for r in results if r["class"] == "failed")
    completed = [r for r in results if r["class"] == "completed"]
    total = sorted(r["t_end"] - r["t_start"] for r in completed)
    ttft = sorted(r["t_first"] - r["t_start"] for r in completed if "t_first" in r)
    connect = sorted(r["t_connected"] - r["t_start"] for r in results if "t_connected" in r)
    tokens = sum(r["tokens"] for r in results)
    load_wall = t_load_end - t_load

    def pcts(v):
        return {"n": len(v), "p50_s": percentile(v, 50), "p90_s": percentile(v, 90),
                "p99_s": percentile(v, 99), "max_s": v[-1] if v else None}

    health = {}
    for name, samples in (probes or {}).get("samples", {}).items():
        health[name] = {"idle": health_stats(samples, t_probe, t_attack),
                        "attack": health_stats(samples, t_attack, t_attack_end),
                        "streams": health_stats(samples, t_load, t_load_end)}
    lag = sorted((probes or {}).get("lag", []))
    slow = {}
    for name, st in (loris or {}).items():
        closed = sorted(st["closed"])
        held = [n for t, n in st["held"] if t_load <= t <= t_load_end]
        slow[name] = {"opened": st["opened"], "closed_by_server": len(closed),
                      "closed_after_s": {"min": closed[0] if closed else None,
                                         "p50": percentile(closed, 50),
                                         "max": closed[-1] if closed else None},
                      "held_during_load": {"min": min(held) if held else None,
                                           "mean": sum(held) / len(held) if held else None,
                                           "max": max(held) if held else None},
                      "server_answers": dict(st["answers"]),
                      "connect_failures": dict(st["connect_failures"])}
    failed = counts.get("failed", 0)
    crit_streams = failed == 0 and len(results) == args.streams
    bad_health = {}
    for name, h in health.items():
        # Throughout: over the whole attack and over the streams' part of it.
        p99 = [h[w]["p99_s"] for w in ("attack", "streams")]
        if None in p99 or max(p99) * 1e3 >= HEALTH_P99_LIMIT_MS:
            bad_health[name] = p99
    crit_health = not bad_health and len(health) >= 3
    capacity = args.workers * args.slots + args.queue_size
    summary = {
        "config": {
            "streams": args.streams, "stream_sources": args.stream_sources,
            "max_tokens": args.max_tokens, "prompt": PROMPT, "ramp_s": args.ramp,
            "slowloris_per_daemon": args.slowloris, "workers": args.workers, "client_nice": args.client_nice,
            "slots_per_worker": args.slots, "queue_size": args.queue_size,
            "capacity_slots_plus_queue": capacity, "model": os.path.abspath(args.model),
            "bin_dir": os.path.abspath(args.bin_dir), "cores": os.cpu_count(),
            "load_average_1m": {"start": load_at_start, "end": os.getloadavg()[0]},
            "daemons": cluster.settings(),
            "timeouts_s": {"global": args.timeout, "stream_connect": args.connect_timeout,
                           "stream_idle": args.idle_timeout, "probe": args.probe_timeout},
        },
        "streams": {
            "completed": counts.get("completed", 0), "rejected_queue_full": counts.get("rejected", 0),
            "failed": failed, "failure_reasons": dict(reasons.most_common()),
            "failed_by_source": dict(collections.Counter(
                r.get("source") for r in results if r["class"] == "failed").most_common()),
            "queued": sum(1 for r in results if r.get("queued")),
            "completed_text_differs_from_warmup": sum(
                1 for r in results if r["class"] == "completed" and r.get("text_differs")),
            "narrations": dict(collections.Counter(a for r in results for a in r.get("actions", []))),
            "max_open": max_open, "load_wall_s": load_wall, "tokens": tokens,
            "tokens_per_s": tokens / load_wall if load_wall > 0 else None,
            "latency_completed": pcts(total), "ttft_completed": pcts(ttft), "connect": pcts(connect),
        },
        "health": health,
        "probe_client_lag_s": {"p50": percentile(lag, 50), "p99": percentile(lag, 99),
                               "max": lag[-1] if lag else None},
        "slowloris": slow,
        "phases_s": {"idle_probe": t_attack - t_probe, "slowloris_before_streams": t_load - t_attack,
                     "streams": load_wall, "attack": t_attack_end - t_attack},
        "criteria": {
            "no_lost_or_truncated_streams": crit_streams,
            "complete_or_503_queue_full_with_retry_after": crit_streams,
            "health_p99_under_50ms": crit_health,
        },
    }
    summary["pass"] = crit_streams and crit_health
    return summary


def finite(v):
    """The summary for JSON: infinite latencies (failed probes) become null."""
    if isinstance(v, float) and math.isinf(v):
        return None
    if isinstance(v, dict):
        return {k: finite(x) for k, x in v.items()}
    if isinstance(v, list):
        return [finite(x) for x in v]
    return v


def print_summary(s, out):
    c, st = s["config"], s["streams"]
    p = lambda *a: print(*a, file=out)  # noqa: E731
    p(f"## Load and fault benchmark (issue 13): {st['completed'] + st['rejected_queue_full'] + st['failed']}"
      f" streams, {c['slowloris_per_daemon']} slowloris per daemon, {c['cores']} cores\n")
    p("Configuration:")
    p(f"  {c['daemons']['queen']}")
    p(f"  env: " + " ".join(f"{k}={v}" for k, v in c["daemons"]["env"].items()))
    p(f"  hive: {c['daemons']['hive']}")
    p(f"  workers: {c['daemons']['workers']} -> {', '.join(map(str, c['daemons']['worker_urls']))}")
    p(f"  streams: {c['streams']} x POST /v2/tasks {{model: file:{c['model']}, prompt: {c['prompt']!r}, "
      f"max_tokens: {c['max_tokens']}, temperature: 0}} from {c['stream_sources']} source addresses "
      f"127.0.0.{STREAM_SOURCE_BASE}+, started over {c['ramp_s']} s")
    p(f"  slots + queue = {c['capacity_slots_plus_queue']}; timeouts (s): {c['timeouts_s']}; "
      f"clients at nice +{c['client_nice']} (daemons and /health probes at the caller's)")
    la = c["load_average_1m"]
    p(f"  machine load average (1 min) at the start {la['start']:.1f}, at the end {la['end']:.1f}: other "
      f"work on the machine shows in the latencies (and in the probe schedule lag below)\n")
    p("| streams | completed | rejected 503 QUEUE_FULL | failed | were queued | max open | tokens | tokens/s | wall (s) |")
    p("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    n = st["completed"] + st["rejected_queue_full"] + st["failed"]
    tps = f"{st['tokens_per_s']:.0f}" if st["tokens_per_s"] else "-"
    p(f"| {n} | {st['completed']} | {st['rejected_queue_full']} | {st['failed']} | {st['queued']} | "
      f"{st['max_open']} | {st['tokens']} | {tps} | {st['load_wall_s']:.1f} |\n")
    if st["completed_text_differs_from_warmup"]:
        p(f"({st['completed_text_differs_from_warmup']} completed streams' text differs from the warm-up's)\n")
    if st["failure_reasons"]:
        p("Failures:")
        for reason, k in list(st["failure_reasons"].items())[:12]:
            p(f"  {k:5d}  {reason}")
        p("  by source address: " + ", ".join(f"{k} {v}" for k, v in st["failed_by_source"].items()))
        p("")
    p("| stream latency (ms) | n | p50 | p90 | p99 | max |")
    p("|---|---:|---:|---:|---:|---:|")
    for label, key in (("connect (all)", "connect"), ("first token (completed)", "ttft_completed"),
                       ("whole stream (completed)", "latency_completed")):
        v = st[key]
        p(f"| {label} | {v['n']} | {ms(v['p50_s'])} | {ms(v['p90_s'])} | {ms(v['p99_s'])} | {ms(v['max_s'])} |")
    p("")
    ph = s["phases_s"]
    p(f"/health latency (ms): idle = {ph['idle_probe']:.0f} s before the attack; attack = all "
      f"{ph['attack']:.0f} s of slowloris ({ph['slowloris_before_streams']:.0f} s before the streams, "
      f"{ph['streams']:.0f} s with them, the rest after); streams = the part with the streams")
    p("| daemon | idle p50 | idle p99 | attack probes | failed/timed out | attack p50 | attack p99 | attack max "
      "| streams p99 | attack: TCP connect p99 | connects >= 0.9 s |")
    p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, h in s["health"].items():
        i, a = h["idle"], h["attack"]
        p(f"| {name} | {ms(i['p50_s'])} | {ms(i['p99_s'])} | {a['samples']} | {a['errors']} | "
          f"{ms(a['p50_s'])} | {ms(a['p99_s'])} | {ms(a['max_s'])} | {ms(h['streams']['p99_s'])} | "
          f"{ms(a['connect_p99_s'])} | {a['connect_over_900ms']} |")
        if a["error_kinds"]:
            p(f"  {name} probe failures: " + ", ".join(f"{k} x{v}" for k, v in a["error_kinds"].items()))
    lag = s["probe_client_lag_s"]
    p(f"(probe schedule lag, the client side's own delay: p50 {ms(lag['p50'])} ms, "
      f"p99 {ms(lag['p99'])} ms, max {ms(lag['max'])} ms)\n")
    p("| slowloris | opened | closed by server | closed after (s) min / p50 / max | held during streams min / mean / max |")
    p("|---|---:|---:|---|---|")
    for name, sl in s["slowloris"].items():
        ca, hd = sl["closed_after_s"], sl["held_during_load"]
        f1 = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
        p(f"| {name} | {sl['opened']} | {sl['closed_by_server']} | {f1(ca['min'])} / {f1(ca['p50'])} / "
          f"{f1(ca['max'])} | {f1(hd['min'])} / {f1(hd['mean'])} / {f1(hd['max'])} |")
    for name, sl in s["slowloris"].items():
        extra = []
        if sl["server_answers"]:
            extra.append("server answers: " + ", ".join(f"{k} x{v}" for k, v in sl["server_answers"].items()))
        if sl["connect_failures"]:
            extra.append("connect failures: " + ", ".join(f"{k} x{v}" for k, v in sl["connect_failures"].items()))
        if extra:
            p(f"  {name}: " + "; ".join(extra))
    p("")
    cr = s["criteria"]
    ok = lambda b: "PASS" if b else "FAIL"  # noqa: E731
    p(f"{ok(cr['no_lost_or_truncated_streams'])}  0 lost or truncated streams ({st['failed']} failed)")
    p(f"{ok(cr['complete_or_503_queue_full_with_retry_after'])}  every stream completed or got 503 QUEUE_FULL "
      f"with Retry-After ({st['completed']} + {st['rejected_queue_full']} of {n})")
    worst = ", ".join(f"{k} {ms(h['attack']['p99_s'])}/{ms(h['streams']['p99_s'])} ms"
                      for k, h in s["health"].items())
    p(f"{ok(cr['health_p99_under_50ms'])}  /health p99 < {HEALTH_P99_LIMIT_MS:.0f} ms on queen, hive and "
      f"workers, whole attack / streams part ({worst})")
    if st["rejected_queue_full"] and c["capacity_slots_plus_queue"] >= n:
        p(f"note: {st['rejected_queue_full']} streams were rejected although slots + queue "
          f"({c['capacity_slots_plus_queue']}) >= streams")
    p(f"RESULT: {ok(s['pass'])}")


# ---------------------------------------------------------------------------------------------


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin-dir", default=os.path.join(root, "build", "bin"))
    ap.add_argument("--worker-binary", default=None,
                    help="llm-worker-rbee the hive starts (RBEE_WORKER_BINARY; default: next to rbee-hive)")
    ap.add_argument("--model", default=os.path.join(root, "..", "shared", "models", "stories260K.gguf"))
    ap.add_argument("--streams", type=int, default=1000, help="concurrent SSE streams (default 1000)")
    ap.add_argument("--stream-sources", type=int, default=8,
                    help="source addresses of the streams, 127.0.0.10 on (default 8)")
    ap.add_argument("--slowloris", type=int, default=64, help="slowloris connections per daemon (default 64)")
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--workers", type=int, default=1, help="workers of the model (default 1)")
    ap.add_argument("--slots", type=int, default=64, help="slots per worker (default 64)")
    ap.add_argument("--queue-size", type=int, default=None, help="the queen's queue (default: --streams)")
    ap.add_argument("--ramp", type=float, default=1.0, help="seconds over which the streams start (default 1)")
    ap.add_argument("--timeout", type=float, default=600.0,
                    help="global limit in seconds, setup and cleanup included (default 600)")
    ap.add_argument("--connect-timeout", type=float, default=30.0, help="per stream connect (default 30 s)")
    ap.add_argument("--idle-timeout", type=float, default=60.0,
                    help="a stream silent this long (no byte) fails (default 60 s)")
    ap.add_argument("--slowloris-lead", type=float, default=5.0,
                    help="seconds of slowloris (and probes) before the streams start (default 5)")
    ap.add_argument("--attack-min", type=float, default=45.0,
                    help="the slowloris attack (and the probing) lasts at least this long, past the "
                         "streams if need be, so request-read deadlines show (default 45 s)")
    ap.add_argument("--probe-interval", type=float, default=0.05)
    ap.add_argument("--probe-timeout", type=float, default=5.0)
    ap.add_argument("--client-nice", type=int, default=5,
                    help="niceness of the stream and slowloris clients (not of the daemons nor the "
                         "/health probes), which on a real LAN run elsewhere (default 5)")
    ap.add_argument("--json", action="store_true", help="JSON summary on stdout (text on stderr)")
    ap.add_argument("--keep-home", action="store_true", help="keep RBEE_HOME (logs) after the run")
    args = ap.parse_args()
    if args.queue_size is None:
        args.queue_size = args.streams
    if not (1 <= args.stream_sources <= 200) or args.streams < 1 or args.slowloris < 0:
        ap.error("bad --streams/--stream-sources/--slowloris")
    if not (1 <= args.slots <= 256) or not (1 <= args.workers <= 64) or args.queue_size < 1:
        ap.error("--slots 1..256, --workers 1..64 and --queue-size >= 1 (the daemons' ranges)")
    if args.timeout < CLEANUP_RESERVE_S + 30:
        ap.error(f"--timeout must leave {CLEANUP_RESERVE_S:.0f} s for stopping everything, plus a run")
    for b in ("queen-rbee", "rbee-hive", "llm-worker-rbee"):
        path = os.path.join(args.bin_dir, b)
        if b == "llm-worker-rbee" and args.worker_binary:
            path = args.worker_binary
        if not os.access(path, os.X_OK):
            print(f"missing {path}: build first", file=sys.stderr)
            return 2
    if not os.path.isfile(args.model):
        print(f"model not found: {args.model}", file=sys.stderr)
        return 2
    # 1,000 streams + slowloris + probes need more descriptors than the usual 1024 (here and in
    # the daemons, which inherit the limit).
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = min(hard, max(soft, 4 * args.streams + 1024)) if hard != resource.RLIM_INFINITY \
            else max(soft, 4 * args.streams + 1024)
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ImportError, ValueError, OSError):
        pass

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    load_at_start = os.getloadavg()[0]
    deadline = time.monotonic() + args.timeout
    stop_at = deadline - CLEANUP_RESERVE_S
    home = tempfile.mkdtemp(prefix="rbee-load-fault-")
    run_id = uuid.uuid4().hex
    cluster = Cluster(args, home, run_id)
    ctx = multiprocessing.get_context("fork")
    stop_probe, stop_loris = ctx.Event(), ctx.Event()
    probe_proc = loris_proc = None
    probes = loris = None
    summary = None
    code = 2
    try:
        try:
            cluster.start(stop_at)
        except (RuntimeError, OSError, ValueError) as e:
            log(f"setup failed: {e}")
            log(f"queen log: {os.path.join(home, 'queen.log')} (kept)")
            args.keep_home = True
            return 2
        task_body = {"model": cluster.model_ref, "node": "localhost", "prompt": PROMPT,
                     "max_tokens": args.max_tokens, "temperature": 0}
        warm = asyncio.run(run_stream(-1, cluster.queen_port, "127.0.0.1", task_body,
                                      args.max_tokens, 10, 60))
        if warm["class"] != "completed":
            log(f"warm-up stream failed: {warm['reason']}")
            args.keep_home = True
            return 2
        log(f"warm-up stream: {warm['tokens']} tokens in {ms(warm['t_end'] - warm['t_start'])} ms")
        cluster.workers = cluster.list_workers() or cluster.workers
        targets = [{"name": "queen", "host": QUEEN_HOST, "port": cluster.queen_port, "path": "/health"},
                   {"name": "hive", "host": QUEEN_HOST, "port": cluster.hive_port, "path": "/v1/health"}]
        for k, w in enumerate(cluster.workers):
            hostport = w["url"].split("://", 1)[-1].rstrip("/")
            host, _, port = hostport.rpartition(":")
            targets.append({"name": f"worker{k + 1}" if len(cluster.workers) > 1 else "worker",
                            "host": host.strip("[]"), "port": int(port), "path": "/v1/health"})
        log("targets: " + ", ".join(f"{t['name']} :{t['port']}" for t in targets))

        probe_out = os.path.join(home, "probes.json")
        loris_out = os.path.join(home, "slowloris.json")
        t_probe = time.monotonic()
        probe_proc = ctx.Process(target=probe_process, daemon=True,
                                 args=(targets, args.probe_interval, args.probe_timeout, stop_probe, probe_out))
        probe_proc.start()
        time.sleep(2.0)  # idle reference
        if args.client_nice:
            os.nice(args.client_nice)  # here and the slowloris process; not the daemons nor the probes
            # Idle scheduling too: the clients stand for other machines, so a daemon or a probe
            # that wakes up always runs before them.
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        t_attack = time.monotonic()
        log(f"slowloris: {args.slowloris} connections to each of {len(targets)} daemons from {SLOWLORIS_SOURCE}")
        loris_proc = ctx.Process(target=slowloris_process, daemon=True,
                                 args=(targets, args.slowloris, stop_loris, loris_out))
        loris_proc.start()
        time.sleep(args.slowloris_lead)  # let them take hold before the streams
        t_load = time.monotonic()
        log(f"starting {args.streams} streams")
        results, max_open = asyncio.run(run_streams(args, cluster.queen_port, task_body, stop_at, warm))
        t_load_end = time.monotonic()
        # The attack lasts at least --attack-min s, so the servers' request deadlines show.
        hold = min(t_attack + args.attack_min, stop_at) - time.monotonic()
        if hold > 0:
            log(f"streams done; slowloris and probes go on for {hold:.0f} s more (--attack-min)")
            time.sleep(hold)
        t_attack_end = time.monotonic()
        log("stopping slowloris and probes")
        stop_loris.set()
        stop_probe.set()
        for proc, path, name in ((loris_proc, loris_out, "slowloris"), (probe_proc, probe_out, "probes")):
            proc.join(args.probe_timeout + 20)
            if proc.is_alive():
                log(f"{name} process did not stop: terminating it")
                proc.terminate()
                proc.join(5)
            try:
                with open(path) as f:
                    data = json.load(f)
            except (OSError, ValueError):
                data = None
                log(f"no results from the {name} process")
            if name == "slowloris":
                loris = data
            else:
                probes = data
        summary = summarise(args, cluster, results, max_open, probes, loris,
                            (t_probe, t_attack, t_load, t_load_end, t_attack_end), load_at_start)
        code = 0 if summary["pass"] else 1
    except KeyboardInterrupt:
        log("interrupted")
        code = 2
    finally:
        stop_loris.set()
        stop_probe.set()
        for proc in (loris_proc, probe_proc):
            if proc is not None and proc.is_alive():
                proc.terminate()
                proc.join(5)
        cluster.stop()
        if args.keep_home:
            log(f"RBEE_HOME kept: {home} (queen.log, logs/)")
        else:
            shutil.rmtree(home, ignore_errors=True)
    if summary is not None:
        print_summary(summary, sys.stderr if args.json else sys.stdout)
        if args.json:
            print(json.dumps(finite(summary), indent=2, default=str))
    return code


if __name__ == "__main__":
    sys.exit(main())
