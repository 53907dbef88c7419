"""Benchmark: job claims through ingest (`POST /scanner/v1/claim`: auth, lease, attempt row, ledger lookup)
against a bare `FOR UPDATE SKIP LOCKED` claim loop on the same table, and the latency for an idle,
long-polling scanner to get a job after the dispatcher's NOTIFY.

Prints claims/s for both and the ratio (target >= 50%), and the idle-wake latency p50/p95 (target < 1 s).

    .venv/bin/python bench/job_claims.py [--scanners 4] [--jobs 400]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.test_scanner_support import IngestEnv, ingest_env
from tests.support.postgres import running_postgres

BARE_CLAIM = (
    "UPDATE jobs SET status = 'running', lease_token = lease_token + 1 WHERE id = ("
    " SELECT id FROM jobs WHERE scanner_id = %s AND status = 'pending' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)"
    " RETURNING id")


def seed(env: IngestEnv, scanner_ids: list[int], per_scanner: int) -> None:
    with psycopg.connect(env.dsn("jobs"), autocommit=True) as conn:
        run = conn.execute("INSERT INTO scan_runs (template_id, template_name, mode) VALUES (1, 'b', 'mirror')"
                           " RETURNING id").fetchone()
        assert run is not None
        conn.execute("DELETE FROM job_attempts")
        conn.execute("DELETE FROM jobs")
        for sid in scanner_ids:
            conn.execute("INSERT INTO jobs (run_id, scanner_id, targets, ports, cost)"
                         " SELECT %s, %s, %s, '1-1024', 1024 FROM generate_series(1, %s)",
                         (run[0], sid, json.dumps([["198.18.0.1", "198.18.0.1"]]), per_scanner))


def http_claims(env: IngestEnv, keys: list[str], max_jobs: int = 1) -> int:
    counts = [0] * len(keys)

    def worker(i: int) -> None:
        with httpx.Client(base_url=env.url, headers={"X-Mipo-Key": keys[i]}, timeout=60) as client:
            while True:
                jobs = client.post("/scanner/v1/claim", json={"max_jobs": max_jobs, "wait": 0}).json()["jobs"]
                if not jobs:
                    return
                counts[i] += len(jobs)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(keys))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts)


def bare_claims(env: IngestEnv, scanner_ids: list[int]) -> int:
    counts = [0] * len(scanner_ids)

    def worker(i: int) -> None:
        with psycopg.connect(env.dsn("jobs"), autocommit=True) as conn:
            while conn.execute(BARE_CLAIM, (scanner_ids[i],)).fetchone():
                counts[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(scanner_ids))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts)


def idle_latency(env: IngestEnv, scanner_id: int, key: str, samples: int) -> list[float]:
    latencies = []
    with httpx.Client(base_url=env.url, headers={"X-Mipo-Key": key}, timeout=60) as client, \
            psycopg.connect(env.dsn("jobs"), autocommit=True) as conn:
        run = conn.execute("SELECT max(id) FROM scan_runs").fetchone()
        assert run is not None
        for _ in range(samples):
            got: dict[str, float] = {}

            def poll(got: dict[str, float] = got) -> None:
                jobs = client.post("/scanner/v1/claim", json={"max_jobs": 1, "wait": 20}).json()["jobs"]
                got["at"] = time.monotonic()
                got["n"] = len(jobs)

            t = threading.Thread(target=poll)
            t.start()
            time.sleep(0.3)  # the scanner is now parked in its long poll
            conn.execute("INSERT INTO jobs (run_id, scanner_id, targets, ports, cost) VALUES (%s, %s, %s, '80', 1)",
                         (run[0], scanner_id, json.dumps([["198.18.0.1", "198.18.0.1"]])))
            created = time.monotonic()
            conn.execute("SELECT pg_notify('mipo_jobs', %s)", (str(scanner_id),))
            t.join()
            assert got["n"] == 1
            latencies.append(got["at"] - created)
    return latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scanners", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=400, help="pending jobs per scanner")
    parser.add_argument("--samples", type=int, default=20)
    args = parser.parse_args()
    with running_postgres() as pg, tempfile.TemporaryDirectory() as tmp, ingest_env(pg, Path(tmp)) as env:
        enrolled = [env.enrolled_key(f"claim-{i}") for i in range(args.scanners)]
        ids, keys = [e[0] for e in enrolled], [e[1] for e in enrolled]
        seed(env, ids, args.jobs)
        start = time.monotonic()
        via_http = http_claims(env, keys)
        http_seconds = time.monotonic() - start
        seed(env, ids, args.jobs)
        start = time.monotonic()
        bare = bare_claims(env, ids)
        bare_seconds = time.monotonic() - start
        assert via_http == bare == args.scanners * args.jobs, (via_http, bare)
        seed(env, ids, args.jobs)
        start = time.monotonic()
        batched = http_claims(env, keys, max_jobs=16)
        batched_seconds = time.monotonic() - start
        assert batched == bare
        latencies = idle_latency(env, ids[0], keys[0], args.samples)
    http_rate, bare_rate = via_http / http_seconds, bare / bare_seconds
    lat = sorted(latencies)
    p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))]
    print(f"{args.scanners} scanners x {args.jobs} jobs")
    print(f"  ingest claims (HTTP)   : {http_rate:8,.0f} claims/s")
    print(f"  bare SKIP LOCKED loop  : {bare_rate:8,.0f} claims/s")
    print(f"  ratio = {http_rate / bare_rate:.0%} (target >= 50%)")
    print(f"  ingest claims, max_jobs=16 per request: {batched / batched_seconds:8,.0f} claims/s"
          f" ({batched / batched_seconds / bare_rate:.0%} of bare)")
    print(f"  idle scanner gets a job after NOTIFY: p50 {statistics.median(lat) * 1000:.0f} ms,"
          f" p95 {p95 * 1000:.0f} ms (target < 1 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
