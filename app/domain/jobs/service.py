"""Lease rules: a call is accepted only from the job's scanner, while it runs, under its current token."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import msgspec
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from app.domain.events.service import emit
from app.domain.ingest import repository as ingest_repo
from app.domain.jobs import repository as repo
from app.domain.jobs.notify import JobNotifier
from app.domain.jobs.schemas import ClaimedJob, Release, Released
from app.domain.scanners.schemas import AuthenticatedScanner
from app.errors import Conflict


async def locked_lease(conn: AsyncConnection, job_id: int, scanner_id: int, lease_token: int,
                       *, allow_finished: bool = False) -> dict[str, Any]:
    """The locked job row when (job, scanner, token) hold the lease; else 409 stale_lease."""
    job = await repo.lock_job(conn, job_id)
    if job is None or job["scanner_id"] != scanner_id or job["lease_token"] != lease_token:
        raise Conflict(f"job {job_id}: lease {lease_token} is not current", reason="stale_lease")
    if job["status"] != "running" and not (allow_finished and job["status"] in ("completed", "failed")):
        raise Conflict(f"job {job_id} is {job['status']}, not running", reason="stale_lease")
    return job


async def claim_jobs(jobs: AsyncConnectionPool, results: AsyncConnectionPool, notifier: JobNotifier,
                     scanner_id: int, max_jobs: int, wait: float, lease_seconds: float,
                     may_claim: Callable[[], Awaitable[bool]] | None = None,
                     gone: asyncio.Future[None] | None = None) -> list[ClaimedJob]:
    """Claim now, or wait for this scanner's NOTIFY (re-checking every few seconds in case one was missed).

    `may_claim` is asked before every claim after the first (the caller checked the first): a long poll of
    a scanner that stopped being allowed to take work ends empty. `gone` (the client disconnected) also
    wakes the wait, so the next `may_claim` can end it at once.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    with notifier.subscription(scanner_id) as woken:
        first = True
        while True:
            woken.clear()
            if not first and may_claim is not None and not await may_claim():
                return []
            first = False
            # One statement: atomic on its own, so no BEGIN/COMMIT round trips.
            async with jobs.connection() as conn:
                rows = await repo.claim(conn, scanner_id, max_jobs, lease_seconds)
            if rows:
                break
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            if gone is not None and gone.done():
                return []
            notified: asyncio.Future[Any] = asyncio.ensure_future(woken.wait())
            try:
                await asyncio.wait([notified] if gone is None else [notified, gone], timeout=min(remaining, 5.0),
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                notified.cancel()
    claimed = []
    for job_id, run_id, lease_token, targets, ports, options, cost, attempts in rows:
        first_seq = 0
        if lease_token > 1 or attempts > 1:
            # After the lease bump committed: any older-lease batch has either committed or will be refused,
            # so numbering continues after it and (job_id, batch_seq) never collides across attempts.
            async with results.connection() as rconn:
                first_seq = await ingest_repo.next_batch_seq(rconn, job_id)
        claimed.append(ClaimedJob(job_id=job_id, run_id=run_id, lease_token=lease_token,
                                  targets=msgspec.Raw(targets), ports=ports, options=msgspec.Raw(options or "{}"),
                                  cost=cost, attempt=attempts, first_batch_seq=first_seq))
    return claimed


async def release_lease(jobs: AsyncConnectionPool, config: AsyncConnectionPool | None,
                        scanner: AuthenticatedScanner, msg: Release) -> Released:
    """The agent gives back a lease it will not finish: the job is pending again at once (its claims are woken),
    instead of sitting out the lease; failed if that was its last attempt. A stale lease: 409 stale_lease."""
    async with jobs.connection() as conn, conn.transaction():
        job = await repo.release(conn, msg.job_id, scanner.id, msg.lease_token)
        if job is None:
            raise Conflict(f"job {msg.job_id}: lease {msg.lease_token} is not current", reason="stale_lease")
        if job["status"] == "pending":
            await repo.announce(conn, scanner.id)
    action: Literal["requeued", "failed"] = "requeued" if job["status"] == "pending" else "failed"
    if config is not None:
        # After the job's change committed: an event never claims a change that was undone.
        async with config.connection() as cconn, cconn.transaction():
            text = ("requeued under a new token" if action == "requeued"
                    else f"failed: its last attempt ({job['attempts']} of {job['max_attempts']})")
            await emit(cconn, "job_released", f"job {job['id']}: scanner {scanner.name} released it"
                       f" ({msg.reason}); {text}", severity="info" if action == "requeued" else "warning",
                       run_id=job["run_id"], job_id=job["id"], scanner_id=scanner.id,
                       action="redispatch" if action == "requeued" else "fail",
                       details={"reason": msg.reason, "taken": action, "attempts": job["attempts"],
                                "lease_token": job["lease_token"]})
    return Released(released=True, action=action)
