"""The dispatcher's side of schedules: turn each due time into exactly one run, report missed ones."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from app.config import Settings
from app.domain.events.service import emit
from app.domain.planning.service import PlannedRun, create_run
from app.domain.schedules.cron import CronError, jitter_offset, next_fire, parse_cron, zone

log = logging.getLogger("mipo.schedules")
# Bound the catch-up walk after a long outage: past this, jump straight to the present.
_MAX_MISSED_WALK = 100


async def _enabled(config: AsyncConnection) -> list[dict[str, Any]]:
    async with config.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT id, name, template_id, cron, timezone, jitter_seconds, next_run_at FROM schedules"
            " WHERE enabled ORDER BY id"
        )
        return await cur.fetchall()


async def _set_next(config: AsyncConnection, schedule_id: int, next_run_at: datetime,
                    last_run_at: datetime | None) -> None:
    await config.execute(
        "UPDATE schedules SET next_run_at = %s, last_run_at = coalesce(%s, last_run_at) WHERE id = %s",
        (next_run_at, last_run_at, schedule_id),
    )


async def process_schedules(config: AsyncConnection, jobs: AsyncConnection, settings: Settings,
                            now: datetime) -> list[PlannedRun]:
    """`next_run_at` holds the next due time (cron instant, without jitter); the run fires at due + jitter.

    Ordering makes restarts safe: the run (UNIQUE schedule_id, due_at) commits in the jobs database
    before next_run_at moves on in the config database. A crash in between re-plans the same due
    time on restart, and the unique key turns that into a no-op.
    """
    runs: list[PlannedRun] = []
    missed_after = timedelta(seconds=settings.dispatcher.missed_run_after_seconds)
    for sched in await _enabled(config):
        try:
            cron, tz = parse_cron(sched["cron"]), zone(sched["timezone"])
        except CronError as exc:
            log.warning("schedule %s unusable: %s", sched["id"], exc)
            continue
        async with config.transaction():
            due: datetime | None = sched["next_run_at"]
            if due is None:
                await _set_next(config, sched["id"], next_fire(cron, tz, now), None)
                continue
            offset = jitter_offset(sched["id"], sched["jitter_seconds"])
            missed: list[datetime] = []
            while due + offset + missed_after < now:
                missed.append(due)
                due = next_fire(cron, tz, due) if len(missed) < _MAX_MISSED_WALK else next_fire(cron, tz, now)
            if missed:
                await emit(config, "missed_run",
                           f"schedule {sched['name']!r} missed {len(missed)}"
                           f"{'+' if len(missed) >= _MAX_MISSED_WALK else ''} due time(s) from"
                           f" {missed[0].isoformat()} (the dispatcher was not running)",
                           severity="warning",
                           details={"schedule_id": sched["id"], "count": len(missed),
                                    "first_due_at": missed[0].isoformat(), "last_due_at": missed[-1].isoformat()})
            fired: datetime | None = None
            if due + offset <= now:
                async with jobs.transaction():
                    planned = await create_run(config, jobs, settings, sched["template_id"], schedule_id=sched["id"],
                                               due_at=due, requested_by=f"schedule:{sched['name']}")
                runs.append(planned)
                fired = now
                due = next_fire(cron, tz, due)
            if missed or fired or due != sched["next_run_at"]:
                await _set_next(config, sched["id"], due, fired)
    return runs
