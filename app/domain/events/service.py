"""Emit and list events stored in the config database."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

import msgspec
from psycopg import AsyncConnection
from psycopg.rows import class_row

Severity = Literal["info", "warning", "critical"]


class Event(msgspec.Struct):
    id: int
    at: datetime
    event_class: str
    severity: str
    message: str
    run_id: int | None
    job_id: int | None
    scanner_id: int | None
    action: str | None
    details: dict[str, Any]


async def emit(conn: AsyncConnection, event_class: str, message: str, *, severity: Severity = "info",
               run_id: int | None = None, job_id: int | None = None, scanner_id: int | None = None,
               action: str | None = None, details: dict[str, Any] | None = None) -> int:
    """Store one event in the caller's transaction; returns its id."""
    cur = await conn.execute(
        "INSERT INTO events (class, severity, message, run_id, job_id, scanner_id, action, details)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (event_class, severity, message, run_id, job_id, scanner_id, action, json.dumps(details or {})),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def list_events(conn: AsyncConnection, *, event_class: str | None = None, limit: int = 100,
                      before_id: int | None = None) -> list[Event]:
    """Newest first; `before_id` pages backwards."""
    async with conn.cursor(row_factory=class_row(Event)) as cur:
        await cur.execute(
            "SELECT id, at, class AS event_class, severity, message, run_id, job_id, scanner_id, action, details"
            " FROM events WHERE (%(c)s::text IS NULL OR class = %(c)s)"
            " AND (%(b)s::bigint IS NULL OR id < %(b)s) ORDER BY id DESC LIMIT %(l)s",
            {"c": event_class, "b": before_id, "l": limit},
        )
        return await cur.fetchall()
