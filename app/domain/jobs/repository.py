"""SQL for claims, leases, progress and completion in the jobs database."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from app.domain.reconciler.repository import requeue_leased

# The job's targets and options go to the agent as they are stored: read as JSON text and passed through
# (msgspec.Raw), not decoded into Python lists here and encoded again for the answer.
_LEASED = ("j.id, j.run_id, j.lease_token, j.targets::text AS targets, j.ports, j.options::text AS options,"
           " j.cost, j.attempts")
# The attempt starts on the job row only; its history row is written when it ends (migration jobs/0600).
_LEASE_SET = ("status = 'running', lease_token = j.lease_token + 1,"
              " lease_expires_at = now() + make_interval(secs => %(lease)s), attempts = j.attempts + 1,"
              " started_at = coalesce(j.started_at, now()), attempt_started_at = now(), updated_at = now()")


# The pending jobs of one scanner, oldest first: only jobs_claim_idx (scanner_id, id) WHERE pending gives them
# in that order. Asked as `scanner_id = X ORDER BY id`, the planner may instead walk the primary key from the
# oldest job and filter (it does once the partial index has churned and statistics show most jobs pending),
# skipping every job claimed or finished before: a claim then costs more with every job in the table. So the
# scanner is matched as a range of one (`>= X AND <= X`) and the order is `scanner_id, id`: an equality would
# make `scanner_id` a constant and drop it from the order, which the primary key could then provide again.
def _claim_sql(limit: str) -> str:
    return (
        f"UPDATE jobs j SET {_LEASE_SET} WHERE j.id = ANY(ARRAY("
        "  SELECT id FROM jobs WHERE scanner_id >= %(s)s AND scanner_id <= %(s)s AND status = 'pending'"
        f"  ORDER BY scanner_id, id LIMIT {limit} FOR UPDATE SKIP LOCKED))"
        f" RETURNING {_LEASED}")


# psycopg prepares a statement after a few runs, and the server then uses a generic plan, which for `LIMIT $n`
# assumes a tenth of the table is picked. So one job per claim (what the agent asks) uses a constant LIMIT;
# more than one is planned per call for its real n (prepare=False), planning amortised over the n jobs.
_CLAIM_ONE = _claim_sql("1")
_CLAIM_MANY = _claim_sql("%(n)s")


async def claim(conn: AsyncConnection, scanner_id: int, limit: int, lease_seconds: float) -> list[tuple[Any, ...]]:
    """Lease up to `limit` pending jobs of this scanner (oldest first), in one statement.

    Rows are (id, run_id, lease_token, targets, ports, options, cost, attempts) tuples, targets and options
    as JSON text (the scanners' hot path: no per-row dict). SKIP LOCKED lets concurrent claims pass each
    other; the partial index jobs_claim_idx keeps it cheap.
    """
    params = {"s": scanner_id, "n": limit, "lease": lease_seconds}
    if limit == 1:
        return await (await conn.execute(_CLAIM_ONE, params)).fetchall()
    return sorted(await (await conn.execute(_CLAIM_MANY, params, prepare=False)).fetchall())


async def lock_job(conn: AsyncConnection, job_id: int) -> dict[str, Any] | None:
    """Lock the job row for this transaction: a requeue (new lease) waits until our results have committed."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT id, run_id, scanner_id, status, lease_token, targets, ports, cost, done_cost"
            " FROM jobs WHERE id = %s FOR NO KEY UPDATE", (job_id,))
        return await cur.fetchone()


async def record_progress(conn: AsyncConnection, job: dict[str, Any], scanned: int, lease_seconds: float) -> None:
    new_done = max(int(job["done_cost"]), min(int(job["cost"]), scanned))
    await conn.execute(
        "UPDATE jobs SET done_cost = %s, lease_expires_at = now() + make_interval(secs => %s), updated_at = now()"
        " WHERE id = %s", (new_done, lease_seconds, job["id"]))
    if new_done > job["done_cost"]:
        await conn.execute("UPDATE scan_runs SET done_cost = done_cost + %s WHERE id = %s",
                           (new_done - int(job["done_cost"]), job["run_id"]))


async def finish(conn: AsyncConnection, job: dict[str, Any], status: str, error_class: str | None,
                 error: str | None) -> None:
    done = int(job["cost"]) if status == "completed" else int(job["done_cost"])
    # The attempt's history row (job_attempts) is written by the jobs_attempt_end trigger.
    await conn.execute(
        "UPDATE jobs SET status = %s, finished_at = now(), lease_expires_at = NULL, done_cost = %s,"
        " error_class = %s, last_error = %s, updated_at = now() WHERE id = %s",
        (status, done, error_class, error, job["id"]))
    if done > job["done_cost"]:
        await conn.execute("UPDATE scan_runs SET done_cost = done_cost + %s WHERE id = %s",
                           (done - int(job["done_cost"]), job["run_id"]))


async def release(conn: AsyncConnection, job_id: int, scanner_id: int, lease_token: int) -> dict[str, Any] | None:
    """The scanner gives the running job back: the reconciler's lease-expiry requeue (or failure, when its
    attempts are used up), for this one job, only under its scanner and current token. None when stale."""
    return await requeue_leased(conn, job_id, scanner_id, lease_token, why="released by its scanner",
                                stall="released")


async def announce(conn: AsyncConnection, scanner_id: int) -> None:
    # Delivered at commit: the scanner's waiting claims (app.domain.jobs.notify) wake and find the job.
    await conn.execute("SELECT pg_notify('mipo_jobs', %s)", (str(scanner_id),))
