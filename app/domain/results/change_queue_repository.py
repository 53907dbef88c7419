"""SQL of the change-detection queue in the jobs database: runs whose port changes are still owed."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row


async def enqueue(conn: AsyncConnection, run_ids: list[int]) -> None:
    """Owe detection for these runs (in the caller's transaction, the one that finished them)."""
    if run_ids:
        await conn.execute(
            "INSERT INTO change_detection_due (run_id) SELECT unnest(%s::bigint[]) ON CONFLICT (run_id) DO NOTHING",
            (run_ids,))


async def oldest(conn: AsyncConnection, limit: int) -> list[dict[str, Any]]:
    """The owed runs in the order they must be detected, with whether each is due now."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT run_id, attempts, due_at, due_at <= now() AS due FROM change_detection_due"
            " ORDER BY queued_at, run_id LIMIT %s", (limit,))
        return await cur.fetchall()


async def done(conn: AsyncConnection, run_id: int) -> None:
    await conn.execute("DELETE FROM change_detection_due WHERE run_id = %s", (run_id,))


async def failed(conn: AsyncConnection, run_id: int, error: str, retry_seconds: float) -> datetime | None:
    """Count a failed attempt and set the next one; returns when it is due."""
    cur = await conn.execute(
        "UPDATE change_detection_due SET attempts = attempts + 1, last_error = %s,"
        " due_at = now() + make_interval(secs => %s) WHERE run_id = %s RETURNING due_at",
        (error[:2000], retry_seconds, run_id))
    row = await cur.fetchone()
    return row[0] if row else None
