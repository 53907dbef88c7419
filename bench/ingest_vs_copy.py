"""Benchmark: result ingest end to end (HTTP POST of 10k-result batches → decode → ledger + COPY → commit
→ ack, through a real ingest process) against `psql \\copy` of the same rows into the same table.

Starts its own PostgreSQL 17 + TimescaleDB (the test harness's), migrates fresh databases, runs
`python -m app serve ingest` on loopback, enrols a scanner and claims a job covering the synthetic rows.
Prints rows/s for both and the ratio (target: ingest >= 40% of \\copy).

    .venv/bin/python bench/ingest_vs_copy.py [--rows 200000] [--batch 10000]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.test_scanner_support import ingest_env
from tests.support.postgres import running_postgres

COLUMNS = "time, run_id, job_id, scanner_id, ip, port, proto, state, service, banner, rtt_ms"


def synthetic(rows: int, seed: int = 1) -> list[dict[str, object]]:
    rng = random.Random(seed)
    now = time.time()
    out = []
    for i in range(rows):
        ip = f"198.18.{(i // 250) % 256}.{i % 250 + 1}"
        port = rng.randrange(1, 65536)
        banner = rng.choice([None, None, "SSH-2.0-OpenSSH_9.9", "HTTP/1.1 200 OK\r\nServer: nginx"])
        out.append({"ip": ip, "port": port, "at": now, "rtt_ms": round(rng.random() * 5, 3),
                    "banner": banner, "service": "ssh" if banner and banner.startswith("SSH") else None})
    return out


def encode_batches(job_id: int, lease_token: int, results: list[dict[str, object]], batch: int,
                   first_seq: int = 0) -> list[bytes]:
    """The JSON bodies of `POST /scanner/v1/batches` for one job, at most `batch` results each (encoded up front,
    outside any timing). Bytes (a certificate's DER) are sent base64, as the agent sends them."""
    return [msgspec.json.encode({"job_id": job_id, "batch_seq": first_seq + n, "lease_token": lease_token,
                                 "scanned": 0, "results": results[i:i + batch]})
            for n, i in enumerate(range(0, len(results), batch))]


def post_batches(url: str, key: str, bodies: list[bytes]) -> float:
    """Seconds to post the bodies one after another, each acknowledged (committed) before the next, as an agent."""
    with httpx.Client(base_url=url, headers={"X-Mipo-Key": key, "Content-Type": "application/json"},
                      timeout=120) as client:
        client.get("/health")  # the connection is open before the clock
        start = time.monotonic()
        for body in bodies:
            client.post("/scanner/v1/batches", content=body).raise_for_status()
        return time.monotonic() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=10_000)
    args = parser.parse_args()
    results = synthetic(args.rows)
    with running_postgres() as pg, tempfile.TemporaryDirectory() as tmp, ingest_env(pg, Path(tmp)) as env:
        scanner_id, key = env.enrolled_key("bench")
        run_id, job_id = env.new_job(scanner_id, [["198.18.0.0", "198.18.255.255"]], "1-65535", cost=args.rows)
        with httpx.Client(base_url=env.url, headers={"X-Mipo-Key": key}, timeout=120) as client:
            job = client.post("/scanner/v1/claim", json={"max_jobs": 1, "wait": 5}).json()["jobs"][0]
        http_seconds = post_batches(env.url, key, encode_batches(job_id, job["lease_token"], results, args.batch))
        stored = env.query("results", "SELECT count(*) FROM observations WHERE job_id = %s", (job_id,))[0][0]
        assert stored == args.rows, stored

        csv_path = Path(tmp) / "rows.csv"
        with csv_path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            for r in results:
                writer.writerow([dt.datetime.fromtimestamp(float(str(r["at"])), dt.UTC).isoformat(), run_id, job_id + 1,
                                 scanner_id, r["ip"], r["port"], "tcp", "open", r["service"] or "",
                                 r["banner"] or "", r["rtt_ms"]])
        dsn = env.dsn("results")
        start = time.monotonic()
        subprocess.run(["psql", dsn, "-v", "ON_ERROR_STOP=1", "-qc",
                        f"\\copy observations ({COLUMNS}) FROM '{csv_path}' WITH (FORMAT csv)"], check=True)
        copy_seconds = time.monotonic() - start
        copied = env.query("results", "SELECT count(*) FROM observations WHERE job_id = %s", (job_id + 1,))[0][0]
        assert copied == args.rows, copied
    http_rate, copy_rate = args.rows / http_seconds, args.rows / copy_seconds
    print(f"rows: {args.rows}, batches of {args.batch}")
    print(f"  ingest HTTP -> commit : {http_seconds:6.2f} s  {http_rate:10,.0f} rows/s")
    print(f"  psql \\copy            : {copy_seconds:6.2f} s  {copy_rate:10,.0f} rows/s")
    print(f"  ratio ingest/\\copy = {http_rate / copy_rate:.0%} (target >= 40%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
