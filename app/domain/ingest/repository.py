"""SQL of the results side: the batch ledger, COPY of observations, coverage."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

OBSERVATION_COLUMNS = ("time", "run_id", "job_id", "scanner_id", "ip", "port", "proto", "state", "service",
                       "banner", "tls_subject", "tls_issuer", "tls_sans", "tls_not_after", "tls_sha256", "rtt_ms")
_COPY = f"COPY observations ({', '.join(OBSERVATION_COLUMNS)}) FROM STDIN"
_TYPES = ["timestamptz", "int8", "int8", "int8", "inet", "int4", "text", "text", "text", "text", "text", "text",
          "text[]", "timestamptz", "text", "float4"]


async def insert_ledger(conn: AsyncConnection, job_id: int, batch_seq: int, lease_token: int, scanner_id: int,
                        rows: int) -> bool:
    """True when this (job_id, batch_seq) is new; False when it was already stored (a resend)."""
    cur = await conn.execute(
        "INSERT INTO ingested_batches (job_id, batch_seq, lease_token, scanner_id, rows) VALUES (%s, %s, %s, %s, %s)"
        " ON CONFLICT (job_id, batch_seq) DO NOTHING", (job_id, batch_seq, lease_token, scanner_id, rows))
    return cur.rowcount == 1


async def copy_observations(conn: AsyncConnection, rows: Iterable[Sequence[object]]) -> None:
    async with conn.cursor() as cur, cur.copy(_COPY) as copy:
        copy.set_types(_TYPES)
        for row in rows:
            await copy.write_row(row)


async def next_batch_seq(conn: AsyncConnection, job_id: int) -> int:
    cur = await conn.execute("SELECT coalesce(max(batch_seq) + 1, 0) FROM ingested_batches WHERE job_id = %s",
                             (job_id,))
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def batches_under_lease(conn: AsyncConnection, job_id: int, lease_token: int) -> int:
    cur = await conn.execute("SELECT count(*) FROM ingested_batches WHERE job_id = %s AND lease_token = %s",
                             (job_id, lease_token))
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def insert_coverage(conn: AsyncConnection, run_id: int, job_id: int, scanner_id: int, targets: object,
                          ports: str, complete: bool) -> None:
    await conn.execute(
        "INSERT INTO run_coverage (run_id, job_id, scanner_id, targets, ports, complete)"
        " VALUES (%s, %s, %s, %s, %s, %s)", (run_id, job_id, scanner_id, Jsonb(targets), ports, complete))
