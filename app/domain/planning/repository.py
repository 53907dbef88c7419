"""SQL for planning: read a template's inputs from the config DB, write a run and its jobs to the jobs DB."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from app.domain.planning.batching import JobSpec


async def template_inputs(conn: AsyncConnection, template_id: int) -> dict[str, Any] | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT t.id, t.name, t.rate, t.timeout_ms, t.banner, t.tls, t.scanner_group_id,"
            " g.mode, pl.spec AS ports"
            " FROM scan_templates t JOIN scanner_groups g ON g.id = t.scanner_group_id"
            " JOIN port_lists pl ON pl.id = t.port_list_id WHERE t.id = %s",
            (template_id,),
        )
        return await cur.fetchone()


async def template_cidrs(conn: AsyncConnection, template_id: int) -> list[str]:
    cur = await conn.execute(
        "SELECT s.cidr::text FROM template_targets tt JOIN subnets s ON s.id = tt.subnet_id"
        " WHERE tt.template_id = %(t)s"
        " UNION ALL"
        " SELECT s.cidr::text FROM template_targets tt"
        " JOIN subnet_group_members m ON m.group_id = tt.subnet_group_id"
        " JOIN subnets s ON s.id = m.subnet_id WHERE tt.template_id = %(t)s",
        {"t": template_id},
    )
    return [r[0] for r in await cur.fetchall()]


async def exclusion_cidrs(conn: AsyncConnection, template_id: int) -> list[str]:
    cur = await conn.execute(
        "SELECT cidr::text FROM exclusions WHERE template_id IS NULL OR template_id = %s", (template_id,)
    )
    return [r[0] for r in await cur.fetchall()]


async def group_scanners(conn: AsyncConnection, group_id: int, offline_after: timedelta) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT s.id, s.name, s.rate_limit, s.status,"
            " coalesce(now() - s.last_heartbeat_at < %s, false) AS online"
            " FROM scanner_group_members m JOIN scanners s ON s.id = m.scanner_id"
            " WHERE m.group_id = %s ORDER BY s.id",
            (offline_after, group_id),
        )
        return await cur.fetchall()


async def insert_run(conn: AsyncConnection, *, template_id: int, template_name: str, mode: str,
                     scanner_group_id: int, schedule_id: int | None, due_at: datetime | None,
                     run_request_id: int | None, requested_by: str) -> int | None:
    """The new run's id, or None when this due time or request already has its run."""
    cur = await conn.execute(
        "INSERT INTO scan_runs (template_id, template_name, mode, scanner_group_id, schedule_id, due_at,"
        " run_request_id, requested_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT DO NOTHING RETURNING id",
        (template_id, template_name, mode, scanner_group_id, schedule_id, due_at, run_request_id, requested_by),
    )
    row = await cur.fetchone()
    return int(row[0]) if row else None


async def run_for_request(conn: AsyncConnection, run_request_id: int) -> int | None:
    cur = await conn.execute("SELECT id FROM scan_runs WHERE run_request_id = %s", (run_request_id,))
    row = await cur.fetchone()
    return int(row[0]) if row else None


async def copy_jobs(conn: AsyncConnection, run_id: int, jobs: Iterable[JobSpec], ports: str,
                    options: dict[str, Any], max_attempts: int) -> tuple[int, int, set[int]]:
    """COPY the jobs in (one round trip for thousands); returns (jobs, total cost, scanner ids)."""
    count = total = 0
    scanners: set[int] = set()
    async with conn.cursor() as cur, cur.copy(
        "COPY jobs (run_id, scanner_id, targets, ports, options, cost, estimate_seconds, max_attempts)"
        " FROM STDIN"
    ) as copy:
        for job in jobs:
            await copy.write_row((
                run_id, job.scanner_id, json.dumps(job.targets()), ports,
                json.dumps({**options, "rate": job.rate}), job.cost, job.estimate_seconds, max_attempts,
            ))
            count += 1
            total += job.cost
            scanners.add(job.scanner_id)
    return count, total, scanners


async def finish_run_stats(conn: AsyncConnection, run_id: int, total_cost: int, addresses: int,
                           ports: int) -> None:
    await conn.execute(
        "UPDATE scan_runs SET total_cost = %s, address_count = %s, port_count = %s WHERE id = %s",
        (total_cost, addresses, ports, run_id),
    )


async def fail_run(conn: AsyncConnection, run_id: int) -> None:
    await conn.execute("UPDATE scan_runs SET status = 'failed', finished_at = now() WHERE id = %s", (run_id,))


async def notify_scanners(conn: AsyncConnection, scanner_ids: Iterable[int]) -> None:
    # NOTIFY inside the transaction is delivered at commit: listeners never see uncommitted jobs.
    for sid in sorted(scanner_ids):
        await conn.execute("SELECT pg_notify('mipo_jobs', %s)", (str(sid),))
