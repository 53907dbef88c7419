"""Port state changes of a finished run, per vantage point, against the previous covered state; and their events.

Called by the dispatcher when a run's jobs are all terminal. Semantics:
- the run's state of (scanner, address, port) is *open* where that scanner observed it open (any job), and
  *closed* only where a complete job of that scanner covered it without finding it open; elsewhere unknown;
- "previous" is the last state known before this run was detected (port_state), which every detection keeps
  in step, or earlier complete coverage for a port never seen open;
- opened / closed / service_changed (service or banner differ) / certificate_changed (TLS SHA-256 differs);
  a port open for the first time where nothing was covered before is a baseline, not a change;
- detection is recorded per (run, scanner) in run_summaries, so running it again for a run adds nothing.
"""

from __future__ import annotations

import logging

from psycopg import AsyncConnection

from app.domain.events.service import Severity, emit
from app.domain.results import changes_repository as repo
from app.domain.results.schemas import PortChangeRead

log = logging.getLogger("mipo.changes")

# Beyond this many changes in one run the events carry a summary instead of one event per change:
# the changes themselves are all stored and listed by the API.
MAX_EVENTS_PER_RUN = 200

EVENT_CLASS = {
    "opened": "port_opened",
    "closed": "port_closed",
    "service_changed": "service_changed",
    "certificate_changed": "certificate_changed",
}
SEVERITY: dict[str, Severity] = {
    "opened": "warning",  # new exposure
    "closed": "info",
    "service_changed": "info",
    "certificate_changed": "warning",
}


async def detect_changes(results_conn: AsyncConnection, run_id: int,
                         scanner_ids: list[int] | None = None) -> list[PortChangeRead]:
    """Detect and store the changes of one run — of every scanner not yet done, or only of `scanner_ids`
    (a vantage point whose part of a mirror run finished first); returns the new changes."""
    scanners = await repo.pending_scanners(results_conn, run_id)
    if scanner_ids is not None:
        scanners = [s for s in scanners if s in scanner_ids]
    if not scanners:
        return []
    return (await _detect(results_conn, run_id, scanners, with_rows=True))[1]


async def detect_changes_for_run(results_conn: AsyncConnection, run_id: int) -> int:
    """The dispatcher's hook: detect and store the run's changes in the caller's transaction; returns how many."""
    scanners = await repo.pending_scanners(results_conn, run_id)
    if not scanners:
        return 0
    return (await _detect(results_conn, run_id, scanners, with_rows=False))[0]


async def _detect(conn: AsyncConnection, run_id: int, scanners: list[int],
                  with_rows: bool) -> tuple[int, list[PortChangeRead]]:
    timings: dict[str, float] = {}
    count, rows = await repo.detect(conn, run_id, scanners, with_rows=with_rows, timings=timings)
    log.info("run %s: %d port change(s) for scanner(s) %s in %.2f s (%s)", run_id, count, scanners,
             sum(timings.values()), ", ".join(f"{k} {v:.2f}" for k, v in timings.items()))
    return count, rows


def _describe(change: PortChangeRead) -> str:
    where = f"{change.ip}:{change.port}/{change.proto} from scanner {change.scanner_id}"
    if change.change == "opened":
        return f"{where} opened"
    if change.change == "closed":
        return f"{where} closed"
    if change.change == "service_changed":
        return f"{where}: service or banner changed"
    return f"{where}: TLS certificate changed"


async def changes_as_events(config_conn: AsyncConnection, changes: list[PortChangeRead]) -> int:
    """Emit one event per change (at most MAX_EVENTS_PER_RUN per run, then one summary); returns events emitted."""
    emitted = 0
    per_run: dict[int, int] = {}
    skipped: dict[int, dict[str, int]] = {}
    for change in changes:
        count = per_run.get(change.run_id, 0)
        if count >= MAX_EVENTS_PER_RUN:
            kinds = skipped.setdefault(change.run_id, {})
            kinds[change.change] = kinds.get(change.change, 0) + 1
            continue
        per_run[change.run_id] = count + 1
        await emit(config_conn, EVENT_CLASS[change.change], _describe(change), severity=SEVERITY[change.change],
                   run_id=change.run_id, scanner_id=change.scanner_id,
                   details={"change_id": change.id, "ip": change.ip, "port": change.port, "proto": change.proto,
                            "before": change.before, "after": change.after})
        emitted += 1
    for run_id, kinds in skipped.items():
        total = sum(kinds.values())
        await emit(config_conn, "port_changes_summarised",
                   f"run {run_id}: {total} more port changes than events; list them under /api/changes?run_id={run_id}",
                   severity="warning" if kinds.get("opened") else "info", run_id=run_id, details={"more": kinds})
        emitted += 1
    return emitted


async def detect_and_report(results_conn: AsyncConnection, config_conn: AsyncConnection, run_id: int) -> int:
    """Detect a run's changes and emit their events; each connection inside the caller's transaction."""
    changes = await detect_changes(results_conn, run_id)
    await changes_as_events(config_conn, changes)
    return len(changes)
