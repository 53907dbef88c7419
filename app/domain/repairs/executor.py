"""The dispatcher carries out queued repair requests, each once, and reports each as an event."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from app.config import Settings
from app.domain.events.service import emit
from app.domain.reconciler import repository as rrepo
from app.domain.reconciler.service import Pass, move_split_jobs

log = logging.getLogger("mipo.repairs")


async def _job(jobs: AsyncConnection, job_id: int) -> dict[str, Any] | None:
    async with jobs.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT j.id, j.run_id, j.scanner_id, j.status, r.mode, r.scanner_group_id FROM jobs j"
            " JOIN scan_runs r ON r.id = j.run_id WHERE j.id = %s FOR UPDATE OF j",
            (job_id,),
        )
        return await cur.fetchone()


async def _reopen_run(jobs: AsyncConnection, run_id: int) -> None:
    await jobs.execute("UPDATE scan_runs SET status = 'running', finished_at = NULL WHERE id = %s", (run_id,))


async def _execute(config: AsyncConnection, jobs: AsyncConnection, settings: Settings,
                   req: dict[str, Any]) -> str:
    offline_after = timedelta(seconds=settings.scanner.offline_after)
    if req["action"] == "drain":
        sid = req["scanner_id"]
        await config.execute("UPDATE scanners SET status = 'draining' WHERE id = %s AND status = 'active'", (sid,))
        done = Pass()
        await move_split_jobs(config, jobs, sid, offline_after, done, reason="drain")
        cur = await jobs.execute(
            "UPDATE jobs j SET status = 'cancelled', finished_at = now(), error_class = 'drained',"
            " lease_token = lease_token + 1 FROM scan_runs r"
            " WHERE r.id = j.run_id AND j.scanner_id = %s AND j.status = 'pending' AND r.mode = 'mirror'",
            (sid,),
        )
        moved = done.counts.get("reassigned", 0)
        return f"done: draining; {moved} split jobs moved, {cur.rowcount} mirror jobs cancelled"
    job = await _job(jobs, req["job_id"])
    if job is None:
        return "refused: the job no longer exists"
    if req["action"] == "fail":
        if job["status"] not in ("pending", "running"):
            return f"refused: the job is {job['status']}"
        await jobs.execute(
            "UPDATE jobs SET status = 'failed', finished_at = now(), error_class = 'operator',"
            " last_error = %s, lease_token = lease_token + 1, lease_expires_at = NULL WHERE id = %s",
            (f"failed by {req['requested_by']}", job["id"]),
        )
        return "done: failed"
    if req["action"] == "redispatch":
        if job["status"] == "completed":
            return "refused: the job already completed"
        await jobs.execute(
            "UPDATE jobs SET status = 'pending', lease_token = lease_token + 1, lease_expires_at = NULL,"
            " attempts = CASE WHEN status IN ('failed', 'cancelled') THEN 0 ELSE attempts END,"
            " finished_at = NULL, error_class = NULL, updated_at = now(),"
            " stall_class = 'redispatched', stall_since = now() WHERE id = %s",
            (job["id"],),
        )
        await _reopen_run(jobs, job["run_id"])
        await jobs.execute("SELECT pg_notify('mipo_jobs', %s)", (str(job["scanner_id"]),))
        return "done: requeued under a new token"
    # reassign
    if job["status"] not in ("pending", "running"):
        return f"refused: the job is {job['status']}"
    if job["mode"] != "split":
        return "refused: mirror jobs stay with their scanner"
    peers = [s for s in await rrepo.online_group_scanners(config, job["scanner_group_id"], offline_after)
             if s != job["scanner_id"]]
    target = req["scanner_id"]
    if target is None:
        if not peers:
            return "refused: no other online scanner in the group"
        load = await rrepo.open_load(jobs, peers)
        target = min(peers, key=lambda s: (load[s], s))
    elif target not in peers:
        return f"refused: scanner {target} is not an online active member of the run's group"
    await rrepo.reassign(jobs, job["id"], target)
    await jobs.execute("SELECT pg_notify('mipo_jobs', %s)", (str(target),))
    return f"done: moved to scanner {target}"


async def execute_repairs(config: AsyncConnection, jobs: AsyncConnection, settings: Settings) -> int:
    async with config.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT id, action, job_id, scanner_id, requested_by FROM repair_requests"
            " WHERE done_at IS NULL ORDER BY id"
        )
        requests = await cur.fetchall()
    for req in requests:
        async with config.transaction(), jobs.transaction():
            outcome = await _execute(config, jobs, settings, req)
            await config.execute("UPDATE repair_requests SET done_at = now(), outcome = %s WHERE id = %s",
                                 (outcome, req["id"]))
            await emit(config, "repair", f"{req['action']} requested by {req['requested_by']}: {outcome}",
                       severity="info" if outcome.startswith("done") else "warning",
                       job_id=req["job_id"], scanner_id=req["scanner_id"], action=req["action"],
                       details={"repair_request_id": req["id"], "outcome": outcome})
        log.info("repair %s (%s): %s", req["id"], req["action"], outcome)
    return len(requests)
