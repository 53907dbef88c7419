"""One reconciler pass: time out stalled jobs, move or hold work of silent scanners, report recoveries."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from psycopg import AsyncConnection

from app.config import Settings
from app.domain.events.service import Severity, emit
from app.domain.reconciler import repository as repo

log = logging.getLogger("mipo.reconciler")

_STALL_TEXT = {
    "lease_expired": "its lease expired",
    "stuck_pending": "it waited too long for a scanner",
    "stuck_running": "it ran far longer than estimated",
    "no_heartbeat": "its scanner stopped sending heartbeats",
    "reassigned": "it was moved to another scanner",
    "released": "its scanner gave it back (stopping or restarted)",
}


@dataclass
class Pass:
    """What one pass did, for logs and tests."""

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, what: str, n: int = 1) -> None:
        if n:
            self.counts[what] = self.counts.get(what, 0) + n


async def _job_event(config: AsyncConnection, cls: str, job: dict[str, Any], message: str, *,
                     action: str | None, severity: Severity = "warning", **details: Any) -> None:
    await emit(config, cls, f"job {job['id']}: {message}", severity=severity, run_id=job.get("run_id"),
               job_id=job["id"], scanner_id=job.get("scanner_id"), action=action, details=details)


async def _grouped_events(config: AsyncConnection, cls: str, jobs: list[dict[str, Any]], message: str, *,
                          action: str | None, severity: Severity = "warning", **details: Any) -> None:
    """One event per scanner and class: a run of thousands of jobs must not bury the event list."""
    by_scanner: dict[int | None, list[dict[str, Any]]] = {}
    for job in jobs:
        by_scanner.setdefault(job.get("scanner_id"), []).append(job)
    for sid, group in by_scanner.items():
        group.sort(key=lambda j: j["id"])
        if len(group) == 1:
            await _job_event(config, cls, group[0], message, action=action, severity=severity, **details)
            continue
        first = group[0]
        await emit(config, cls, f"{len(group)} jobs of scanner {sid} (first {first['id']}): {message}",
                   severity=severity, run_id=first.get("run_id"), job_id=first["id"], scanner_id=sid,
                   action=action, details={**details, "jobs": len(group), "job_ids": [j["id"] for j in group[:50]]})


async def reconcile(config: AsyncConnection, jobs: AsyncConnection, settings: Settings) -> Pass:
    """Run every check once. Job changes commit before their events (events never claim undone work)."""
    d = settings.dispatcher
    done = Pass()
    async with config.transaction(), jobs.transaction():
        for job in await repo.expire_leases(jobs):
            if job["status"] == "failed":
                await _job_event(config, "lease_expired", job, f"lease expired after {job['attempts']} attempts;"
                                 " failed", action="fail", severity="critical", attempts=job["attempts"])
                done.add("failed")
            else:
                await _job_event(config, "lease_expired", job, "lease expired; requeued under a new token",
                                 action="redispatch", attempts=job["attempts"], lease_token=job["lease_token"])
                done.add("requeued")
        expired = await repo.expire_old_jobs(jobs, timedelta(seconds=d.expired_seconds))
        await _grouped_events(config, "expired", expired, f"not finished after {d.expired_seconds:g} s; failed",
                              action="fail", severity="critical")
        done.add("expired", len(expired))
    await _silent_scanners(config, jobs, settings, done)
    async with config.transaction(), jobs.transaction():
        stuck = await repo.mark_stuck_pending(jobs, timedelta(seconds=d.stuck_pending_seconds))
        await _grouped_events(config, "stuck_pending", stuck, f"pending for more than {d.stuck_pending_seconds:g} s"
                              " while its scanner ran nothing", action=None)
        done.add("stuck_pending", len(stuck))
        for job in await repo.mark_stuck_running(jobs, d.stuck_running_factor, d.stuck_running_min_seconds):
            await _job_event(config, "stuck_running", job,
                             f"running for more than {d.stuck_running_factor:g}x its estimate"
                             f" and {d.stuck_running_min_seconds:g} s", action=None)
            done.add("stuck_running")
        recovered = await repo.recovered_jobs(jobs)
        for stall in sorted({j["stall_class"] for j in recovered}):
            group = [j for j in recovered if j["stall_class"] == stall]
            await _grouped_events(config, "recovered", group, f"recovered after {_STALL_TEXT.get(stall, stall)}",
                                  action=None, severity="info", stall=stall)
        done.add("recovered", len(recovered))
    if done.counts:
        log.info("reconciler: %s", done.counts)
    return done


async def _silent_scanners(config: AsyncConnection, jobs: AsyncConnection, settings: Settings, done: Pass) -> None:
    """No heartbeat: one event per scanner; split jobs move to an online peer, mirror jobs wait."""
    silence = timedelta(seconds=settings.dispatcher.no_heartbeat_seconds)
    offline_after = timedelta(seconds=settings.scanner.offline_after)
    async with config.transaction(), jobs.transaction():
        busy = await repo.scanners_with_open_jobs(jobs)
        stalls = await repo.open_stalls(jobs)
        watched = sorted(set(busy) | set(stalls))
        silent = await repo.silent_scanners(config, watched, silence) if watched else set()
        for sid in sorted(set(stalls) - silent):
            await repo.close_scanner_stall(jobs, sid)
            await emit(config, "recovered", f"scanner {sid} is sending heartbeats again", scanner_id=sid,
                       details={"stall": "no_heartbeat"})
            done.add("scanner_recovered")
        for sid in sorted(silent & set(busy)):
            if sid not in stalls:
                await repo.open_scanner_stall(jobs, sid, "no_heartbeat")
                await emit(config, "no_heartbeat", f"scanner {sid} sent no heartbeat for {silence.seconds} s",
                           severity="warning", scanner_id=sid, action="wait")
                done.add("no_heartbeat")
            await move_split_jobs(config, jobs, sid, offline_after, done, reason="no_heartbeat")


async def move_split_jobs(config: AsyncConnection, jobs: AsyncConnection, scanner_id: int,
                          offline_after: timedelta, done: Pass, *, reason: str) -> None:
    """Pending split jobs of a scanner go to the least-loaded online peer; mirror jobs stay (and wait)."""
    peers_by_group: dict[int, list[int]] = {}
    moved: dict[int, list[dict[str, Any]]] = {}
    for job in await repo.pending_jobs_of(jobs, scanner_id):
        if job["mode"] != "split" or job["scanner_group_id"] is None:
            await repo.mark_waiting(jobs, job["id"])
            continue
        group = job["scanner_group_id"]
        if group not in peers_by_group:
            peers_by_group[group] = [
                s for s in await repo.online_group_scanners(config, group, offline_after) if s != scanner_id
            ]
        peers = peers_by_group[group]
        if not peers:
            await repo.mark_waiting(jobs, job["id"])
            continue
        load = await repo.open_load(jobs, peers)
        target = min(peers, key=lambda s: (load[s], s))
        await repo.reassign(jobs, job["id"], target)
        moved.setdefault(target, []).append(job)
    for target, group_jobs in moved.items():
        await _grouped_events(config, reason, group_jobs, f"moved from scanner {scanner_id} to scanner {target}",
                              action="reassign", from_scanner=scanner_id, to_scanner=target)
        await jobs.execute("SELECT pg_notify('mipo_jobs', %s)", (str(target),))
        done.add("reassigned", len(group_jobs))
