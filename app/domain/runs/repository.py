"""SQL for runs, their jobs and "run now" requests."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import class_row, dict_row

from app.domain.runs.schemas import JobRead, RunRead, RunRequestRead

_RUN_COLUMNS = ("id, template_id, template_name, schedule_id, due_at, run_request_id, status, mode, total_cost,"
                " done_cost, requested_by, created_at, finished_at")
_JOB_COLUMNS = ("id, run_id, scanner_id, status, targets, ports, options, cost, done_cost, lease_token,"
                " lease_expires_at, attempts, max_attempts, estimate_seconds, last_error, error_class, stall_class,"
                " created_at, started_at, finished_at")


async def list_runs(conn: AsyncConnection, *, status: str | None, template_id: int | None, limit: int,
                    before_id: int | None) -> list[RunRead]:
    async with conn.cursor(row_factory=class_row(RunRead)) as cur:
        await cur.execute(
            f"SELECT {_RUN_COLUMNS} FROM scan_runs WHERE (%(s)s::text IS NULL OR status = %(s)s)"
            " AND (%(t)s::bigint IS NULL OR template_id = %(t)s) AND (%(b)s::bigint IS NULL OR id < %(b)s)"
            " ORDER BY id DESC LIMIT %(l)s",
            {"s": status, "t": template_id, "b": before_id, "l": limit},
        )
        return await cur.fetchall()


async def get_run(conn: AsyncConnection, run_id: int) -> RunRead | None:
    async with conn.cursor(row_factory=class_row(RunRead)) as cur:
        await cur.execute(f"SELECT {_RUN_COLUMNS} FROM scan_runs WHERE id = %s", (run_id,))
        return await cur.fetchone()


async def job_counts(conn: AsyncConnection, run_id: int) -> dict[str, int]:
    cur = await conn.execute("SELECT status, count(*) FROM jobs WHERE run_id = %s GROUP BY status", (run_id,))
    return {r[0]: int(r[1]) for r in await cur.fetchall()}


async def list_jobs(conn: AsyncConnection, run_id: int, *, status: str | None, limit: int,
                    after_id: int | None) -> list[JobRead]:
    async with conn.cursor(row_factory=class_row(JobRead)) as cur:
        await cur.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE run_id = %(r)s AND (%(s)s::text IS NULL OR status = %(s)s)"
            " AND (%(a)s::bigint IS NULL OR id > %(a)s) ORDER BY id LIMIT %(l)s",
            {"r": run_id, "s": status, "a": after_id, "l": limit},
        )
        return await cur.fetchall()


async def get_job(conn: AsyncConnection, job_id: int) -> JobRead | None:
    async with conn.cursor(row_factory=class_row(JobRead)) as cur:
        await cur.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = %s", (job_id,))
        return await cur.fetchone()


async def insert_run_request(conn: AsyncConnection, template_id: int, requested_by: str) -> RunRequestRead:
    async with conn.cursor(row_factory=class_row(RunRequestRead)) as cur:
        await cur.execute(
            "INSERT INTO run_requests (template_id, requested_by) VALUES (%s, %s)"
            " RETURNING id, template_id, requested_by, requested_at, run_id",
            (template_id, requested_by),
        )
        row = await cur.fetchone()
        assert row is not None
        return row


async def open_run_requests(conn: AsyncConnection) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("SELECT id, template_id, requested_by FROM run_requests WHERE run_id IS NULL ORDER BY id")
        return await cur.fetchall()


async def answer_run_request(conn: AsyncConnection, request_id: int, run_id: int) -> None:
    await conn.execute("UPDATE run_requests SET run_id = %s WHERE id = %s", (run_id, request_id))


async def finish_runs(conn: AsyncConnection) -> list[dict[str, Any]]:
    """Runs whose jobs are all terminal: completed (all done), failed (none done) or partial."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "WITH done AS ("
            "  SELECT r.id, count(j.id) AS total, count(j.id) FILTER (WHERE j.status = 'completed') AS ok,"
            "         coalesce(sum(j.done_cost), 0) AS done_cost"
            "  FROM scan_runs r JOIN jobs j ON j.run_id = r.id"
            "  WHERE r.status = 'running'"
            "  GROUP BY r.id"
            "  HAVING count(j.id) FILTER (WHERE j.status IN ('pending', 'running')) = 0"
            ")"
            " UPDATE scan_runs r SET finished_at = now(), done_cost = done.done_cost,"
            "  status = CASE WHEN done.ok = done.total THEN 'completed' WHEN done.ok = 0 THEN 'failed'"
            "                ELSE 'partial' END"
            " FROM done WHERE r.id = done.id"
            " RETURNING r.id, r.status, r.template_name, done.total, done.ok"
        )
        return await cur.fetchall()
