"""Arrange results-database history directly as its owner: observations, coverage, and change detection runs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

import psycopg

from app.domain.results.changes import detect_changes
from app.domain.results.schemas import PortChangeRead

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def observe(dsn: str, run_id: int, scanner_id: int, rows: Iterable[tuple], *, job_id: int | None = None,
            at: datetime | None = None) -> None:
    """rows: (ip, port) or (ip, port, service, banner, tls_sha256) found open by one scanner in one run."""
    at = at or T0 + timedelta(hours=run_id)
    job = job_id if job_id is not None else run_id * 100 + scanner_id
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        with cur.copy("COPY observations (time, run_id, job_id, scanner_id, ip, port, service, banner, tls_sha256)"
                      " FROM STDIN") as copy:
            for row in rows:
                ip, port, *rest = row
                service, banner, sha = [*rest, None, None, None][:3]
                copy.write_row((at, run_id, job, scanner_id, ip, port, service, banner, sha))


def cover(dsn: str, run_id: int, scanner_id: int, targets: Sequence[Sequence[str] | str], ports: str, *,
          complete: bool = True, job_id: int | None = None, at: datetime | None = None) -> None:
    """One finished job's coverage: targets as [first, last] pairs (or CIDR strings) by a compact port spec."""
    at = at or T0 + timedelta(hours=run_id, minutes=30)
    job = job_id if job_id is not None else run_id * 100 + scanner_id
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO run_coverage (run_id, job_id, scanner_id, targets, ports, complete, finished_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (run_id, job, scanner_id, json.dumps([list(t) if not isinstance(t, str) else t for t in targets]),
             ports, complete, at),
        )


def detect(dsn: str, run_id: int) -> list[PortChangeRead]:
    """Run change detection for one run in its own transaction (as the caller's DSN role)."""
    async def run() -> list[PortChangeRead]:
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            async with conn.transaction():
                return await detect_changes(conn, run_id)
    return asyncio.run(run())


def changes(dsn: str, run_id: int | None = None) -> list[tuple]:
    """(run_id, scanner_id, ip, port, change) of stored changes, in a stable order."""
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT run_id, scanner_id, host(ip), port, change FROM port_changes"
            " WHERE %(r)s::bigint IS NULL OR run_id = %(r)s ORDER BY run_id, scanner_id, ip, port, change",
            {"r": run_id},
        ).fetchall()
