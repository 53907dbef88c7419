"""Benchmark: change detection over 1M observations in two runs, against the ingest time of the same rows —
through ingest's HTTP path (the issue's peer) and as a raw COPY (a stricter peer); and the "what changed"
query for 10k changes against a plain primary-key lookup of the same rows.

Real PostgreSQL 17 + TimescaleDB (the test harness's server, started here). Run 1 is 125,000 hosts x 4 open
ports (443 with a real certificate); run 2 the same with 10,000 changes (2,500 each of closed, opened, banner
changed, certificate changed), both fully covered by 50 complete jobs of 2,500 hosts x 1-10000 (so a job's
results fill 10k-result batches). Each round does both paths on fresh databases with the same rows:
- COPY path: COPY of a run's rows (pre-rendered text, as `psql \\copy` sends it, with the certificate fields
  ingest would extract) into the hypertable with its indexes;
- ingest path: a real ingest process (`python -m app serve ingest`), the run's results posted per job to
  `POST /scanner/v1/batches` in batches of at most 10k (JSON encoded before the clock), each acknowledged
  before the next (decode, lease check, certificate parse, ledger, COPY, commit);
then the run's coverage (untimed, identical) and detection = `detect_changes_for_run` in one transaction, right
after that run's ingest (a freshly ingested chunk, as in production). A CHECKPOINT precedes every timed step,
so no step pays for the previous one's dirty buffers; ratios are taken within a round (same rows, same run)
and the median over rounds is reported (the machine is shared, single rounds are noisy).

    .venv/bin/python bench/changes.py [--hosts 125000] [--rounds 3] [--steps] [--no-http]
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
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import psycopg
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from psycopg.rows import class_row
from psycopg.types.json import set_json_loads

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingest_vs_copy import encode_batches, post_batches

from app.db.connect import conninfo
from app.db.migrate import migrate_all
from app.domain.ingest.tls import parse_certificate
from app.domain.results.changes import detect_changes_for_run
from app.domain.results.repository import CHANGE_COLUMNS, CHANGES, list_changes
from app.domain.results.schemas import ChangeFilter, PortChangeRead
from tests.integration.test_scanner_support import ingest_env
from tests.support.postgres import PostgresServer, running_postgres
from tests.support.settings import make_settings, write_credentials

PORTS = (22, 80, 443, 8080)
BASE = int(ipaddress.IPv4Address("198.18.0.0"))
# Recent (ingest keeps an agent's timestamp only within a week of now), both runs in the hours before now.
T0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
EACH = 2_500  # changes of each kind in run 2
JOB_HOSTS = 2_500  # hosts per job: 10,000 results, one full ingest batch
BATCH = 10_000
COPY_COLUMNS = ("time, run_id, job_id, scanner_id, ip, port, service, banner,"
                " tls_subject, tls_issuer, tls_sans, tls_not_after, tls_sha256")


def certificate(version: int) -> bytes:
    """A real self-signed certificate (DER): ingest parses it as it would a scanned one."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"bench-v{version}.example")])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(version).not_valid_before(T0 - timedelta(days=1))
            .not_valid_after(T0 + timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(f"bench-v{version}.example")]), critical=False)
            .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))


def cert_copy_fields(der: bytes) -> str:
    """The certificate columns as ingest stores them (its own parser), in COPY text form."""
    c = parse_certificate(der)
    assert c.subject and c.issuer and c.sans and c.not_after
    return f"{c.subject}\t{c.issuer}\t{{{','.join(c.sans)}}}\t{c.not_after.isoformat()}\t{c.sha256}"


@dataclass
class Run:
    """One run's observations twice, identical: COPY text and, per job, ingest's result documents."""

    run_id: int
    copy: bytes
    rows: int
    jobs: dict[int, list[dict[str, object]]]


def render(run: int, hosts: int, changed: bool, certs: tuple[bytes, bytes]) -> Run:
    """Observations of one run: (time, run_id, job_id, scanner_id, ip, port, service, banner, certificate)."""
    at = T0 + timedelta(hours=run)
    stamp, unix = at.isoformat(), at.timestamp()
    fields = [cert_copy_fields(c) for c in certs]
    none = "\t".join(["\\N"] * 5)
    lines: list[str] = []
    jobs: dict[int, list[dict[str, object]]] = {}
    for h in range(hosts):
        ip = str(ipaddress.IPv4Address(BASE + h))
        job = run * 1000 + h // JOB_HOSTS
        results = jobs.setdefault(job, [])
        for port in PORTS:
            banner, cert = f"srv-{port}-v1", (0 if port == 443 else None)
            if changed:
                if port == 8080 and h < EACH:
                    continue  # closed
                if port == 22 and h < EACH:
                    banner = f"srv-{port}-v2"  # service changed
                if port == 443 and h < EACH:
                    cert = 1  # certificate changed
            lines.append(f"{stamp}\t{run}\t{job}\t1\t{ip}\t{port}\tsvc\t{banner}\t"
                         f"{none if cert is None else fields[cert]}\n")
            result: dict[str, object] = {"ip": ip, "port": port, "at": unix, "service": "svc", "banner": banner}
            if cert is not None:
                result["tls_der"] = certs[cert]
            results.append(result)
        if changed and EACH <= h < 2 * EACH:
            lines.append(f"{stamp}\t{run}\t{job}\t1\t{ip}\t3389\trdp\t\\N\t{none}\n")  # opened
            results.append({"ip": ip, "port": 3389, "at": unix, "service": "rdp"})
    return Run(run, "".join(lines).encode(), len(lines), jobs)


def copy_rows(dsn: str, data: bytes) -> float:
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        start = time.perf_counter()
        with cur.copy(f"COPY observations ({COPY_COLUMNS}) FROM STDIN") as copy:
            for i in range(0, len(data), 1 << 20):
                copy.write(data[i:i + (1 << 20)])
        conn.commit()
        return time.perf_counter() - start


def coverage(dsn: str, run: int, hosts: int) -> None:
    with psycopg.connect(dsn) as conn:
        for j in range((hosts + JOB_HOSTS - 1) // JOB_HOSTS):
            first = str(ipaddress.IPv4Address(BASE + j * JOB_HOSTS))
            last = str(ipaddress.IPv4Address(BASE + j * JOB_HOSTS + JOB_HOSTS - 1))
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


def one_round(server: PostgresServer, creds: Path, prefix: str, hosts: int, runs: tuple[Run, Run]) -> dict[str, float]:
    """COPY path: fresh databases, both runs copied and detected; timings of this round."""
    dbs = server.create_appliance_databases(prefix=prefix)
    settings = make_settings(server, dbs, creds, "mipo_dispatcher")
    migrate_all(settings)
    owner = conninfo(settings, "results", as_owner=True)
    dispatcher = conninfo(settings, "results")
    out: dict[str, float] = {"rows1": runs[0].rows, "rows2": runs[1].rows}
    for run in runs:
        n = run.run_id
        checkpoint(server)
        out[f"copy{n}"] = copy_rows(owner, run.copy)
        coverage(owner, n, hosts)
        checkpoint(server)
        out[f"detect{n}"], out[f"changes{n}"] = asyncio.run(detect(dispatcher, n))
    out.update(asyncio.run(what_changed(dispatcher, 2)))
    drop(server, dbs.values())
    return out


def drop(server: PostgresServer, names: Iterable[str]) -> None:
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        for db in names:  # free the space before the next round
            conn.execute(f'DROP DATABASE "{db}" WITH (FORCE)')


def http_round(server: PostgresServer, tmp: Path, hosts: int, runs: tuple[Run, Run],
               bodies: dict[int, list[bytes]]) -> dict[str, float]:
    """Ingest path: the same rows through a real ingest process, then the same detection; timings of this round."""
    out: dict[str, float] = {}
    with ingest_env(server, tmp) as env:
        scanner_id, key = env.enrolled_key("bench")
        assert scanner_id == 1, scanner_id  # the scanner of the COPY rows
        with psycopg.connect(env.dsn("jobs"), autocommit=True) as conn:
            for run in runs:
                conn.execute("INSERT INTO scan_runs (id, template_id, template_name, mode) OVERRIDING SYSTEM VALUE"
                             " VALUES (%s, 1, 'bench', 'mirror')", (run.run_id,))
                for job in run.jobs:
                    j = job - run.run_id * 1000
                    first = str(ipaddress.IPv4Address(BASE + j * JOB_HOSTS))
                    last = str(ipaddress.IPv4Address(BASE + j * JOB_HOSTS + JOB_HOSTS - 1))
                    # Leased to the scanner as a claim leaves it (token 1): the batches' fencing checks pass.
                    conn.execute("INSERT INTO jobs (id, run_id, scanner_id, targets, ports, cost, status, lease_token,"
                                 " lease_expires_at, attempts, started_at) OVERRIDING SYSTEM VALUE"
                                 " VALUES (%s, %s, 1, %s, '1-10000', %s, 'running', 1, now() + interval '1 day', 1,"
                                 " now())", (job, run.run_id, json.dumps([[first, last]]), JOB_HOSTS * 10000))
        results = env.dsn("results")
        for run in runs:
            n = run.run_id
            checkpoint(server)
            out[f"http{n}"] = post_batches(env.url, key, bodies[n])
            stored = env.query("results", "SELECT count(*) FROM observations WHERE run_id = %s", (n,))[0][0]
            assert stored == run.rows, (stored, run.rows)
            coverage(results, n, hosts)
            checkpoint(server)
            out[f"hdetect{n}"], out[f"hchanges{n}"] = asyncio.run(detect(results, n))
        dbs = env.owner.databases
    drop(server, (dbs.config.name, dbs.jobs.name, dbs.results.name))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=125_000, help="hosts per run (4 open ports each)")
    parser.add_argument("--steps", action="store_true", help="log the time of each detection step")
    parser.add_argument("--rounds", type=int, default=3,
                        help="repeat on fresh databases; medians of the per-round ratios are reported")
    parser.add_argument("--no-http", action="store_true", help="skip the ingest (HTTP) path, COPY peer only")
    args = parser.parse_args()
    if args.steps:
        logging.basicConfig(level=logging.INFO, format="  %(message)s")
    certs = (certificate(1), certificate(2))
    runs = (render(1, args.hosts, False, certs), render(2, args.hosts, True, certs))
    bodies = {} if args.no_http else {
        run.run_id: [b for job, results in run.jobs.items() for b in encode_batches(job, 1, results, BATCH)]
        for run in runs}
    rounds: list[dict[str, float]] = []
    with running_postgres() as server, tempfile.TemporaryDirectory() as tmp:
        creds = Path(tmp)
        write_credentials(creds)
        for i in range(args.rounds):
            r = one_round(server, creds, f"bench{i}_", args.hosts, runs)
            r["ratio1"], r["ratio2"] = r["detect1"] / r["copy1"], r["detect2"] / r["copy2"]
            r["ratio"] = (r["detect1"] + r["detect2"]) / (r["copy1"] + r["copy2"])
            line = (f"round {i + 1}: COPY path: run 1 COPY {r['copy1']:.2f} s, detection {r['detect1']:.2f} s"
                    f" ({r['ratio1']:.2f}x); run 2 COPY {r['copy2']:.2f} s, detection {r['detect2']:.2f} s"
                    f" ({r['ratio2']:.2f}x); both {r['ratio']:.2f}x")
            if bodies:
                home = Path(tmp) / f"ingest{i}"
                home.mkdir()
                r.update(http_round(server, home, args.hosts, runs, bodies))
                r["hratio1"], r["hratio2"] = r["hdetect1"] / r["http1"], r["hdetect2"] / r["http2"]
                r["hratio"] = (r["hdetect1"] + r["hdetect2"]) / (r["http1"] + r["http2"])
                assert (r["hchanges1"], r["hchanges2"]) == (r["changes1"], r["changes2"])  # the same rows
                line += (f"\n         ingest path: run 1 HTTP {r['http1']:.2f} s, detection {r['hdetect1']:.2f} s"
                         f" ({r['hratio1']:.2f}x); run 2 HTTP {r['http2']:.2f} s, detection {r['hdetect2']:.2f} s"
                         f" ({r['hratio2']:.2f}x); both {r['hratio']:.2f}x")
            rounds.append(r)
            print(line, flush=True)

    def med(key: str) -> float:
        return statistics.median(r[key] for r in rounds)

    def spread(key: str) -> str:
        return f"{min(r[key] for r in rounds):.2f}-{max(r[key] for r in rounds):.2f}"

    r0 = rounds[0]
    print(f"observations: run 1 {int(r0['rows1']):,} rows, run 2 {int(r0['rows2']):,} rows"
          f" ({int(r0['rows1'] + r0['rows2']):,} in all); medians of {len(rounds)} round(s), range in brackets")
    if bodies:
        print("peer = ingest path (the issue's: HTTP batches of <= 10k results through a real ingest process):")
        print(f"  run 1 (baseline): ingest {med('http1'):.2f} s, detection {med('hdetect1'):.2f} s ->"
              f" {med('hratio1'):.2f}x [{spread('hratio1')}], {int(r0['hchanges1'])} changes")
        print(f"  run 2:            ingest {med('http2'):.2f} s, detection {med('hdetect2'):.2f} s ->"
              f" {med('hratio2'):.2f}x [{spread('hratio2')}], {int(r0['hchanges2']):,} changes")
        verdict = "meets" if med("hratio") <= 0.5 else "MISSES"
        print(f"  both runs: detection / ingest = {med('hratio'):.2f}x [{spread('hratio')}]"
              f" (target <= 0.5x: {verdict} it)")
    print("peer = raw COPY of the same rows (stricter than the issue's peer):")
    print(f"  run 1 (baseline): COPY {med('copy1'):.2f} s, detection {med('detect1'):.2f} s ->"
          f" {med('ratio1'):.2f}x [{spread('ratio1')}], {int(r0['changes1'])} changes")
    print(f"  run 2:            COPY {med('copy2'):.2f} s, detection {med('detect2'):.2f} s ->"
          f" {med('ratio2'):.2f}x [{spread('ratio2')}], {int(r0['changes2']):,} changes")
    print(f"  both runs: detection / COPY = {med('ratio'):.2f}x [{spread('ratio')}]")
    print(f"what changed in run 2 ({int(r0['count']):,} changes), rows decoded in Python: {med('ours') * 1000:.1f} ms"
          f" vs plain PK lookup {med('plain') * 1000:.1f} ms -> {med('ours_ratio'):.2f}x (target < 100 ms)")
    print(f"what changed in run 2, on the server: {med('ours_db') * 1000:.1f} ms vs plain PK lookup"
          f" {med('plain_db') * 1000:.1f} ms -> {med('db_ratio'):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
