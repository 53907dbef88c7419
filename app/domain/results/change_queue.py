"""Owed change detection: every finished run is detected exactly once, in the order runs finished, and a failed
detection (database error, lock timeout, restart) is retried by the dispatcher's next passes after a backoff.

Order matters: a run is compared with the known state its predecessors left, so a later run waits while an
earlier one is still owed. A run that keeps failing is given up after MAX_ATTEMPTS (a critical event), so one bad
run cannot stop change detection for good; its changes then show in the next run.
"""

from __future__ import annotations

import logging

import psycopg
from psycopg import AsyncConnection

from app.domain.events.service import emit
from app.domain.results import change_queue_repository as repo
from app.domain.results.changes import detect_and_report

log = logging.getLogger("mipo.changes")

RETRY_FIRST_SECONDS = 30.0
RETRY_MAX_SECONDS = 900.0
MAX_ATTEMPTS = 20  # about four hours of retries at the longest backoff
# Detection waits at most this long for a table lock (retention's drop_chunks, a backup): the dispatcher is a
# singleton, and a pass blocked behind a lock would also stop scheduling and reconciling.
LOCK_TIMEOUT_SECONDS = 30.0
PER_PASS = 20  # runs detected in one dispatcher pass at most


def retry_after(attempts: int) -> float:
    """Seconds until the next attempt after `attempts` failed ones: doubling from RETRY_FIRST_SECONDS, capped."""
    return min(RETRY_MAX_SECONDS, RETRY_FIRST_SECONDS * 2 ** min(max(0, attempts - 1), 32))


async def owe(jobs: AsyncConnection, run_ids: list[int]) -> None:
    """Record that these runs' changes are owed, in the jobs transaction that finished them."""
    await repo.enqueue(jobs, run_ids)


async def detect_owed(config: AsyncConnection, jobs: AsyncConnection, results: AsyncConnection, *,
                      lock_timeout: float = LOCK_TIMEOUT_SECONDS, limit: int = PER_PASS) -> list[int]:
    """Detect owed runs oldest first, stopping at the first one not due yet or failing; returns the runs detected.

    Each run's results (changes, state) commit before its events, and its queue row is removed after both: a
    restart in between detects again, finds the run recorded in run_summaries and adds nothing."""
    detected: list[int] = []
    for entry in await repo.oldest(jobs, limit):
        if not entry["due"]:
            break
        run_id = int(entry["run_id"])
        try:
            async with config.transaction(), results.transaction():
                await results.execute("SELECT set_config('lock_timeout', %s, true)", (f"{int(lock_timeout * 1000)}ms",))
                count = await detect_and_report(results, config, run_id)
        except Exception as exc:  # any failure of one run is recorded and retried, never fatal
            # A lost results connection is reopened by the dispatcher before its next pass.
            await _failed(config, jobs, run_id, int(entry["attempts"]) + 1, exc)
            return detected
        await repo.done(jobs, run_id)
        if entry["attempts"]:
            await emit(config, "change_detection_recovered",
                       f"run {run_id}: change detection succeeded after {entry['attempts']} failed attempt(s)",
                       run_id=run_id, details={"attempts": int(entry["attempts"]), "changes": count})
        detected.append(run_id)
    return detected


async def _failed(config: AsyncConnection, jobs: AsyncConnection, run_id: int, attempts: int,
                  exc: Exception) -> None:
    error = f"{type(exc).__name__}: {exc}".strip()
    if attempts >= MAX_ATTEMPTS:
        log.error("change detection for run %s failed %d times; giving up: %s", run_id, attempts, error)
        await repo.done(jobs, run_id)
        await emit(config, "change_detection_abandoned",
                   f"run {run_id}: change detection failed {attempts} times and was given up: {error}",
                   severity="critical", run_id=run_id, details={"attempts": attempts, "error": error})
        return
    delay = retry_after(attempts)
    retry_at = await repo.failed(jobs, run_id, error, delay)
    log.warning("change detection for run %s failed (attempt %d), retrying in %.0f s: %s",
                run_id, attempts, delay, error, exc_info=not isinstance(exc, psycopg.Error))
    if attempts == 1:  # one event per failing run; its recovery is the second
        await emit(config, "change_detection_failed",
                   f"run {run_id}: change detection failed, retrying in {delay:.0f} s: {error}",
                   severity="warning", run_id=run_id,
                   details={"attempts": attempts, "error": error,
                            "retry_at": retry_at.isoformat() if retry_at else None})
