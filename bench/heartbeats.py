"""Benchmark: 10,000 simulated scanners heartbeating every 60 s through a real ingest process.

The scanners' keys are written to the config database as enrolment stores them (SHA-256 only), then ingest
is restarted, as after a deploy, and the load runs: every scanner posts `/scanner/v1/heartbeat` once per
interval at its own phase (~167 requests/s, evenly spread), over keep-alive connections as Traefik holds
them to ingest. Measured over the window, after a warm-up:

- ingest's CPU (utime + stime of its process, from /proc/<pid>/stat) as % of one core — target < 5%;
- commits/s (`xact_commit` of the appliance's databases in pg_stat_database; read-only transactions count
  too) — target < 10/s;
- answers (all must be 200) and their latency, and that every scanner is online afterwards;
- as a peer, the same load against a bare ASGI app (no framework, no work) under the same uvicorn settings:
  the HTTP server's own per-request cost on this machine, which the target has to fit in as well.

    .venv/bin/python bench/heartbeats.py [--scanners 10000] [--interval 60] [--warmup 15] [--duration 60] [--floor 30]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.domain.scanners import keys
from tests.integration.test_scanner_support import IngestEnv, ingest_env
from tests.support.postgres import PostgresServer, free_port, running_postgres
from tests.support.services import stop_process

# The peer: what uvicorn (uvloop + httptools, as ingest runs it) costs to answer a small JSON body, and nothing else.
FLOOR_APP = """
import sys, uvicorn
BODY = b'{"server_time": "2026-01-01T00:00:00Z", "heartbeat_interval": 60.0, "lease_seconds": 300.0}'
async def app(scope, receive, send):
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]})
    await send({"type": "http.response.body", "body": BODY})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False, lifespan="off",
            server_header=False, timeout_keep_alive=120)
"""
CPU_TARGET = 5.0      # % of one core
COMMITS_TARGET = 10.0  # per second
TICKS = os.sysconf("SC_CLK_TCK")


def seed(env: IngestEnv, count: int) -> list[str]:
    """`count` active scanners with one key each, stored as enrolment stores them; returns the keys."""
    pairs = [keys.new_key() for _ in range(count)]
    with psycopg.connect(env.dsn("config"), autocommit=True) as conn:
        with conn.cursor().copy("COPY scanners (name, status) FROM STDIN") as copy:
            for i in range(count):
                copy.write_row((f"hb-{i:05d}", "active"))
        ids = [r[0] for r in conn.execute("SELECT id FROM scanners WHERE name LIKE 'hb-%%' ORDER BY name")]
        with conn.cursor().copy("COPY scanner_keys (scanner_id, key_id, key_hash) FROM STDIN") as copy:
            for sid, (key_id, key) in zip(ids, pairs, strict=True):
                copy.write_row((sid, key_id, hashlib.sha256(key.encode()).digest()))
    return [key for _, key in pairs]


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def commits(pg: PostgresServer, databases: list[str]) -> dict[str, int]:
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        rows = conn.execute("SELECT datname, xact_commit FROM pg_stat_database WHERE datname = ANY(%s)",
                            (databases,)).fetchall()
    return {name: int(n) for name, n in rows}


class Connection:
    """One keep-alive HTTP/1.1 connection, as a proxy holds to its backend."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def post(self, path: str, key: str, body: bytes) -> int:
        self.writer.write(f"POST {path} HTTP/1.1\r\nHost: ingest\r\nX-Mipo-Key: {key}\r\n"
                          f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        await self.reader.readexactly(length)
        return status


async def heartbeat_load(port: int, scanner_keys: list[str], interval: float, seconds: float,
                         connections: int) -> tuple[list[float], dict[int, int]]:
    """Every scanner beats once per `interval` at its own evenly spread phase, for `seconds`."""
    queue: asyncio.Queue[tuple[float, str] | None] = asyncio.Queue()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    body = b'{"version": "0.1.0", "load": 0.25, "running_jobs": 1}'

    async def worker() -> None:
        conn = await Connection.open(port)
        while (item := await queue.get()) is not None:
            due, key = item
            status = await conn.post("/scanner/v1/heartbeat", key, body)
            latencies.append(time.monotonic() - due)
            statuses[status] = statuses.get(status, 0) + 1
        conn.writer.close()

    workers = [asyncio.create_task(worker()) for _ in range(connections)]
    start, step, n = time.monotonic(), interval / len(scanner_keys), 0
    while (due := start + n * step) < start + seconds:
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((due, scanner_keys[n % len(scanner_keys)]))
        n += 1
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    return latencies, statuses


def floor_cpu(scanner_keys: list[str], args: argparse.Namespace) -> float:
    """% of one core a bare ASGI app under the same uvicorn settings spends on the same load."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", FLOOR_APP, str(port)])
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        window: dict[str, float] = {}

        async def run() -> None:
            load = asyncio.create_task(heartbeat_load(port, scanner_keys, args.interval, 5 + args.floor,
                                                      args.connections))
            await asyncio.sleep(5)
            window["cpu0"], window["t0"] = process_cpu_seconds(proc.pid), time.monotonic()
            await asyncio.sleep(args.floor)
            window["cpu1"], window["t1"] = process_cpu_seconds(proc.pid), time.monotonic()
            await load

        asyncio.run(run())
        return 100 * (window["cpu1"] - window["cpu0"]) / (window["t1"] - window["t0"])
    finally:
        stop_process(proc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scanners", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between one scanner's beats")
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument("--duration", type=float, default=60.0, help="measured window, seconds")
    parser.add_argument("--connections", type=int, default=32, help="keep-alive connections (Traefik's pool)")
    parser.add_argument("--floor", type=float, default=30.0, help="window of the bare-ASGI peer, seconds (0: skip)")
    args = parser.parse_args()
    timings = {"heartbeat_interval": args.interval, "offline_after": 2 * args.interval}
    with running_postgres() as pg, tempfile.TemporaryDirectory() as tmp, \
            ingest_env(pg, Path(tmp), scanner=timings) as env:
        scanner_keys = seed(env, args.scanners)
        env.process.stop()
        started = time.monotonic()
        env.process.start()  # as after a deploy: the scanners exist, ingest starts with them
        ready = time.monotonic() - started
        databases = [env.owner.databases.config.name, env.owner.databases.jobs.name,
                     env.owner.databases.results.name]
        assert env.process.proc is not None
        pid = env.process.proc.pid
        window: dict[str, float] = {}

        async def run() -> tuple[list[float], dict[int, int]]:
            load = asyncio.create_task(heartbeat_load(env.process.port, scanner_keys, args.interval,
                                                      args.warmup + args.duration, args.connections))
            await asyncio.sleep(args.warmup)
            window["cpu0"], window["t0"] = process_cpu_seconds(pid), time.monotonic()
            before = await asyncio.to_thread(commits, pg, databases)
            await asyncio.sleep(args.duration)
            after = await asyncio.to_thread(commits, pg, databases)
            window["cpu1"], window["t1"] = process_cpu_seconds(pid), time.monotonic()
            window["config"] = after[databases[0]] - before[databases[0]]
            window["all"] = sum(after[d] - before[d] for d in databases)
            return await load

        latencies, statuses = asyncio.run(run())
        online = env.query("config", "SELECT count(*) FROM scanners WHERE name LIKE 'hb-%%'"
                           " AND last_heartbeat_at > now() - make_interval(secs => %s)", (args.interval + 5,))[0][0]
    floor = floor_cpu(scanner_keys, args) if args.floor > 0 else math.nan
    elapsed = window["t1"] - window["t0"]
    cpu = 100 * (window["cpu1"] - window["cpu0"]) / elapsed
    commits_all, commits_config = window["all"] / elapsed, window["config"] / elapsed
    lat = sorted(latencies)
    rate = len(lat) / (args.warmup + args.duration)
    print(f"{args.scanners:,} scanners, one heartbeat each per {args.interval:g} s ({rate:,.0f} requests/s over"
          f" {args.connections} keep-alive connections); ingest restarted and ready in {ready:.1f} s;"
          f" window {elapsed:.0f} s after {args.warmup:g} s warm-up")
    print(f"  answers: {dict(sorted(statuses.items()))}; latency p50 {statistics.median(lat) * 1000:.1f} ms,"
          f" p95 {lat[int(0.95 * (len(lat) - 1))] * 1000:.1f} ms, p99 {lat[int(0.99 * (len(lat) - 1))] * 1000:.1f} ms")
    print(f"  scanners online afterwards: {online:,} of {args.scanners:,}")
    print(f"  ingest CPU   : {cpu:5.2f}% of one core  (target < {CPU_TARGET:g}%: {cpu / CPU_TARGET:.2f}x the budget)")
    print(f"  peer: a bare ASGI app under the same uvicorn and load: {floor:5.2f}% of one core"
          f" (ingest = {cpu / floor:.2f}x that floor)")
    print(f"  commits/s    : {commits_all:5.2f} in the three databases, {commits_config:.2f} in config"
          f"  (target < {COMMITS_TARGET:g}/s: {commits_all / COMMITS_TARGET:.2f}x the budget)")
    ok = statuses.keys() == {200} and online == args.scanners
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
