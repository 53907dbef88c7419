"""SQL for claims, leases, progress and completion in the jobs database."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row


def _claim_sql(limit: str) -> str:
    return (
        "WITH picked AS ("
        "  SELECT id FROM jobs WHERE scanner_id = %(s)s AND status = 'pending'"
        f"  ORDER BY id LIMIT {limit} FOR UPDATE SKIP LOCKED),"
        " leased AS ("
        "  UPDATE jobs j SET status = 'running', lease_token = j.lease_token + 1,"
        "   lease_expires_at = now() + make_interval(secs => %(lease)s), attempts = j.attempts + 1,"
        "   started_at = coalesce(j.started_at, now()), updated_at = now()"
        "  FROM picked WHERE j.id = picked.id"
        "  RETURNING j.id, j.run_id, j.lease_token, j.targets, j.ports, j.options, j.cost, j.attempts),"
        " attempt AS ("
        "  INSERT INTO job_attempts (job_id, attempt, scanner_id, lease_token)"
        "  SELECT id, attempts, %(s)s, lease_token FROM leased ON CONFLICT (job_id, attempt) DO NOTHING)"
        " SELECT * FROM leased ORDER BY id")


# psycopg prepares a statement after a few runs, and the server then uses a generic plan. With `LIMIT $n`
# that plan assumes 10% of the table is picked and hash-joins the UPDATE over a seq scan of ALL jobs (cost
# growing with the table; ~2x the claim's time with only 4,000 jobs). So one job per claim (what the agent
# asks) uses a constant LIMIT, whose generic plan is the index nested loop; more than one is planned per call
# for its real n (prepare=False), planning amortised over the n jobs.
_CLAIM_ONE = _claim_sql("1")
_CLAIM_MANY = _claim_sql("%(n)s")


async def claim(conn: AsyncConnection, scanner_id: int, limit: int, lease_seconds: float) -> list[dict[str, Any]]:
    """Lease up to `limit` pending jobs of this scanner and record the attempts, in one statement.

    SKIP LOCKED lets concurrent claims pass each other; the partial index jobs_claim_idx keeps it cheap.
    """
    async with conn.cursor(row_factory=dict_row) as cur:
        params = {"s": scanner_id, "n": limit, "lease": lease_seconds}
        if limit == 1:
            await cur.execute(_CLAIM_ONE, params)
        else:
            await cur.execute(_CLAIM_MANY, params, prepare=False)
        return await cur.fetchall()


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
    await conn.execute(
        "UPDATE jobs SET status = %s, finished_at = now(), lease_expires_at = NULL, done_cost = %s,"
        " error_class = %s, last_error = %s, updated_at = now() WHERE id = %s",
        (status, done, error_class, error, job["id"]))
    if done > job["done_cost"]:
        await conn.execute("UPDATE scan_runs SET done_cost = done_cost + %s WHERE id = %s",
                           (done - int(job["done_cost"]), job["run_id"]))
    await conn.execute(
        "UPDATE job_attempts SET ended_at = now(), outcome = %s WHERE job_id = %s AND lease_token = %s",
        (status if not error_class else f"{status}:{error_class}", job["id"], job["lease_token"]))
