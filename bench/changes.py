"""Benchmark: change detection over 1M observations in two runs, against the COPY ingest of the same rows;
and the "what changed" query for 10k changes against a plain primary-key lookup of the same rows.

Real PostgreSQL 17 + TimescaleDB (the test harness's server, started here). Run 1 is 125,000 hosts x 4 open
ports; run 2 the same with 10,000 changes (2,500 each of closed, opened, banner changed, certificate changed),
both fully covered by 123 complete jobs (/22 x 1-10000). Ingest = COPY of a run's rows (pre-rendered text, as
`psql \\copy` sends it) into the hypertable with its indexes; detection = `detect_changes_for_run` as the
dispatcher role, in one transaction, right after that run's COPY and coverage (a freshly ingested chunk, as in
production). Each round uses fresh databases and a CHECKPOINT before every timed step, so neither side pays for
the other's dirty buffers; ratios are taken within a round (same rows, same run) and the median over rounds is
reported (the machine is shared, single rounds are noisy).

    .venv/bin/python bench/changes.py [--hosts 125000] [--rounds 5] [--steps]
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import psycopg
from psycopg.rows import class_row
from psycopg.types.json import set_json_loads

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.db.connect import conninfo
from app.db.migrate import migrate_all
from app.domain.results.changes import detect_changes_for_run
from app.domain.results.repository import CHANGE_COLUMNS, CHANGES, list_changes
from app.domain.results.schemas import ChangeFilter, PortChangeRead
from tests.support.postgres import PostgresServer, running_postgres
from tests.support.settings import make_settings, write_credentials

PORTS = (22, 80, 443, 8080)
BASE = int(ipaddress.IPv4Address("198.18.0.0"))
T0 = datetime(2026, 11, 1, tzinfo=UTC)
EACH = 2_500  # changes of each kind in run 2


def render(run: int, hosts: int, changed: bool) -> tuple[bytes, int]:
    """COPY text of one run's observations: (time, run_id, job_id, scanner_id, ip, port, service, banner, sha)."""
    at = (T0 + timedelta(hours=run)).isoformat()
    lines: list[str] = []
    for h in range(hosts):
        ip = str(ipaddress.IPv4Address(BASE + h))
        job = run * 1000 + h // 1024
        for port in PORTS:
            banner, sha = f"srv-{port}-v1", ("ab" * 32 if port == 443 else "\\N")
            if changed:
                if port == 8080 and h < EACH:
                    continue  # closed
                if port == 22 and h < EACH:
                    banner = f"srv-{port}-v2"  # service changed
                if port == 443 and h < EACH:
                    sha = "cd" * 32  # certificate changed
            lines.append(f"{at}\t{run}\t{job}\t1\t{ip}\t{port}\tsvc\t{banner}\t{sha}\n")
        if changed and EACH <= h < 2 * EACH:
            lines.append(f"{at}\t{run}\t{job}\t1\t{ip}\t3389\trdp\t\\N\t\\N\n")  # opened
    return "".join(lines).encode(), len(lines)


def copy_rows(dsn: str, data: bytes) -> float:
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        start = time.perf_counter()
        with cur.copy("COPY observations (time, run_id, job_id, scanner_id, ip, port, service, banner, tls_sha256)"
                      " FROM STDIN") as copy:
            for i in range(0, len(data), 1 << 20):
                copy.write(data[i:i + (1 << 20)])
        conn.commit()
        return time.perf_counter() - start


def coverage(dsn: str, run: int, hosts: int) -> None:
    with psycopg.connect(dsn) as conn:
        for j in range((hosts + 1023) // 1024):
            first = str(ipaddress.IPv4Address(BASE + j * 1024))
            last = str(ipaddress.IPv4Address(BASE + j * 1024 + 1023))
            conn.execute("INSERT INTO run_coverage (run_id, job_id, scanner_id, targets, ports, complete, finished_at)"
                         " VALUES (%s, %s, 1, %s, '1-10000', true, %s)",
                         (run, run * 1000 + j, json.dumps([[first, last]]), T0 + timedelta(hours=run, minutes=30)))


async def detect(dsn: str, run: int) -> tuple[float, int]:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        start = time.perf_counter()
        async with conn.transaction():
            n = await detect_changes_for_run(conn, run)
        return time.perf_counter() - start, n


async def what_changed(dsn: str, run: int, repeats: int = 7) -> dict[str, float]:
    """Median timings and per-repetition ratios: the API's changes query for a run vs a plain PK range lookup of
    the same rows, end to end (rows decoded into Python objects) and on the server alone (the same query
    counted, nothing sent)."""
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cur = await conn.execute("SELECT min(id), max(id), count(*) FROM port_changes WHERE run_id = %s", (run,))
        row = await cur.fetchone()
        assert row is not None
        lo, hi, count = row
        ours, plain = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            got = await list_changes(conn, ChangeFilter(run_ids=[run]), limit=count)
            ours.append(time.perf_counter() - start)
            assert len(got) == count
            start = time.perf_counter()
            async with conn.cursor(row_factory=class_row(PortChangeRead)) as c:
                set_json_loads(msgspec.json.decode, c)  # decoded as list_changes decodes them
                await c.execute(f"SELECT {CHANGE_COLUMNS} FROM port_changes WHERE id BETWEEN %s AND %s"
                                " ORDER BY id DESC", (lo, hi))
                assert len(await c.fetchall()) == count
            plain.append(time.perf_counter() - start)
        params = {"runs": [run], "scanner": None, "subnet": None, "port": None, "change": None, "since": None,
                  "until": None, "before_id": None, "limit": count}
        ours_db, plain_db = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            await conn.execute(f"SELECT count(*) FROM ({CHANGES} LIMIT %(limit)s) x", params)
            ours_db.append(time.perf_counter() - start)
            start = time.perf_counter()
            await conn.execute(f"SELECT count(*) FROM (SELECT {CHANGE_COLUMNS} FROM port_changes"
                               " WHERE id BETWEEN %(lo)s AND %(hi)s ORDER BY id DESC) x", {"lo": lo, "hi": hi})
            plain_db.append(time.perf_counter() - start)
        ratio = statistics.median(o / p for o, p in zip(ours, plain, strict=True))
        db_ratio = statistics.median(o / p for o, p in zip(ours_db, plain_db, strict=True))
        return {"ours": statistics.median(ours), "plain": statistics.median(plain), "ours_ratio": ratio,
                "ours_db": statistics.median(ours_db), "plain_db": statistics.median(plain_db),
                "db_ratio": db_ratio, "count": int(count)}


def checkpoint(server: PostgresServer) -> None:
    """Write out dirty buffers before a timed step, so it does not pay for the previous one's."""
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute("CHECKPOINT")


def one_round(server: PostgresServer, creds: Path, prefix: str, hosts: int,
              runs: tuple[tuple[bytes, int], tuple[bytes, int]]) -> dict[str, float]:
    """Fresh databases, both runs ingested and detected; timings of this round."""
    dbs = server.create_appliance_databases(prefix=prefix)
    settings = make_settings(server, dbs, creds, "mipo_dispatcher")
    migrate_all(settings)
    owner = conninfo(settings, "results", as_owner=True)
    dispatcher = conninfo(settings, "results")
    (rows1, n1), (rows2, n2) = runs
    out: dict[str, float] = {"rows1": n1, "rows2": n2}
    checkpoint(server)
    out["copy1"] = copy_rows(owner, rows1)
    coverage(owner, 1, hosts)
    checkpoint(server)
    out["detect1"], out["changes1"] = asyncio.run(detect(dispatcher, 1))
    checkpoint(server)
    out["copy2"] = copy_rows(owner, rows2)
    coverage(owner, 2, hosts)
    checkpoint(server)
    out["detect2"], out["changes2"] = asyncio.run(detect(dispatcher, 2))
    out.update(asyncio.run(what_changed(dispatcher, 2)))
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        for db in dbs.values():  # free the space before the next round
            conn.execute(f'DROP DATABASE "{db}" WITH (FORCE)')
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=125_000, help="hosts per run (4 open ports each)")
    parser.add_argument("--steps", action="store_true", help="log the time of each detection step")
    parser.add_argument("--rounds", type=int, default=5,
                        help="repeat on fresh databases; medians of the per-round ratios are reported")
    args = parser.parse_args()
    if args.steps:
        logging.basicConfig(level=logging.INFO, format="  %(message)s")
    runs = (render(1, args.hosts, changed=False), render(2, args.hosts, changed=True))
    rounds: list[dict[str, float]] = []
    with running_postgres() as server, tempfile.TemporaryDirectory() as tmp:
        creds = Path(tmp)
        write_credentials(creds)
        for i in range(args.rounds):
            r = one_round(server, creds, f"bench{i}_", args.hosts, runs)
            r["ratio1"], r["ratio2"] = r["detect1"] / r["copy1"], r["detect2"] / r["copy2"]
            r["ratio"] = (r["detect1"] + r["detect2"]) / (r["copy1"] + r["copy2"])
            rounds.append(r)
            print(f"round {i + 1}: run 1 COPY {r['copy1']:.2f} s, detection {r['detect1']:.2f} s"
                  f" ({r['ratio1']:.2f}x); run 2 COPY {r['copy2']:.2f} s, detection {r['detect2']:.2f} s"
                  f" ({r['ratio2']:.2f}x); both {r['ratio']:.2f}x", flush=True)

    def med(key: str) -> float:
        return statistics.median(r[key] for r in rounds)

    def spread(key: str) -> str:
        return f"{min(r[key] for r in rounds):.2f}-{max(r[key] for r in rounds):.2f}"

    r0 = rounds[0]
    print(f"observations: run 1 {int(r0['rows1']):,} rows, run 2 {int(r0['rows2']):,} rows"
          f" ({int(r0['rows1'] + r0['rows2']):,} in all); medians of {len(rounds)} round(s), range in brackets")
    print(f"run 1 (baseline): COPY {med('copy1'):.2f} s, detection {med('detect1'):.2f} s ->"
          f" {med('ratio1'):.2f}x [{spread('ratio1')}], {int(r0['changes1'])} changes")
    print(f"run 2:            COPY {med('copy2'):.2f} s, detection {med('detect2'):.2f} s ->"
          f" {med('ratio2'):.2f}x [{spread('ratio2')}], {int(r0['changes2']):,} changes")
    print(f"both runs: detection / ingest = {med('ratio'):.2f}x [{spread('ratio')}] (target <= 0.5x)")
    print(f"what changed in run 2 ({int(r0['count']):,} changes), rows decoded in Python: {med('ours') * 1000:.1f} ms"
          f" vs plain PK lookup {med('plain') * 1000:.1f} ms -> {med('ours_ratio'):.2f}x (target < 100 ms)")
    print(f"what changed in run 2, on the server: {med('ours_db') * 1000:.1f} ms vs plain PK lookup"
          f" {med('plain_db') * 1000:.1f} ms -> {med('db_ratio'):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
