"""SQL for the reconciler's job-state transitions (jobs DB) and the scanner facts it needs (config DB)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

_RETURNING = " RETURNING id, run_id, scanner_id, status, attempts, max_attempts, lease_token"


async def _rows(conn: AsyncConnection, sql: str, params: Any = None) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql, params)
        return await cur.fetchall() if cur.description else []


# A running attempt that ends unfinished: back to pending under a new token, or failed after max_attempts
# (class lease_expired). Shared by lease expiry and a scanner's release (app.domain.jobs): `stall` marks why.
_REQUEUE = (
    "UPDATE jobs SET"
    " status = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'pending' END,"
    " finished_at = CASE WHEN attempts >= max_attempts THEN now() END,"
    " error_class = CASE WHEN attempts >= max_attempts THEN 'lease_expired' ELSE error_class END,"
    " last_error = CASE WHEN attempts >= max_attempts"
    "   THEN %(why)s || ' ' || attempts || ' times' ELSE last_error END,"
    " stall_class = CASE WHEN attempts >= max_attempts THEN NULL ELSE %(stall)s END,"
    " stall_since = now(), stall_token = lease_token + 1,"
    " lease_token = lease_token + 1, lease_expires_at = NULL, updated_at = now()"
    " WHERE status = 'running' AND ")


async def expire_leases(conn: AsyncConnection) -> list[dict[str, Any]]:
    """Running jobs whose lease ran out: back to pending under a new token, or failed after max_attempts.

    The token is bumped here already, so a late batch under the old lease is refused even before
    the job is claimed again (the claim bumps it once more).
    """
    rows = await _rows(conn, _REQUEUE + "lease_expires_at < now()" + _RETURNING,
                       {"why": "lease expired", "stall": "lease_expired"})
    return rows  # each ended attempt's history row is written by the jobs_attempt_end trigger


async def requeue_leased(conn: AsyncConnection, job_id: int, scanner_id: int, lease_token: int,
                         *, why: str, stall: str) -> dict[str, Any] | None:
    """The same transition for one running job under (scanner, token), as one statement; None if stale."""
    rows = await _rows(conn, _REQUEUE + "id = %(job)s AND scanner_id = %(s)s AND lease_token = %(t)s" + _RETURNING,
                       {"why": why, "stall": stall, "job": job_id, "s": scanner_id, "t": lease_token})
    return rows[0] if rows else None


async def recovered_jobs(conn: AsyncConnection) -> list[dict[str, Any]]:
    """Clear stalls that ended: claimed again, or finished. Returns the ones that ended well."""
    await conn.execute(
        "UPDATE jobs SET stall_class = NULL, stall_since = NULL, stall_token = NULL"
        " WHERE stall_class IS NOT NULL AND status IN ('failed', 'cancelled')"
    )
    # Jobs that waited for a silent scanner recover with it: its own recovery event speaks for them.
    await conn.execute(
        "UPDATE jobs SET stall_class = NULL, stall_since = NULL, stall_token = NULL"
        " WHERE stall_class = 'no_heartbeat' AND status IN ('running', 'completed')"
    )
    return await _rows(
        conn,
        # RETURNING shows new values: the stall being closed comes from the locked pre-update row.
        "UPDATE jobs j SET stall_class = NULL, stall_since = NULL, stall_token = NULL"
        " FROM (SELECT id, stall_class, stall_since FROM jobs WHERE stall_class IS NOT NULL"
        "       AND (status = 'completed' OR (status = 'running' AND stall_class <> 'stuck_running'))"
        "       FOR UPDATE) old"
        " WHERE j.id = old.id"
        " RETURNING j.id, j.run_id, j.scanner_id, j.status, j.lease_token, old.stall_class, old.stall_since",
    )


async def mark_stuck_pending(conn: AsyncConnection, older_than: timedelta) -> list[dict[str, Any]]:
    return await _rows(
        conn,
        # Queued behind work in progress is not stuck: only when the scanner has run nothing for as long.
        "UPDATE jobs j SET stall_class = 'stuck_pending', stall_since = now(), stall_token = lease_token"
        " WHERE status = 'pending' AND stall_class IS NULL AND updated_at < now() - %(t)s"
        " AND NOT EXISTS (SELECT 1 FROM jobs busy WHERE busy.scanner_id = j.scanner_id"
        "   AND (busy.status = 'running' OR (busy.status = 'completed' AND busy.finished_at > now() - %(t)s)))"
        # Attempts that ended recently (job_attempts); one in progress is `busy` above.
        " AND NOT EXISTS (SELECT 1 FROM job_attempts a WHERE a.scanner_id = j.scanner_id"
        "   AND a.started_at > now() - %(t)s)" + _RETURNING,
        {"t": older_than},
    )


async def mark_stuck_running(conn: AsyncConnection, factor: float, floor_seconds: float) -> list[dict[str, Any]]:
    return await _rows(
        conn,
        # Measured from the current attempt's start: jobs.started_at keeps the first attempt's.
        "UPDATE jobs j SET stall_class = 'stuck_running', stall_since = now(), stall_token = lease_token"
        " WHERE status = 'running' AND stall_class IS NULL"
        " AND coalesce(attempt_started_at, started_at)"
        "   < now() - make_interval(secs => greatest(%s * j.estimate_seconds, %s))"
        + _RETURNING,
        (factor, floor_seconds),
    )


async def expire_old_jobs(conn: AsyncConnection, older_than: timedelta) -> list[dict[str, Any]]:
    return await _rows(
        conn,
        "UPDATE jobs SET status = 'failed', error_class = 'expired', last_error = 'not finished within the limit',"
        " finished_at = now(), lease_token = lease_token + 1, lease_expires_at = NULL, updated_at = now()"
        " WHERE status IN ('pending', 'running') AND created_at < now() - %s" + _RETURNING,
        (older_than,),
    )


async def scanners_with_open_jobs(conn: AsyncConnection) -> list[int]:
    cur = await conn.execute(
        "SELECT DISTINCT scanner_id FROM jobs WHERE status IN ('pending', 'running') AND scanner_id IS NOT NULL"
    )
    return [r[0] for r in await cur.fetchall()]


async def silent_scanners(config: AsyncConnection, ids: list[int], silence: timedelta) -> set[int]:
    cur = await config.execute(
        "SELECT id FROM scanners WHERE id = ANY(%s)"
        " AND (last_heartbeat_at IS NULL OR last_heartbeat_at < now() - %s)",
        (ids, silence),
    )
    return {r[0] for r in await cur.fetchall()}


async def online_group_scanners(config: AsyncConnection, group_id: int, offline_after: timedelta) -> list[int]:
    cur = await config.execute(
        "SELECT s.id FROM scanner_group_members m JOIN scanners s ON s.id = m.scanner_id"
        " WHERE m.group_id = %s AND s.status = 'active' AND s.last_heartbeat_at > now() - %s ORDER BY s.id",
        (group_id, offline_after),
    )
    return [r[0] for r in await cur.fetchall()]


async def open_stalls(conn: AsyncConnection) -> dict[int, str]:
    cur = await conn.execute("SELECT scanner_id, class FROM scanner_stalls")
    return {r[0]: r[1] for r in await cur.fetchall()}


async def open_scanner_stall(conn: AsyncConnection, scanner_id: int, stall: str) -> None:
    await conn.execute("INSERT INTO scanner_stalls (scanner_id, class) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                       (scanner_id, stall))


async def close_scanner_stall(conn: AsyncConnection, scanner_id: int) -> None:
    await conn.execute("DELETE FROM scanner_stalls WHERE scanner_id = %s", (scanner_id,))


async def pending_jobs_of(conn: AsyncConnection, scanner_id: int) -> list[dict[str, Any]]:
    return await _rows(
        conn,
        "SELECT j.id, j.run_id, j.scanner_id, j.stall_class, r.mode, r.scanner_group_id"
        " FROM jobs j JOIN scan_runs r ON r.id = j.run_id"
        " WHERE j.scanner_id = %s AND j.status = 'pending' ORDER BY j.id FOR UPDATE OF j SKIP LOCKED",
        (scanner_id,),
    )


async def open_load(conn: AsyncConnection, scanner_ids: list[int]) -> dict[int, int]:
    cur = await conn.execute(
        "SELECT scanner_id, count(*) FROM jobs WHERE status IN ('pending', 'running') AND scanner_id = ANY(%s)"
        " GROUP BY scanner_id",
        (scanner_ids,),
    )
    counts = {sid: 0 for sid in scanner_ids}
    counts.update({r[0]: int(r[1]) for r in await cur.fetchall()})
    return counts


async def reassign(conn: AsyncConnection, job_id: int, scanner_id: int) -> None:
    # A new token: whatever the previous scanner still sends for this job is refused.
    await conn.execute(
        "UPDATE jobs SET scanner_id = %s, status = 'pending', lease_token = lease_token + 1,"
        " lease_expires_at = NULL, updated_at = now(), stall_class = 'reassigned', stall_since = now()"
        " WHERE id = %s",
        (scanner_id, job_id),
    )


async def mark_waiting(conn: AsyncConnection, job_id: int) -> None:
    await conn.execute(
        "UPDATE jobs SET stall_class = 'no_heartbeat', stall_since = now(), stall_token = lease_token"
        " WHERE id = %s AND stall_class IS NULL",
        (job_id,),
    )
