"""Streamed CSV and JSON exports: a server-side cursor read in batches, so memory stays flat however many rows."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any, Literal

import msgspec
from psycopg import AsyncConnection, AsyncServerCursor
from psycopg.rows import class_row
from psycopg_pool import AsyncConnectionPool

from app.domain.results import repository as repo
from app.domain.results.schemas import ChangeFilter, ObservationRead, PortChangeRead

Format = Literal["csv", "json"]
BATCH_ROWS = 2000

OBSERVATION_FIELDS = tuple(ObservationRead.__struct_fields__)
CHANGE_FIELDS = tuple(PortChangeRead.__struct_fields__)


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict | list):
        return msgspec.json.encode(value).decode()
    return value


def _csv_chunk(rows: list[Any], fields: tuple[str, ...]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for row in rows:
        writer.writerow([_csv_value(getattr(row, f)) for f in fields])
    return buf.getvalue().encode()


def _json_chunk(rows: list[Any], first: bool) -> bytes:
    body = msgspec.json.encode(rows)[1:-1]  # the batch's items without the list brackets
    return body if first else b"," + body


async def _stream(conn: AsyncConnection, sql: str, params: dict[str, Any], row_type: type, fields: tuple[str, ...],
                  fmt: Format) -> AsyncIterator[bytes]:
    """Rows of `sql` as CSV lines or one JSON array, BATCH_ROWS at a time from a named (server-side) cursor."""
    if fmt == "csv":
        yield _csv_chunk_header(fields)
    else:
        yield b"["
    first = True
    cur: AsyncServerCursor[Any]
    async with conn.cursor(name="mipo_export", row_factory=class_row(row_type)) as cur:
        cur.itersize = BATCH_ROWS
        await cur.execute(sql, params)
        while True:
            rows: list[Any] = await cur.fetchmany(BATCH_ROWS)
            if not rows:
                break
            yield _csv_chunk(rows, fields) if fmt == "csv" else _json_chunk(rows, first)
            first = False
    if fmt == "json":
        yield b"]\n"


def _csv_chunk_header(fields: tuple[str, ...]) -> bytes:
    return (",".join(fields) + "\n").encode()


def observations(conn: AsyncConnection, params: dict[str, Any], fmt: Format) -> AsyncIterator[bytes]:
    """Observations matching the filters (see service.observation_params), ordered by address, port, time."""
    return _stream(conn, repo.OBSERVATIONS, params, ObservationRead, OBSERVATION_FIELDS, fmt)


def changes(conn: AsyncConnection, f: ChangeFilter, fmt: Format) -> AsyncIterator[bytes]:
    """Changes matching the filter, newest first."""
    params = {"runs": f.run_ids, "scanner": f.scanner_id, "subnet": f.subnet, "port": f.port, "change": f.change,
              "since": f.since, "until": f.until, "before_id": None}
    return _stream(conn, repo.CHANGES, params, PortChangeRead, CHANGE_FIELDS, fmt)


async def from_pool(pool: AsyncConnectionPool,
                    export: Callable[[AsyncConnection], AsyncIterator[bytes]]) -> AsyncIterator[bytes]:
    """Run an export on its own connection and read-only transaction, held for as long as the response streams."""
    # SET TRANSACTION, not conn.read_only: the connection goes back to a pool shared with writers.
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("SET TRANSACTION READ ONLY")
        async for chunk in export(conn):
            yield chunk
