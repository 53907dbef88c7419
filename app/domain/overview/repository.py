"""Read-only SQL across the three databases for the dashboard."""

from __future__ import annotations

from psycopg import AsyncConnection
from psycopg.rows import class_row

from app.domain.events.service import Event
from app.domain.overview.schemas import EventRow, OfflineScanner, PortChange, RunningScan, ScannerCounts
from app.domain.runs.schemas import RunRequestRead


async def scanner_counts(conn: AsyncConnection, offline_after: float) -> ScannerCounts:
    async with conn.cursor(row_factory=class_row(ScannerCounts)) as cur:
        await cur.execute(
            "SELECT"
            " count(*) FILTER (WHERE status IN ('active', 'draining')"
            "   AND last_heartbeat_at > now() - make_interval(secs => %(off)s)) AS online,"
            " count(*) FILTER (WHERE status IN ('active', 'draining')"
            "   AND (last_heartbeat_at IS NULL OR last_heartbeat_at <= now() - make_interval(secs => %(off)s)))"
            "   AS offline,"
            " count(*) FILTER (WHERE status = 'pending') AS pending,"
            " count(*) FILTER (WHERE status = 'disabled') AS disabled"
            " FROM scanners",
            {"off": offline_after},
        )
        row = await cur.fetchone()
        assert row is not None
        return row


async def running_scans(conn: AsyncConnection, limit: int = 20) -> list[RunningScan]:
    async with conn.cursor(row_factory=class_row(RunningScan)) as cur:
        await cur.execute(
            "SELECT id, template_name, mode, requested_by, created_at, total_cost, done_cost"
            " FROM scan_runs WHERE status = 'running' ORDER BY created_at DESC LIMIT %s",
            (limit,),
        )
        return await cur.fetchall()


async def recent_changes(conn: AsyncConnection, limit: int = 15) -> list[PortChange]:
    async with conn.cursor(row_factory=class_row(PortChange)) as cur:
        await cur.execute(
            "SELECT id, detected_at, run_id, scanner_id, host(ip) AS ip, port, proto, change"
            " FROM port_changes ORDER BY detected_at DESC, id DESC LIMIT %s",
            (limit,),
        )
        return await cur.fetchall()


async def run_request(conn: AsyncConnection, request_id: int) -> RunRequestRead | None:
    """A "run now" request and, once the dispatcher answered it, its run id."""
    async with conn.cursor(row_factory=class_row(RunRequestRead)) as cur:
        await cur.execute(
            "SELECT id, template_id, requested_by, requested_at, run_id FROM run_requests WHERE id = %s",
            (request_id,),
        )
        return await cur.fetchone()


async def scanner_names(conn: AsyncConnection) -> dict[int, str]:
    """id → name of every scanner, to show names where results carry ids."""
    cur = await conn.execute("SELECT id, name FROM scanners")
    return {int(row[0]): str(row[1]) for row in await cur.fetchall()}


async def run_events(conn: AsyncConnection, run_id: int, limit: int = 50) -> list[Event]:
    """Events about one run (why it failed, stalls, repairs), newest first."""
    async with conn.cursor(row_factory=class_row(Event)) as cur:
        await cur.execute(
            "SELECT id, at, class AS event_class, severity, message, run_id, job_id, scanner_id, action, details"
            " FROM events WHERE run_id = %s ORDER BY id DESC LIMIT %s",
            (run_id, limit),
        )
        return await cur.fetchall()


async def offline_scanners(conn: AsyncConnection, offline_after: float, limit: int = 20) -> list[OfflineScanner]:
    """Active scanners whose heartbeats stopped, the longest silent first."""
    async with conn.cursor(row_factory=class_row(OfflineScanner)) as cur:
        await cur.execute(
            "SELECT id, name, last_heartbeat_at, host(last_address) AS last_address FROM scanners"
            " WHERE status IN ('active', 'draining')"
            " AND (last_heartbeat_at IS NULL OR last_heartbeat_at <= now() - make_interval(secs => %s))"
            " ORDER BY last_heartbeat_at NULLS FIRST LIMIT %s",
            (offline_after, limit),
        )
        return await cur.fetchall()


async def list_event_rows(conn: AsyncConnection, *, event_class: str | None, severity: str | None,
                          open_only: bool, before_id: int | None, limit: int) -> list[EventRow]:
    """Newest first; `open_only`: not yet acknowledged; `before_id` pages backwards."""
    async with conn.cursor(row_factory=class_row(EventRow)) as cur:
        await cur.execute(
            "SELECT id, at, class AS event_class, severity, message, run_id, scanner_id, action, acknowledged_at"
            " FROM events WHERE (%(c)s::text IS NULL OR class = %(c)s) AND (%(s)s::text IS NULL OR severity = %(s)s)"
            " AND (NOT %(o)s OR acknowledged_at IS NULL) AND (%(b)s::bigint IS NULL OR id < %(b)s)"
            " ORDER BY id DESC LIMIT %(l)s",
            {"c": event_class, "s": severity, "o": open_only, "b": before_id, "l": limit},
        )
        return await cur.fetchall()


async def acknowledge_event(conn: AsyncConnection, event_id: int) -> bool:
    """Mark an event seen (the first acknowledgement counts); False when there is no such event."""
    cur = await conn.execute(
        "UPDATE events SET acknowledged_at = coalesce(acknowledged_at, now()) WHERE id = %s RETURNING id",
        (event_id,),
    )
    return await cur.fetchone() is not None
