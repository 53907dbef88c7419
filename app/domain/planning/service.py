"""Turn a template into a run: resolve targets minus exclusions, pick scanners, write the jobs."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from psycopg import AsyncConnection

from app.config import Settings
from app.domain.events.service import emit
from app.domain.planning import repository as repo
from app.domain.planning.batching import Mode, ScannerSlot, job_count, plan_jobs
from app.domain.ports.spec import PortSpecError, format_ports, parse_ports
from app.domain.targets.addresses import TargetSet, TargetSyntaxError

log = logging.getLogger("mipo.planning")


@dataclass
class PlannedRun:
    run_id: int | None          # None: this due time / request already had its run
    jobs: int = 0
    cost: int = 0
    scanners: set[int] = field(default_factory=set)
    failed: str | None = None


async def create_run(config: AsyncConnection, jobs: AsyncConnection, settings: Settings, template_id: int, *,
                     schedule_id: int | None = None, due_at: datetime | None = None,
                     run_request_id: int | None = None, requested_by: str = "schedule") -> PlannedRun:
    """Create the run and all its jobs in the caller's jobs transaction (commit makes them visible at once).

    A run that cannot be planned (no targets left, no scanner) is still recorded, as failed, with an
    event: the due time is answered exactly once and the operator sees why nothing was scanned.
    """
    tpl = await repo.template_inputs(config, template_id)
    if tpl is None:
        await emit(config, "plan_failed", f"template {template_id} no longer exists", severity="warning",
                   details={"template_id": template_id, "schedule_id": schedule_id})
        return PlannedRun(run_id=None, failed="template_missing")
    run_id = await repo.insert_run(
        jobs, template_id=template_id, template_name=tpl["name"], mode=tpl["mode"],
        scanner_group_id=tpl["scanner_group_id"], schedule_id=schedule_id, due_at=due_at,
        run_request_id=run_request_id, requested_by=requested_by,
    )
    if run_id is None:
        return PlannedRun(run_id=None)

    async def fail(reason: str, message: str) -> PlannedRun:
        await repo.fail_run(jobs, run_id)
        await emit(config, "plan_failed", f"run {run_id} of {tpl['name']!r}: {message}", severity="warning",
                   run_id=run_id, details={"reason": reason, "template_id": template_id})
        return PlannedRun(run_id=run_id, failed=reason)

    try:
        targets = TargetSet.parse(await repo.template_cidrs(config, template_id))
        excluded = TargetSet.parse(await repo.exclusion_cidrs(config, template_id))
        ports = parse_ports(tpl["ports"])
    except (TargetSyntaxError, PortSpecError) as exc:
        return await fail("bad_template", str(exc))
    targets = targets.subtract(excluded)
    scope = settings.scope.networks()
    if scope:
        # Defence in depth: the agent refuses out-of-scope targets too, but they should never be planned.
        allowed = TargetSet.parse(str(n) for n in scope)
        inside = targets.intersect(allowed)
        if inside != targets:
            await emit(config, "out_of_scope", f"run {run_id}: {targets.count() - inside.count()} addresses of"
                       f" {tpl['name']!r} lie outside the authorised scope and were left out",
                       severity="warning", run_id=run_id)
        targets = inside
    if not targets:
        return await fail("no_targets", "no target address is left after exclusions and scope")

    members = await repo.group_scanners(config, tpl["scanner_group_id"],
                                        timedelta(seconds=settings.scanner.offline_after))
    mode: Mode = tpl["mode"]
    usable = [m for m in members if m["status"] == "active" and (mode == "mirror" or m["online"])]
    if not usable:
        what = "active" if mode == "mirror" else "online active"
        return await fail("no_scanner", f"scanner group has no {what} scanner")

    port_count = ports.count()
    slots = [ScannerSlot(m["id"], m["rate_limit"]) for m in usable]
    expected = job_count(targets, port_count, slots, mode, tpl["rate"], settings.dispatcher.job_target_seconds)
    if expected > settings.dispatcher.max_jobs_per_run:
        return await fail("too_large", f"{targets.count()} addresses x {port_count} ports would need {expected}"
                          f" jobs (limit {settings.dispatcher.max_jobs_per_run}); narrow the targets or ports")
    specs = plan_jobs(targets, port_count, slots, mode, tpl["rate"], settings.dispatcher.job_target_seconds)
    options = {"timeout_ms": tpl["timeout_ms"], "banner": tpl["banner"], "tls": tpl["tls"]}
    count, cost, scanners = await repo.copy_jobs(jobs, run_id, specs, format_ports(ports), options,
                                                 settings.dispatcher.max_attempts)
    await repo.finish_run_stats(jobs, run_id, cost, targets.count(), port_count)
    await repo.notify_scanners(jobs, scanners)
    log.info("run %s of %r: %d jobs, %d probes, scanners %s", run_id, tpl["name"], count, cost, sorted(scanners))
    return PlannedRun(run_id=run_id, jobs=count, cost=cost, scanners=scanners)
