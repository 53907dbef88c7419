"""Record an operator's repair request (manager side); the manager cannot write the jobs database itself."""

from __future__ import annotations

from psycopg import AsyncConnection
from psycopg.rows import class_row

from app.domain.audit.service import record
from app.domain.repairs.schemas import RepairAction, RepairRead
from app.errors import Conflict, NotFound

_COLUMNS = "id, action, job_id, scanner_id, requested_by, requested_at, done_at, outcome"


async def request_repair(config: AsyncConnection, jobs: AsyncConnection, actor: str, action: RepairAction, *,
                         job_id: int | None = None, scanner_id: int | None = None) -> RepairRead:
    """Validate against the current state (read-only on jobs), then queue the request for the dispatcher."""
    if job_id is not None:
        cur = await jobs.execute(
            "SELECT j.status, r.mode FROM jobs j JOIN scan_runs r ON r.id = j.run_id WHERE j.id = %s", (job_id,)
        )
        row = await cur.fetchone()
        if row is None:
            raise NotFound(f"job {job_id} does not exist")
        status, mode = row
        if action in ("reassign", "fail") and status not in ("pending", "running"):
            raise Conflict(f"job {job_id} is {status}; only pending or running jobs can be {action}ed",
                           reason="job_not_open")
        if action == "redispatch" and status == "completed":
            raise Conflict(f"job {job_id} already completed", reason="job_completed")
        if action == "reassign" and mode == "mirror":
            raise Conflict("a mirror job belongs to its vantage point; redispatch it instead of moving it",
                           reason="mirror_job")
    if scanner_id is not None:
        cur = await config.execute("SELECT 1 FROM scanners WHERE id = %s", (scanner_id,))
        if await cur.fetchone() is None:
            raise NotFound(f"scanner {scanner_id} does not exist", field="scanner_id")
    async with config.cursor(row_factory=class_row(RepairRead)) as rcur:
        await rcur.execute(
            f"INSERT INTO repair_requests (action, job_id, scanner_id, requested_by) VALUES (%s, %s, %s, %s)"
            f" RETURNING {_COLUMNS}",
            (action, job_id, scanner_id, actor),
        )
        created = await rcur.fetchone()
    assert created is not None
    repair: RepairRead = created
    await record(config, actor, f"repair.{action}", "job" if job_id is not None else "scanner",
                 job_id if job_id is not None else scanner_id, None, {"repair_request_id": repair.id,
                                                                      "scanner_id": scanner_id})
    return repair


async def get_repair(config: AsyncConnection, repair_id: int) -> RepairRead:
    async with config.cursor(row_factory=class_row(RepairRead)) as cur:
        await cur.execute(f"SELECT {_COLUMNS} FROM repair_requests WHERE id = %s", (repair_id,))
        repair = await cur.fetchone()
    if repair is None:
        raise NotFound(f"repair request {repair_id} does not exist")
    return repair


async def list_repairs(config: AsyncConnection, *, limit: int) -> list[RepairRead]:
    async with config.cursor(row_factory=class_row(RepairRead)) as cur:
        await cur.execute(f"SELECT {_COLUMNS} FROM repair_requests ORDER BY id DESC LIMIT %s", (limit,))
        return await cur.fetchall()
